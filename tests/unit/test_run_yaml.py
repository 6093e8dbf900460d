"""``python -m upo write-run-config --resolved``: what the workflow's run.yaml jobs run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from upo import sweeps
from upo.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def dpo_run() -> dict:
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    return sweeps.resolve_run(config, "default", "pico", "dpo", "3", "0", 0, max_steps=3)


def test_resolved_writes_the_same_file_and_still_checks_types(tmp_path, capsys):
    run = dpo_run()
    full, resolved = tmp_path / "full.yaml", tmp_path / "resolved.yaml"
    assert main(["write-run-config", "--json", json.dumps(run), "--out", str(full)]) == 0
    assert main(["write-run-config", "--resolved", "--json", json.dumps(run), "--out", str(resolved)]) == 0
    assert full.read_text() == resolved.read_text()
    run["train"]["max_steps"] = "three"
    bad = tmp_path / "bad.yaml"
    assert main(["write-run-config", "--resolved", "--json", json.dumps(run), "--out", str(bad)]) == 2
    assert "train.max_steps" in capsys.readouterr().err and not bad.exists()


def test_resolved_does_not_import_torch(tmp_path):
    code = (
        "import sys, json; from upo.__main__ import main; "
        f"code = main(['write-run-config', '--resolved', '--json', {json.dumps(json.dumps(dpo_run()))}, "
        f"'--out', {str(tmp_path / 'run.yaml')!r}]); "
        "print('torch' in sys.modules); sys.exit(code)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
