"""A run.yaml on the command line: overrides, broken YAML, missing folders, ``write-run-config`` re-validation,
each rejected in one clear line before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from upo import sweeps
from upo.config import RunConfig, load_run_config
from upo.config.overrides import apply_overrides, overridden_run
from upo.strict import ConfigError, from_dict

ROOT = Path(__file__).resolve().parents[2]


def quick() -> dict:
    return yaml.safe_load((ROOT / "config/quick.yaml").read_text())


def write_run_yaml(folder: Path, text: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.yaml"
    path.write_text(text if text is not None else yaml.safe_dump({"output_dir": str(folder), "optim": {"lr": 1.0e-3}}))
    return path


def test_override_into_a_value_is_one_clear_line(tmp_path, capsys):
    from upo.__main__ import main

    run_yaml = write_run_yaml(tmp_path / "run")
    assert main(["train", str(run_yaml), "optim.lr.x=1", "--out", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err.strip()
    assert "optim.lr is a value" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_broken_yaml_names_file_and_line(tmp_path, capsys):
    from upo.__main__ import main

    run_yaml = write_run_yaml(tmp_path / "run", "optim:\n  lr: [1.0\nseed: 0\n")
    assert main(["train", str(run_yaml)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{run_yaml}: line" in err and "not valid YAML" in err and len(err.splitlines()) == 1


def test_missing_model_folder_is_one_clear_line(tmp_path, capsys):
    from upo.__main__ import main

    run_yaml = write_run_yaml(
        tmp_path / "run",
        yaml.safe_dump({"output_dir": str(tmp_path / "run"), "model": {"path": "resources/models/nope"}}),
    )
    assert main(["train", str(run_yaml)]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.path 'resources/models/nope' does not exist" in err and "Repo id" not in err


def test_overrides_without_out_are_refused(tmp_path, capsys):
    from upo.__main__ import main

    run_yaml = write_run_yaml(tmp_path / "run")
    before = run_yaml.read_text()
    assert main(["train", str(run_yaml), "optim.lr=1.0e-5"]) == 2
    assert "need --out DIR" in capsys.readouterr().err
    assert run_yaml.read_text() == before


def test_overridden_run_goes_to_its_own_folder_and_records_the_overrides(tmp_path):
    run_yaml = write_run_yaml(tmp_path / "run")
    config = overridden_run(run_yaml, ["optim.lr=1.0e-5", "train.max_steps=3"], tmp_path / "new")
    assert config.optim.lr == 1.0e-5 and config.train.max_steps == 3
    assert config.output_dir == str(tmp_path / "new")
    assert config.overridden.source == str(run_yaml)
    assert config.overridden.overrides == ["optim.lr=1.0e-5", "train.max_steps=3"]
    with pytest.raises(ConfigError, match="source run's own folder"):
        overridden_run(run_yaml, ["optim.lr=1.0e-5"], tmp_path / "run")
    with pytest.raises(ConfigError, match="unknown key optim.'lrr'"):
        overridden_run(run_yaml, ["optim.lrr=1.0e-5"], tmp_path / "new")


def test_apply_overrides_creates_an_unset_optional_section():
    data = apply_overrides({"model": {"lora": None}}, ["model.lora.r=4"])
    assert from_dict(RunConfig, data).model.lora.r == 4


def test_write_run_config_revalidates(tmp_path, capsys):
    import json

    from upo.__main__ import main

    run = sweeps.resolve_run(quick(), "default", "pico", "dpo", "0.1", "0", 0)
    out = tmp_path / "run.yaml"
    assert main(["write-run-config", "--json", json.dumps(run), "--out", str(out)]) == 0
    assert load_run_config(out).loss.kwargs["beta"] == 0.1
    run["optim"]["lrr"] = 1.0
    bad = tmp_path / "bad" / "run.yaml"
    assert main(["write-run-config", "--json", json.dumps(run), "--out", str(bad)]) == 2
    assert "optim.'lrr'" in capsys.readouterr().err and not bad.exists()
