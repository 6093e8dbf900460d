"""Checkpoints are resumed only by the run that wrote them, and a finished run leaves none behind."""

from __future__ import annotations

import csv
import os

from upo.config import RunConfig
from upo.strict import from_dict
from upo.train.checkpoint import config_hash, inputs_hash
from upo.train.offline import train


def sft_config(tmp_path, model_dir, data, lr: float, **train_settings) -> RunConfig:
    return from_dict(
        RunConfig,
        {
            "method": "sft",
            "seed": 0,
            "output_dir": str(tmp_path / "run"),
            "model": {"name": "tiny", "path": str(model_dir)},
            "data": {"train": str(data["train"]), "max_length": 64, "max_prompt_length": 32},
            "loss": {"name": "sft"},
            "optim": {"lr": lr},
            "train": {"max_steps": 4, "batch_size": 8, "threads": 1, "checkpoint_every": 2, **train_settings},
        },
    )


def logged_steps(run_dir) -> list[tuple[int, float]]:
    with open(run_dir / "train_log.csv") as handle:
        return [(int(r["step"]), float(r["lr"])) for r in csv.DictReader(handle)]


def test_rerun_with_another_lr_discards_the_checkpoint(tmp_path, tiny_model_dir, tiny_data, capsys):
    first = sft_config(tmp_path, tiny_model_dir, tiny_data, lr=1.0e-3)
    assert train(first, stop_after=2) == {"stopped_at": 2}
    checkpoint = tmp_path / "run" / "checkpoint"
    assert (checkpoint / "state.json").exists()
    capsys.readouterr()
    edited = sft_config(tmp_path, tiny_model_dir, tiny_data, lr=2.0e-3, max_steps=6)
    train(edited)
    out = capsys.readouterr().out
    assert "resumed" not in out
    assert f"discarded checkpoint {checkpoint} (step 2): written by another run (changed: run config)" in out
    assert logged_steps(tmp_path / "run") == [(step, 2.0e-3) for step in range(1, 7)]  # no row of the old run
    assert not checkpoint.exists()  # finished: nothing resumable left


def test_same_run_resumes_and_changed_inputs_discard(tmp_path, tiny_model_dir, tiny_data, capsys):
    cfg = sft_config(tmp_path, tiny_model_dir, tiny_data, lr=1.0e-3)
    train(cfg, stop_after=2)
    # settings that do not change the result keep the checkpoint usable
    relocated = sft_config(tmp_path, tiny_model_dir, tiny_data, lr=1.0e-3, checkpoint_every=1, threads=2)
    assert config_hash(relocated) == config_hash(cfg)
    train(relocated, stop_after=3)
    assert "resumed from" in capsys.readouterr().out
    before = inputs_hash(cfg)
    stat = os.stat(tiny_data["train"])  # re-prepared data at the same path: another input
    os.utime(tiny_data["train"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert inputs_hash(cfg) != before and config_hash(cfg) == config_hash(relocated)
    train(cfg)
    out = capsys.readouterr().out
    assert "written by another run (changed: input files)" in out and "resumed" not in out
    assert [step for step, _ in logged_steps(tmp_path / "run")] == [1, 2, 3, 4]
    assert not (tmp_path / "run" / "checkpoint").exists()
