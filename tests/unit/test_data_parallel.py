"""2-process CPU data parallel (accelerate launch, gloo) follows the 1-process loss trajectory."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from tests.unit.test_train_offline import make_cache, run_config
from upo.config import save_run_config


def losses(run_dir) -> list[float]:
    with open(run_dir / "train_log.csv") as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path, tiny_model_dir, tiny_data):
    cache = make_cache(tmp_path, tiny_model_dir, tiny_data)
    trajectories = {}
    for processes in (1, 2):
        name = f"ddp{processes}"
        cfg = run_config(
            tmp_path,
            tiny_model_dir,
            tiny_data,
            cache,
            name,
            "upo",
            {"beta": 0.5, "aux_weight": 1.0},
            max_steps=6,
            grad_accum=2,
        )
        save_run_config(cfg, tmp_path / f"{name}.yaml")
        command = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--num_processes",
            str(processes),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--num_cpu_threads_per_process",
            "1",
        ]
        # torchrun-style workers; ACCELERATE_USE_CPU makes each a CPU process (gloo backend)
        command += ["--cpu"] if processes == 1 else ["--multi_gpu"]
        command += ["-m", "upo", "train", str(tmp_path / f"{name}.yaml")]
        env = {**os.environ, "ACCELERATE_USE_CPU": "true", "MASTER_PORT": "29517"}
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        trajectories[processes] = losses(tmp_path / name)
        summary = json.loads((tmp_path / name / "train_summary.json").read_text())
        assert summary["processes"] == processes
    assert len(trajectories[1]) == len(trajectories[2]) == 6
    for one, two in zip(trajectories[1], trajectories[2], strict=True):
        assert two == pytest.approx(one, rel=1e-4, abs=1e-5)
