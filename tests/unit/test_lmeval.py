"""lm-eval custom tasks: they load through TaskManager, run on a tiny model, and fail clearly."""

from __future__ import annotations

import shutil

import pytest

from upo.evaluate import lmeval
from upo.io import read_jsonl

TASKS = ["upo_pref_acc", "upo_capability"]


def test_shipped_tasks_resolve():
    resolved = lmeval.resolve_tasks(TASKS, "evaluations/tasks")
    for task in TASKS:
        config = resolved[task]["config"]
        assert config["output_type"] == "multiple_choice"
        assert config["metadata"]["version"] == 1.0
        for path in config["dataset_kwargs"]["data_files"].values():
            assert (lmeval.REPO_ROOT / path).is_file(), path


def test_capability_data_is_reproducible():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_capability", lmeval.REPO_ROOT / "evaluations/data/make_capability.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shipped = read_jsonl(lmeval.REPO_ROOT / "evaluations/data/upo_capability.jsonl")
    assert module.build() == shipped
    assert len(shipped) >= 90
    assert all(0 <= item["answer"] < len(item["choices"]) for item in shipped)


def test_pref_acc_conversion(tmp_path, tiny_data):
    n = lmeval.write_pref_acc_data(tiny_data["test"], tmp_path / "p.jsonl", limit=3)
    rows = read_jsonl(tmp_path / "p.jsonl")
    assert n == 3 and set(rows[0]) == {"id", "prompt_text", "chosen", "rejected"}
    assert rows[0]["prompt_text"].startswith("User: ") and rows[0]["prompt_text"].endswith("Assistant:")


def test_missing_task_names_it(tmp_path):
    with pytest.raises(lmeval.TaskLoadError, match="upo_nope"):
        lmeval.resolve_tasks(["upo_nope"], lmeval.REPO_ROOT / "evaluations/tasks")


def test_broken_yaml_is_named(tmp_path):
    include = tmp_path / "tasks"
    shutil.copytree(lmeval.REPO_ROOT / "evaluations/tasks", include)
    broken = include / "upo_capability" / "upo_capability.yaml"
    broken.write_text(broken.read_text() + "\n  bad_indent: [unclosed\n")
    with pytest.raises(lmeval.TaskLoadError, match=r"upo_capability.*upo_capability\.yaml"):
        lmeval.resolve_tasks(["upo_capability"], include)


def test_tasks_run_on_tiny_model(tiny_model_dir, tiny_data, tmp_path, monkeypatch):
    import torch

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)  # relative data_files must not depend on the working directory
    results, versions = lmeval.run_tasks(
        tiny_model_dir,
        TASKS,
        include_path=lmeval.REPO_ROOT / "evaluations/tasks",
        limit=4,
        pref_data=tiny_data["test"],
        batch_size=4,
        device="cpu",
    )
    for task in TASKS:
        assert 0.0 <= results[task]["acc"] <= 1.0
        assert 0.0 <= results[task]["acc_norm"] <= 1.0
        assert str(versions[task]) in {"1.0", "1"}
