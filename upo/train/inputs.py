"""What the trainer feeds a loss: for each need a loss declares, per-pair tensors of a split.

One provider per data need (``reference``, ``aux_rewards``, ``preference_scores``); the forward pass
provides the rest (policy log-probs, ``value`` from the loss's side module, ``sequence_scores``).
Statistics (auxiliary normalisation, preference z-scores) are always fitted on the training pairs
and applied unchanged to the held-out pairs, so held-out numbers use the training run's scale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from upo.config import RunConfig
from upo.data.batching import TokenizedPair
from upo.io import read_jsonl
from upo.models.pair_forward import cache_settings, load_reference_cache, tokenize_records
from upo.rewards.normalise import AuxNormaliser
from upo.train.preference_scores import preference_score_tensors

FORWARD_NEEDS = frozenset({"rejected", "value", "sequence_scores"})  # provided by the forward pass


@dataclass
class PairData:
    """One split as the trainer uses it.

    ``tensors``: LossInputs field name -> (N,) tensor, row i belonging to ``records[i]``;
    ``prompt_states`` (N, H): the reference model's last-prompt-token states (side-module warm start),
    present when the loss needs ``value``.
    """

    records: list[dict]
    pairs: list[TokenizedPair]
    tensors: dict[str, torch.Tensor]
    prompt_states: torch.Tensor | None = None


def aux_reward_tensors(cfg: RunConfig, fit_records: list[dict], records: list[dict]) -> dict[str, torch.Tensor]:
    """r_aux of both responses, normalised with statistics fitted on the training responses."""
    normaliser = AuxNormaliser.fit(fit_records, cfg.data.aux_rewards, cfg.data.aux_normalisation)
    chosen, rejected = normaliser.pair_tensors(records)
    return {"aux_chosen_rewards": chosen, "aux_rejected_rewards": rejected}


def cache_rows(cache: dict, split: str, records: list[dict], path: str) -> torch.Tensor:
    """Row index of every record in the cache's ``split``; a missing pair names the cache file."""
    position = {rid: i for i, rid in enumerate(cache[split]["ids"])}
    missing = [r["id"] for r in records if r["id"] not in position]
    if missing:
        raise ValueError(f"{path}: no cached log-probs for pair {missing[0]!r}")
    return torch.tensor([position[r["id"]] for r in records], dtype=torch.long)


def reference_tensors(cache: dict, split: str, records: list[dict], path: str) -> dict[str, torch.Tensor]:
    rows = cache_rows(cache, split, records, path)
    return {
        "reference_chosen_logps": cache[split]["chosen"][rows],
        "reference_rejected_logps": cache[split]["rejected"][rows],
    }


# need -> provider(cfg, cache, split, fit_records, records) -> LossInputs fields
Provider = Callable[[RunConfig, dict | None, str, list[dict], list[dict]], dict[str, torch.Tensor]]
PROVIDERS: dict[str, Provider] = {
    "reference": lambda cfg, cache, split, fit, records: reference_tensors(
        cache, split, records, cfg.reference.logps_cache
    ),
    "aux_rewards": lambda cfg, cache, split, fit, records: aux_reward_tensors(cfg, fit, records),
    # p(y) by data.preference_source: cross-fitted reward model | binary | oracle (upo.train.preference_scores)
    "preference_scores": lambda cfg, cache, split, fit, records: preference_score_tensors(
        cfg.data, split, fit, records
    ),
}


def check_needs(needs: frozenset[str]) -> None:
    unknown = set(needs) - set(PROVIDERS) - FORWARD_NEEDS
    if unknown:
        raise ValueError(f"the trainer cannot provide loss needs {sorted(unknown)}; add a provider in {__name__}")


def needs_cache(needs: frozenset[str]) -> bool:
    return bool(needs & {"reference", "value"})


def load_cache(cfg: RunConfig) -> dict:
    """The reference log-prob cache, checked against this run's model and tokenisation settings."""
    settings = cache_settings(
        cfg.reference.path or cfg.model.path, cfg.data.max_length, cfg.data.max_prompt_length, cfg.model.autocast_bf16
    )
    return load_reference_cache(cfg.reference.logps_cache, settings)


def build_pair_data(
    cfg: RunConfig,
    needs: frozenset[str],
    tokenizer,
    split: str,
    records: list[dict],
    fit_records: list[dict],
    cache: dict | None,
) -> PairData:
    """Tokenised pairs of ``records`` and every tensor ``needs`` asks for (``split``: cache split name)."""
    check_needs(needs)
    tensors: dict[str, torch.Tensor] = {}
    for need in sorted(needs & set(PROVIDERS)):
        tensors.update(PROVIDERS[need](cfg, cache, split, fit_records, records))
    states = None
    if "value" in needs:
        states = cache[split]["prompt_states"][cache_rows(cache, split, records, cfg.reference.logps_cache)]
    pairs = tokenize_records(records, tokenizer, cfg.data.max_length, cfg.data.max_prompt_length)
    return PairData(records, pairs, tensors, states)


def heldout_records(cfg: RunConfig, cache: dict | None) -> list[dict]:
    """The first ``train.eval_pairs`` test pairs (with cached reference log-probs when a cache is used)."""
    records = read_jsonl(cfg.data.test)
    if cache is not None:
        cached = set(cache["test"]["ids"])
        records = [r for r in records if r["id"] in cached]
    return records[: cfg.train.eval_pairs]
