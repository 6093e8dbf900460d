"""relabel-dpo's preference scores use only the binary labels: cross-fitted reward models, never the oracle.

Fake scorers check the cross-fit's bookkeeping (no pair is scored by a model that trained on it); a
tiny real run trains both fold reward models, scores the pairs and trains relabel_dpo on records whose
``oracle`` field cannot be touched, and checks the loss saw exactly the cross-fitted scores.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.unit.rlhf_tiny import write_run
from upo.config import DataConfig, FoldConfig, RunConfig
from upo.io import read_jsonl, write_jsonl
from upo.strict import ConfigError, from_dict
from upo.train.crossfit import FoldModel, cross_fit
from upo.train.folds import pair_fold, split_by_fold
from upo.train.preference_scores import preference_score_tensors


class OracleGuard(dict):
    """A record without its ``oracle`` field whose every attempt to look for it fails the test."""

    def __init__(self, record: dict):
        super().__init__({k: v for k, v in record.items() if k != "oracle"})

    def _refuse(self, key):
        if key == "oracle":
            raise AssertionError(f"pair {dict.get(self, 'id')!r}: the oracle field was read")

    def __getitem__(self, key):
        self._refuse(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self._refuse(key)
        return super().__contains__(key)

    def get(self, key, default=None):
        self._refuse(key)
        return super().get(key, default)

    def pop(self, key, *default):
        self._refuse(key)
        return super().pop(key, *default)

    def setdefault(self, key, default=None):
        self._refuse(key)
        return super().setdefault(key, default)


def records(n: int) -> list[dict]:
    return [
        {"id": f"p{i}", "prompt": [], "chosen": "a", "rejected": "b", "oracle": {"chosen": i, "rejected": -i}}
        for i in range(n)
    ]


def test_pair_fold_is_deterministic_balanced_and_seeded():
    ids = [f"pair-{i}" for i in range(2000)]
    folds = [pair_fold(i, 2, 0) for i in ids]
    assert folds == [pair_fold(i, 2, 0) for i in ids]
    assert 900 < sum(folds) < 1100  # about half in each fold
    assert folds != [pair_fold(i, 2, 1) for i in ids]  # the seed salts the hash
    train, heldout = split_by_fold(records(50), FoldConfig(k=2, index=1, seed=0))
    assert {r["id"] for r in train}.isdisjoint(r["id"] for r in heldout) and len(train) + len(heldout) == 50


def fake_models(data: list[dict], k: int, calls: dict[int, list[str]], trained: dict[int, set[str]] | None = None):
    """Fold models that score y by a fixed function of the id and log which pairs they were asked to score."""
    models = []
    for index in range(k):
        fold = FoldConfig(k=k, index=index, seed=3)
        trained_ids = trained[index] if trained else {r["id"] for r in split_by_fold(data, fold)[0]}

        def score(batch, index=index):
            calls[index] += [r["id"] for r in batch]
            values = torch.tensor([float(r["id"][1:]) for r in batch], dtype=torch.float64)
            return values + 1.0, values * 0.5

        models.append(FoldModel(fold, frozenset(trained_ids), score, f"fold{index}"))
    return models


@pytest.mark.parametrize("k", [2, 3])
def test_cross_fit_never_scores_a_pair_with_a_model_trained_on_it(k):
    data = [OracleGuard(r) for r in records(40)]
    calls: dict[int, list[str]] = {i: [] for i in range(k)}
    models = fake_models(data, k, calls)
    rows, report = cross_fit(data, models)
    assert sorted(i for scored in calls.values() for i in scored) == sorted(r["id"] for r in data)  # each once
    for model in models:
        assert calls[model.fold.index] and model.trained_ids.isdisjoint(calls[model.fold.index])
    assert [row["id"] for row in rows] == [r["id"] for r in data]
    for row in rows:
        assert row["id"] in calls[row["fold"]]
    values = torch.tensor([v for row in rows for v in (row["chosen"], row["rejected"])], dtype=torch.float64)
    assert abs(values.mean().item()) < 1e-12 and abs(values.std().item() - 1.0) < 1e-12  # z-scored over 2N
    assert report["heldout_accuracy"] == 1.0 and [f["index"] for f in report["folds"]] == list(range(k))


def test_cross_fit_refuses_a_model_that_trained_on_a_pair_it_would_score():
    data = records(20)
    everything = {r["id"] for r in data}
    models = fake_models(data, 2, {0: [], 1: []}, trained={0: everything, 1: everything})
    with pytest.raises(ValueError, match="fold0: trained on pair"):
        cross_fit(data, models)


def test_cross_fit_needs_one_model_per_fold():
    data = records(20)
    models = fake_models(data, 2, {0: [], 1: []})
    with pytest.raises(ValueError, match="one model per fold"):
        cross_fit(data, models[:1])


def scores_of(data: DataConfig, records: list[dict], split: str = "train", fit=None):
    tensors = preference_score_tensors(data, split, records if fit is None else fit, records)
    return tensors["chosen_preference_scores"], tensors["rejected_preference_scores"]


def test_preference_sources(tmp_path):
    data = records(4)
    chosen, rejected = scores_of(DataConfig(preference_source="binary"), data)
    assert chosen.tolist() == [0.5] * 4 and rejected.tolist() == [-0.5] * 4
    chosen, rejected = scores_of(DataConfig(train="x.jsonl", preference_source="oracle"), data)
    both = torch.cat([chosen, rejected])
    assert abs(both.mean().item()) < 1e-6 and abs(both.std().item() - 1.0) < 1e-6
    assert chosen[3] > chosen[1] > rejected[1] > rejected[3]  # oracle order kept
    scores = tmp_path / "scores.jsonl"
    rows = [{"split": "train", "id": r["id"], "chosen": 1.5, "rejected": -0.25, "fold": 0} for r in data[:3]]
    rows.append({"split": "test", "id": "p0", "chosen": 7.0, "rejected": 8.0, "fold": None})  # same id, other split
    write_jsonl(scores, rows)
    config = DataConfig(preference_source="reward_model", preference_scores=str(scores))
    chosen, _ = scores_of(config, [OracleGuard(r) for r in data[:3]])
    assert chosen.tolist() == [1.5] * 3
    assert scores_of(config, [OracleGuard(data[0])], "test")[1].tolist() == [8.0]
    with pytest.raises(ValueError, match=rf"{scores}: no preference score for train pair 'p3'"):
        scores_of(config, data)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        scores_of(DataConfig(preference_source="reward_model", preference_scores="missing.jsonl"), data)
    with pytest.raises(ConfigError, match="preference_source"):
        scores_of(DataConfig(), data)
    with pytest.raises(ValueError, match="pair 'q' has no 'oracle' field"):
        scores_of(DataConfig(train="x.jsonl", preference_source="oracle"), [{"id": "q"}])


def guard_reads(monkeypatch, *modules):
    """Every JSONL record these modules read comes back as an OracleGuard."""
    from upo.io import read_jsonl as real_read

    for module in modules:
        monkeypatch.setattr(f"{module}.read_jsonl", lambda path: [OracleGuard(r) for r in real_read(path)])


def test_relabel_dpo_trains_on_cross_fitted_scores_without_reading_the_oracle(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    from upo.__main__ import main as upo_main
    from upo.models.pair_forward import main_ref_logps
    from upo.train import offline, session

    # tiny model and separable data; give every pair an oracle field the code must not read
    write_run(tmp_path, "setup")  # builds the tiny model (sft/) and data (data/)
    data_dir = tmp_path / "data"
    for split in ("train", "test"):
        rows = read_jsonl(data_dir / f"{split}.jsonl")
        write_jsonl(data_dir / f"{split}.jsonl", [{**r, "oracle": {"chosen": 0.0, "rejected": 1.0}} for r in rows])
    guard_reads(monkeypatch, "upo.train.session", "upo.train.inputs", "upo.train.crossfit")

    rm = {
        "loss": {"name": "bradley_terry", "kwargs": {}},
        "train": {"batch_size": 16, "max_steps": 12, "threads": 1},
        "optim": {"lr": 3.0e-3},
    }
    configs = [write_run(tmp_path, f"fold{i}", data={"fold": {"k": 2, "index": i, "seed": 7}}, **rm) for i in (0, 1)]
    for path in configs:
        assert upo_main(["train-rm", str(path)]) == 0
        summary = json.loads((path.parent / "train_summary.json").read_text())
        assert 0.0 <= summary["heldout_accuracy"] <= 1.0
    scores_path = tmp_path / "scores.jsonl"
    assert upo_main(["score-preferences", *map(str, configs), "--out", str(scores_path)]) == 0
    all_rows = read_jsonl(scores_path)
    rows = [r for r in all_rows if r["split"] == "train"]
    test_rows = {r["id"]: r for r in all_rows if r["split"] == "test"}
    report = json.loads(scores_path.with_suffix(".json").read_text())
    train_ids = [r["id"] for r in read_jsonl(data_dir / "train.jsonl")]
    test_ids = [r["id"] for r in read_jsonl(data_dir / "test.jsonl")]
    assert [r["id"] for r in rows] == train_ids and report["pairs"] == len(train_ids)
    assert list(test_rows) == test_ids and all(r["fold"] is None for r in test_rows.values())
    for index, path in enumerate(configs):
        trained = set(json.loads((path.parent / "fold.json").read_text())["trained_ids"])
        scored_here = {r["id"] for r in rows if r["fold"] == index}
        assert trained and scored_here and trained.isdisjoint(scored_here)
        assert trained | scored_here == set(train_ids)
        assert report["folds"][index]["heldout_pairs"] == len(scored_here)
        assert 0.0 <= report["folds"][index]["heldout_accuracy"] <= 1.0

    cache = tmp_path / "ref.pt"
    policy, test = tmp_path / "sft", data_dir / "test.jsonl"
    args = ["--model", str(policy), "--train", str(data_dir / "train.jsonl"), "--test", str(test), "--out", str(cache)]
    assert main_ref_logps([*args, "--max-length", "48", "--max-prompt-length", "32"]) == 0
    seen: list[tuple[bool, torch.Tensor, torch.Tensor]] = []  # (training step?, p(y_w), p(y_l)) per loss call
    real_get_loss = session.get_loss

    def spying_get_loss(name, **kwargs):
        spec, loss_fn = real_get_loss(name, **kwargs)

        def spy(inputs):
            chosen, rejected = inputs.chosen_preference_scores, inputs.rejected_preference_scores
            seen.append((torch.is_grad_enabled(), chosen.detach().clone(), rejected.detach().clone()))
            return loss_fn(inputs)

        spy.hyperparameters, spy.needs = loss_fn.hyperparameters, loss_fn.needs
        return spec, spy

    monkeypatch.setattr(session, "get_loss", spying_get_loss)
    run = {
        "method": "relabel-dpo",
        "seed": 0,
        "output_dir": str(tmp_path / "relabel"),
        "model": {"name": "tiny", "path": str(policy)},
        "reference": {"path": str(policy), "logps_cache": str(cache)},
        "data": {
            "train": str(data_dir / "train.jsonl"),
            "test": str(test),
            "max_length": 48,
            "max_prompt_length": 32,
            "aux_rewards": {"share": 1.0},
            "preference_source": "reward_model",
            "preference_scores": str(scores_path),
        },
        "loss": {"name": "relabel_dpo", "kwargs": {"beta": 0.1, "aux_weight": 1.0}},
        "train": {"batch_size": 16, "max_steps": 3, "threads": 1, "eval_pairs": 8},
    }
    offline.train(from_dict(RunConfig, run))
    by_id = {r["id"]: r for r in rows}
    steps = [(chosen, rejected) for training, chosen, rejected in seen if training]
    assert len(steps) == 3
    for step, (chosen, rejected) in enumerate(steps):
        ids = offline.batch_order(len(train_ids), 16, 0, 0)[step]
        assert chosen.tolist() == torch.tensor([by_id[train_ids[i]]["chosen"] for i in ids]).tolist()
        assert rejected.tolist() == torch.tensor([by_id[train_ids[i]]["rejected"] for i in ids]).tolist()
    heldout = [(chosen, rejected) for training, chosen, rejected in seen if not training]
    assert heldout  # the held-out eval of the first 8 test pairs uses the test rows (mean of the fold models)
    held_chosen = torch.cat([chosen for chosen, _ in heldout]).tolist()
    assert held_chosen == torch.tensor([test_rows[i]["chosen"] for i in test_ids[:8]]).tolist()
