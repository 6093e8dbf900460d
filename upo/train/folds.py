"""Folds of the training pairs for cross-fitted reward models (``data.fold``): which pairs a fold model
trains on and the manifest it leaves beside itself. The scoring step is ``upo.train.crossfit``."""

from __future__ import annotations

import hashlib
from pathlib import Path

from upo.config import FoldConfig
from upo.io import write_json

FOLD_MANIFEST = "fold.json"  # beside a fold reward model: which pair ids it trained on


def pair_fold(pair_id: str, k: int, seed: int) -> int:
    """The fold (0..k-1) of a pair: a deterministic hash of (seed, id), stable across runs and machines."""
    digest = hashlib.sha256(f"{seed}\x00{pair_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % k


def split_by_fold(records: list[dict], fold: FoldConfig) -> tuple[list[dict], list[dict]]:
    """(training records: every other fold, held-out records: fold ``fold.index``), order kept."""
    train, heldout = [], []
    for record in records:
        (heldout if pair_fold(record["id"], fold.k, fold.seed) == fold.index else train).append(record)
    return train, heldout


def fold_training_records(records: list[dict], fold: FoldConfig | None) -> list[dict]:
    """The pairs a reward model trains on: all, or with ``data.fold`` every fold but ``fold.index``."""
    if fold is None:
        return records
    train, heldout = split_by_fold(records, fold)
    if not train or not heldout:
        raise ValueError(f"data.fold {fold}: {len(train)} training and {len(heldout)} held-out pairs; need both")
    return train


def write_fold_manifest(output_dir: str | Path, fold: FoldConfig, trained: list[dict]) -> None:
    """``fold.json``: the ids a fold model trained on, so ``score-preferences`` can refuse to score any
    of them with it, whatever the hash says."""
    manifest = {"k": fold.k, "index": fold.index, "seed": fold.seed, "trained_ids": [r["id"] for r in trained]}
    write_json(Path(output_dir) / FOLD_MANIFEST, manifest)
