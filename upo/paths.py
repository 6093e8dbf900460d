"""Single source of truth for result paths (``key~value`` segments, one per directory level).

results/runs/{dataset}/{model}/{method}/beta~{beta}/w~{aux_weight}[/steps~{max_steps}]/seed~{seed}/

The ``steps~`` segment is there only for a sweep that sets the training budget per point (``max_steps:``
in a sweep entry): a run at the stage's own budget keeps the shorter path.
"""

from __future__ import annotations

import re
from pathlib import Path

RUN_PATTERN = re.compile(
    r"(?:^|/)runs/(?P<dataset>[^/]+)/(?P<model>[^/]+)/(?P<method>[^/]+)/beta~(?P<beta>[^/]+)"
    r"/w~(?P<aux_weight>[^/]+)(?:/steps~(?P<max_steps>\d+))?/seed~(?P<seed>\d+)/?$"
)
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
# Folders directly under results/ that are not an experiment's results/{name}/: runs and their
# inputs (shared by every experiment), committed reference results, the committed benchmark tables
# (benchmarks/*.py), the judges' verdict cache, and relabelled DPO's cross-fitted preference scores.
# An experiment named after one would write into it.
RESULT_FOLDERS = frozenset(
    {"runs", "sft", "reward_model", "ref_logps", "reference", "benchmarks", "cache", "preference_scores"}
)


def format_value(value: float | int | str) -> str:
    """Canonical text of a sweep value: 0.10, 0.1 and 1e-1 all give '0.1'; 1.0 gives '1'."""
    if isinstance(value, str):
        value = float(value)
    text = format(float(value), "g")
    if "~" in text or "/" in text:  # pragma: no cover - 'g' never produces them
        raise ValueError(f"value {value!r} cannot be a path segment")
    return text


def check_name(kind: str, name: str) -> str:
    """Names that become path segments: lowercase letters, digits, '.' and '-' (no '_', '~', '/')."""
    if not NAME_PATTERN.match(name):
        raise ValueError(f"{kind} name {name!r} must match {NAME_PATTERN.pattern}")
    return name


def budget_segment(max_steps: int | None) -> str:
    """The optional path part of a sweep point's training budget: '' or '/steps~N'."""
    return "" if max_steps is None else f"/steps~{int(max_steps)}"


def parse_budget_segment(segment: str) -> int | None:
    """Inverse of :func:`budget_segment` (the workflow's ``{budget}`` wildcard)."""
    if not segment:
        return None
    match = re.fullmatch(r"/steps~(\d+)", segment)
    if not match:
        raise ValueError(f"{segment!r} is not a budget segment ('' or '/steps~N')")
    return int(match.group(1))


def run_dir(
    dataset: str, model: str, method: str, beta, aux_weight, seed: int, root: str = "results", max_steps=None
) -> str:
    return (
        f"{root}/runs/{dataset}/{model}/{method}/beta~{format_value(beta)}"
        f"/w~{format_value(aux_weight)}{budget_segment(max_steps)}/seed~{int(seed)}"
    )


def parse_run_dir(path: str | Path) -> dict:
    """Inverse of :func:`run_dir` (values as canonical strings, seed as int, max_steps int or None)."""
    match = RUN_PATTERN.search(str(path).rstrip("/"))
    if not match:
        raise ValueError(f"{path!r} is not a run directory (…/runs/dataset/model/method/beta~/w~[/steps~]/seed~)")
    row = match.groupdict()
    row["seed"] = int(row["seed"])
    row["max_steps"] = None if row["max_steps"] is None else int(row["max_steps"])
    return row


def model_of(folder: str | Path) -> str:
    """The model size of an SFT or run folder (``results/{sft,runs}/<dataset>/<model>/...``)."""
    parts = Path(folder).parts
    for index, part in enumerate(parts[:-2]):
        if part in ("sft", "runs"):
            return parts[index + 2]
    raise ValueError(f"{folder!r} is not an SFT or run folder (…/sft|runs/<dataset>/<model>/…)")


def sft_dir(dataset: str, model: str, root: str = "results") -> str:
    return f"{root}/sft/{dataset}/{model}"


def reward_model_dir(dataset: str, model: str, root: str = "results") -> str:
    return f"{root}/reward_model/{dataset}/{model}"


def reward_model_fold_dir(dataset: str, model: str, fold: int, root: str = "results") -> str:
    """A cross-fitting reward model: trained on every fold of the pairs but ``fold``."""
    return f"{reward_model_dir(dataset, model, root)}/fold~{int(fold)}"


def preference_scores_path(dataset: str, model: str, root: str = "results") -> str:
    """Cross-fitted per-pair preference scores (JSONL); the fold models' held-out accuracy sits beside it (.json)."""
    return f"{root}/preference_scores/{dataset}/{model}.jsonl"


def ref_logps_path(dataset: str, model: str, root: str = "results") -> str:
    return f"{root}/ref_logps/{dataset}/{model}.pt"


def data_dir(dataset: str) -> str:
    return f"resources/data/{dataset}"


def base_model_dir(model: str) -> str:
    return f"resources/models/{model}"
