"""The training-throughput benchmark runs end to end and prints its JSON summary line.

Only the shape of the output is checked: performance numbers depend on the machine and its load.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
REQUIRED = (
    "ours_tokens_per_s",
    "trl_tokens_per_s",
    "speedup_vs_trl",
    "upo_over_dpo_step_time",
    "step0_loss_abs_diff_vs_trl",
    "smollm2_mfu_bf16",
    "bf16_peak_gflops",
    "fp32_peak_gflops",
)


def _load_benchmark(name: str):
    """A module of ``benchmarks/``, imported as the scripts import each other: with their folder on sys.path."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def bench():
    pytest.importorskip("trl")
    return _load_benchmark("train_throughput")


def test_quick_json_line_has_the_keys(bench, capsys, tmp_path):
    import torch

    threads = torch.get_num_threads()
    try:
        # In-process and with the fewest steps: this checks the plumbing, not the speed.
        argv = "--quick --in-process --warmup 1 --steps 1 --batch-size 2 --out-dir".split() + [str(tmp_path)]
        code = bench.main(argv)
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    for key in REQUIRED:
        assert isinstance(summary[key], float) and math.isfinite(summary[key]), key
    assert summary["quick"] is True and summary["model"] == "tiny"
    assert summary["smollm2_mfu_bf16"] > 0  # a fraction of the bf16 peak measured in the same run
    assert summary["pairs_tokenised_identically"] == "4/4"  # same token ids as TRL's own tokenisation
    assert not list(tmp_path.iterdir())  # quick mode writes no tables


def test_synthetic_records_are_deterministic_and_valid():
    assets = _load_benchmark("benchmark_assets")
    first, second = assets.synthetic_records(5), assets.synthetic_records(5)
    assert first == second
    for record in first:
        assert record["prompt"][-1]["role"] == "user"
        assert set(record["aux"]["chosen"]) == {assets.AUX_NAME}


def test_timed_excludes_warmup():
    result = {"times": [10.0, 1.0, 3.0], "tokens": [5, 100, 200]}
    numbers = _load_benchmark("timing").timed(result, warmup=1)
    assert numbers["tokens_per_s"] == pytest.approx(300 / 4.0)
    assert numbers["median_step_s"] == pytest.approx(2.0)
    assert numbers["timed_steps"] == 2


def test_unknown_model_names_the_known_ones(tmp_path):
    with pytest.raises(KeyError, match="tiny, smollm2-135m"):
        _load_benchmark("benchmark_assets").prepare_assets(tmp_path, ["gpt-9"], 2)


@pytest.mark.parametrize("loss_name", ["dpo", "upo"])
def test_benchmark_times_the_trainers_own_step(tmp_path, tiny_model_dir, tiny_data, monkeypatch, loss_name):
    """One batch through the benchmark's step and through ``python -m upo train``'s loop (1 step): the
    same loss, gradient norm and gradients (every tensor the optimizer sees), and the same weights."""
    import csv

    import torch
    from safetensors.torch import load_file

    import upo.train.step as step_module
    from upo.train.offline import train
    from upo.train.session import batch_order

    ours = _load_benchmark("our_dpo_step")  # no TRL needed for this check
    spec = {
        "model": str(tiny_model_dir),
        "data": str(tiny_data["train"]),
        "batch_size": 4,
        "warmup": 0,
        "steps": 2,
        "max_length": 64,
        "max_prompt_length": 32,
        "bf16": False,
        "threads": 1,
        "lr": 1e-3,
        "beta": 0.1,
        "aux_weight": 1.0,
        "work": str(tmp_path),
    }
    recorded: dict[str, list[list[torch.Tensor]]] = {"bench": [], "trainer": []}
    original = step_module.optimizer_step
    current = []

    def recording_step(parameters, *args, **kwargs):
        current.append([p.grad.detach().clone() for p in parameters])
        return original(parameters, *args, **kwargs)

    monkeypatch.setattr(step_module, "optimizer_step", recording_step)
    step, _, session = ours.our_step(spec, loss_name, tmp_path)
    ids = batch_order(8, 4, seed=0, epoch=0)[0]  # the trainer's first batch
    result = step(ids, 0)
    recorded["bench"], current = current, []
    session.unwrapped.model.save_pretrained(tmp_path / "bench-model")

    cfg = session.cfg
    cfg.output_dir, cfg.train.max_steps = str(tmp_path / "trainer"), 1
    train(cfg)
    recorded["trainer"] = current
    with open(tmp_path / "trainer" / "train_log.csv") as handle:
        row = next(csv.DictReader(handle))
    assert float(row["loss"]) == pytest.approx(result.loss, rel=1e-6, abs=1e-7)
    assert float(row["grad_norm"]) == pytest.approx(result.grad_norm, rel=1e-6)
    assert len(recorded["bench"]) == len(recorded["trainer"]) == 1
    for ours, theirs in zip(recorded["bench"][0], recorded["trainer"][0], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    a = load_file(str(tmp_path / "bench-model" / "model.safetensors"))
    b = load_file(str(tmp_path / "trainer" / "model" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
