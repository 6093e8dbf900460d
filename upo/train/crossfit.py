"""Cross-fitted reward-model preference scores: relabelled DPO gets only what UPO gets (the binary labels).

Training pairs fall into ``k`` folds by a hash of (seed, pair id). Reward model i (``train-rm`` with
``data.fold: {k, index: i, seed}``) trains on every fold but i, so it scores exactly the pairs it never
saw. ``python -m upo score-preferences FOLD0/run.yaml FOLD1/run.yaml --out scores.jsonl`` scores each
pair's two responses with the model that held that pair out, z-scores all of them together (mean and
standard deviation over every training response) and writes one row per pair: ``split``, ``id``,
``chosen``, ``rejected``, ``fold``. The test split's pairs (used only by the trainer's held-out metrics)
get the mean of the fold models' scores, standardised with the same constants. Beside it (``.json``):
each fold model's pairwise accuracy on its held-out fold. The per-pair ``oracle`` field is never read.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from upo.config import FoldConfig, RunConfig, load_run_config
from upo.io import read_jsonl, sha256_file, write_json, write_jsonl
from upo.rewards.normalise import zscore_stats
from upo.train.folds import FOLD_MANIFEST, split_by_fold

SCORE_BATCH_SIZE = 32


@dataclass
class FoldModel:
    """One fold's reward model as the cross-fit sees it: what it trained on and how it scores."""

    fold: FoldConfig
    trained_ids: frozenset[str]
    score: Callable[[list[dict]], tuple[torch.Tensor, torch.Tensor]]  # records -> (chosen, rejected) (N,)
    name: str = ""


def cross_fit(
    records: list[dict], models: list[FoldModel], test_records: list[dict] = (), where: str = "data"
) -> tuple[list[dict], dict]:
    """Score every training pair with the fold model that held it out; z-score over all 2N responses.

    Held-out-split pairs (``test_records``, for the trainer's held-out metrics) were seen by no fold
    model: each gets the mean of the k models' scores, standardised with the training constants.

    Returns (rows ``{split, id, chosen, rejected, fold}``: training pairs in record order with their
    fold, then test pairs with fold None; report with the z-score constants and each fold model's
    pairwise accuracy on its held-out fold, ties counting as wrong).
    """
    if not models:
        raise ValueError("cross_fit: no fold models")
    k, seed = models[0].fold.k, models[0].fold.seed
    indices = sorted(m.fold.index for m in models)
    if any((m.fold.k, m.fold.seed) != (k, seed) for m in models) or indices != list(range(k)):
        folds = [(m.name, m.fold.k, m.fold.index, m.fold.seed) for m in models]
        raise ValueError(f"cross_fit: need one model per fold 0..k-1 with the same k and seed, got {folds}")
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{where}: pair id {duplicate!r} appears more than once")

    raw: dict[str, tuple[float, float, int]] = {}
    folds_report = []
    for model in sorted(models, key=lambda m: m.fold.index):
        _, heldout = split_by_fold(records, model.fold)
        leaked = [r["id"] for r in heldout if r["id"] in model.trained_ids]
        if leaked:
            raise ValueError(f"{model.name}: trained on pair {leaked[0]!r} it would score ({len(leaked)} such pairs)")
        if not heldout:
            raise ValueError(f"{where}: fold {model.fold.index} holds no pairs")
        chosen, rejected = model.score(heldout)
        if chosen.shape != (len(heldout),) or rejected.shape != (len(heldout),):
            raise ValueError(f"{model.name}: scorer returned {tuple(chosen.shape)} scores for {len(heldout)} pairs")
        for record, c, r in zip(heldout, chosen.tolist(), rejected.tolist(), strict=True):
            raw[record["id"]] = (c, r, model.fold.index)
        folds_report.append(
            {
                "index": model.fold.index,
                "model": model.name,
                "trained_pairs": len(model.trained_ids),
                "heldout_pairs": len(heldout),
                "heldout_accuracy": int((chosen > rejected).sum()) / len(heldout),  # ties count as wrong
            }
        )
    values = [v for pair_id in ids for v in raw[pair_id][:2]]
    if min(values) == max(values):
        raise ValueError(f"{where}: the fold reward models give every response the same score ({values[0]})")
    mean, std = zscore_stats(values)
    rows = [
        {"split": "train", "id": i, "chosen": (raw[i][0] - mean) / std, "rejected": (raw[i][1] - mean) / std}
        | {"fold": raw[i][2]}
        for i in ids
    ]
    correct = sum(f["heldout_accuracy"] * f["heldout_pairs"] for f in folds_report)
    report = {
        "k": k,
        "seed": seed,
        "pairs": len(rows),
        "zscore": {"mean": mean, "std": std},
        "heldout_accuracy": correct / len(rows),
        "folds": folds_report,
    }
    if test_records:
        scored = [model.score(list(test_records)) for model in models]
        chosen = torch.stack([c for c, _ in scored]).mean(0)
        rejected = torch.stack([r for _, r in scored]).mean(0)
        rows += [
            {"split": "test", "id": r["id"], "chosen": (c - mean) / std, "rejected": (j - mean) / std, "fold": None}
            for r, c, j in zip(test_records, chosen.tolist(), rejected.tolist(), strict=True)
        ]
        report["test"] = {"pairs": len(test_records), "accuracy": int((chosen > rejected).sum()) / len(test_records)}
    return rows, report


