"""What one auxiliary reward is: :class:`RewardSpec`, the entry of the ``upo.rewards.scorers.REWARDS`` registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

RawFn = Callable[[list[str], "list[str] | None"], list[float]]


@dataclass(frozen=True)
class RewardSpec:
    """One auxiliary reward.

    Attributes:
        name: registry name, also the key under a record's ``aux`` field.
        raw_fn: batch function ``(texts, prompts) -> raw values`` (one float per text).
        to_unit: monotone map of one raw value onto ``value_range`` (higher is better).
        raw_description: what the raw value is and its range.
        version: changes whenever scores change; part of the cache key.
        batched: whether ``raw_fn`` gains from receiving many texts at once.
        uses_prompt: whether the score depends on the prompt (then the prompt joins the cache key).
        value_range: documented range of the normalised score.
    """

    name: str
    raw_fn: RawFn
    to_unit: Callable[[float], float]
    raw_description: str
    version: str
    batched: bool = False
    uses_prompt: bool = False
    value_range: tuple[float, float] = (0.0, 1.0)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "range": list(self.value_range),
            "raw": self.raw_description,
            "version": self.version,
            "batched": self.batched,
            "uses_prompt": self.uses_prompt,
        }