def reward_model_scorer(run: RunConfig, model_dir: Path, batch_size: int = SCORE_BATCH_SIZE):
    """records -> (chosen, rejected) scores of a trained reward model, truncated exactly as in training."""
    from upo.train.reward_model import load_reward_model, score

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer = load_reward_model(model_dir, device=device)
    settings = {
        "max_length": run.data.max_length,
        "max_prompt_length": run.data.max_prompt_length,
        "batch_size": batch_size,
        "autocast_bf16": run.model.autocast_bf16,
    }

    def scores(records: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        prompts = [r["prompt"] for r in records]
        chosen = score(model, tokenizer, prompts, [r["chosen"] for r in records], **settings)
        rejected = score(model, tokenizer, prompts, [r["rejected"] for r in records], **settings)
        return chosen.double(), rejected.double()

    return scores


def load_fold_model(run_yaml: str | Path) -> tuple[RunConfig, FoldModel]:
    """A fold reward model from its run.yaml: its output folder holds model/ and fold.json."""
    from upo.train.reward_model import resolve_output_dir

    run = load_run_config(run_yaml)
    if run.data.fold is None:
        raise ValueError(f"{run_yaml}: data.fold is not set; not a cross-fitting reward model")
    out = resolve_output_dir(run, run_yaml)
    manifest_path = out / FOLD_MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path}: missing; train the fold model with train-rm {run_yaml}")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    fold = run.data.fold
    if (manifest["k"], manifest["index"], manifest["seed"]) != (fold.k, fold.index, fold.seed):
        raise ValueError(f"{manifest_path}: fold {manifest} does not match {run_yaml} data.fold {fold}")
    model = FoldModel(fold, frozenset(manifest["trained_ids"]), reward_model_scorer(run, out / "model"), str(out))
    return run, model


def main(argv: list[str]) -> int:
    """``python -m upo score-preferences FOLD_RUN.yaml ... --out scores.jsonl [--report scores.json]``."""
    parser = argparse.ArgumentParser(prog="python -m upo score-preferences", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run.yaml of each fold reward model (one per fold)")
    parser.add_argument("--out", required=True, help="per-pair z-scored scores (JSONL)")
    parser.add_argument("--report", help="held-out accuracy and z-score constants (default: --out with .json)")
    args = parser.parse_args(argv)
    loaded = [load_fold_model(path) for path in args.runs]
    trains = {run.data.train for run, _ in loaded}
    if len(trains) != 1:
        raise ValueError(f"score-preferences: fold models trained on different data files: {sorted(trains)}")
    run = loaded[0][0]
    if run.train.threads:
        torch.set_num_threads(run.train.threads)
    records = read_jsonl(run.data.train)  # every pair of the split: any run's subset finds its scores
    test_records = read_jsonl(run.data.test) if run.data.test else []
    rows, report = cross_fit(records, [model for _, model in loaded], test_records, where=run.data.train)
    report["data"] = {"train": run.data.train, "train_sha256": sha256_file(run.data.train), "test": run.data.test}
    out = Path(args.out)
    write_jsonl(out, rows)
    write_json(Path(args.report) if args.report else out.with_suffix(".json"), report)
    accuracies = ", ".join(f"fold {f['index']} {f['heldout_accuracy']:.3f}" for f in report["folds"])
    print(f"score-preferences: {len(rows)} pairs -> {out}; held-out accuracy {accuracies}")
    return 0
