"""lm-evaluation-harness tasks of a run (implicit preference accuracy, capability probe).

Our task YAMLs live in ``evaluations/tasks/`` (names start with ``upo_``). Their ``data_files``
are relative to the repository root, so ``lm_eval --include_path evaluations/tasks`` works when run
from there. Inside the pipeline the working directory may be anything, so :func:`run_tasks` writes
one wrapper YAML per requested task into a temporary include folder: ``include:`` the shipped YAML
by absolute path and override ``dataset_kwargs.data_files`` with absolute paths. For
``upo_pref_acc`` the data is the run's own held-out split (``data.test``), converted by
:func:`write_pref_acc_data` to ``{prompt_text, chosen, rejected}`` rows.

lm-eval's task index skips YAML files that fail to parse without saying so; :func:`resolve_tasks`
turns a missing task into an error naming the task and every broken file.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import yaml

from upo.io import read_jsonl, write_jsonl

REPO_ROOT = Path(__file__).resolve().parents[2]
PREF_ACC_TASK = "upo_pref_acc"


class TaskLoadError(RuntimeError):
    """A requested lm-eval task is missing or its YAML does not load."""


def resolve_include_path(include_path: str | Path) -> Path:
    """Absolute include folder; a relative path is taken from the repository root."""
    path = Path(include_path)
    path = path if path.is_absolute() else REPO_ROOT / path
    if not path.is_dir():
        raise TaskLoadError(f"lm-eval include path {path} is not a folder")
    return path


def resolve_tasks(tasks: list[str], include_path: str | Path) -> dict[str, dict[str, Any]]:
    """Find each task's YAML and fully loaded config under ``include_path``.

    Returns:
        {task: {"yaml_path": Path, "config": dict}}.
    Raises:
        TaskLoadError: naming the task, and every YAML under the folder that fails to load.
    """
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    root = resolve_include_path(include_path)
    manager = TaskManager(include_path=str(root), include_defaults=False)
    index = manager.task_index
    found = {}
    for task in tasks:
        entry = index.get(task)
        if entry is None or getattr(entry, "yaml_path", None) is None:
            broken = []
            for yaml_path in sorted(root.glob("**/*.yaml")):
                try:
                    load_yaml(yaml_path, resolve_func=True, recursive=True)
                except Exception as error:  # any parse or import failure is worth naming
                    broken.append(f"{yaml_path}: {type(error).__name__}: {error}")
            detail = ("; YAML files that do not load: " + " | ".join(broken)) if broken else ""
            known = ", ".join(sorted(manager.all_tasks)) or "(none)"
            raise TaskLoadError(f"lm-eval task {task!r} not found under {root} (tasks there: {known}){detail}")
        try:
            config = load_yaml(entry.yaml_path, resolve_func=True, recursive=True)
        except Exception as error:
            raise TaskLoadError(f"lm-eval task {task!r}: {entry.yaml_path} does not load: {error}") from None
        found[task] = {"yaml_path": Path(entry.yaml_path), "config": config}
    return found


def _absolute_data_files(data_files: Any, base: Path) -> Any:
    """``data_files`` (str, list, or split -> str/list) with relative paths made absolute."""
    if isinstance(data_files, str):
        path = Path(data_files)
        return str(path if path.is_absolute() else (base / path).resolve())
    if isinstance(data_files, list):
        return [_absolute_data_files(f, base) for f in data_files]
    if isinstance(data_files, dict):
        return {split: _absolute_data_files(f, base) for split, f in data_files.items()}
    raise TaskLoadError(f"unsupported data_files value {data_files!r}")


def dialogue_text(messages: list[dict]) -> str:
    """Plain-text prompt of a chat (no template: lm-eval scores raw text), ending with 'Assistant:'."""
    names = {"user": "User", "assistant": "Assistant", "system": "System"}
    turns = [f"{names.get(m['role'], m['role'])}: {m['content']}" for m in messages]
    return "\n\n".join(turns) + "\n\nAssistant:"


def write_pref_acc_data(records_path: str | Path, out_path: str | Path, limit: int | None = None) -> int:
    """Convert preference records to ``upo_pref_acc`` rows; returns the number written."""
    records = read_jsonl(records_path)[:limit]
    rows = []
    for line, record in enumerate(records, start=1):
        try:
            rows.append(
                {
                    "id": str(record["id"]),
                    "prompt_text": dialogue_text(record["prompt"]),
                    "chosen": record["chosen"],
                    "rejected": record["rejected"],
                }
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"{records_path}:{line}: not a preference record ({error})") from None
    write_jsonl(out_path, rows)
    return len(rows)


def write_task_wrappers(
    resolved: dict[str, dict[str, Any]], out_dir: Path, pref_data: str | Path | None = None
) -> None:
    """One YAML per task in ``out_dir``: include the shipped YAML, absolute ``data_files``."""
    for task, info in resolved.items():
        config = info["config"]
        wrapper: dict[str, Any] = {"include": str(info["yaml_path"]), "task": task}
        kwargs = dict(config.get("dataset_kwargs") or {})
        if task == PREF_ACC_TASK and pref_data is not None:
            converted = out_dir / "data" / f"{task}.jsonl"
            write_pref_acc_data(pref_data, converted)
            split = config.get("test_split", "train")
            kwargs["data_files"] = {split: str(converted)}
        elif "data_files" in kwargs:
            kwargs["data_files"] = _absolute_data_files(kwargs["data_files"], REPO_ROOT)
        if kwargs:
            wrapper["dataset_kwargs"] = kwargs
        (out_dir / f"{task}.yaml").write_text(yaml.safe_dump(wrapper, sort_keys=False), encoding="utf-8")


def _flatten(task_results: dict[str, Any]) -> dict[str, float | None]:
    """lm-eval's {"acc,none": x, "acc_stderr,none": s, "alias": ...} -> {"acc": x, "acc_stderr": s}."""
    out = {}
    for key, value in task_results.items():
        if key == "alias" or key == "samples":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # labels such as the task's display name, and "N/A" stderrs
        metric, _, flt = key.partition(",")
        name = metric if flt in ("", "none") else f"{metric}_{flt}"
        out[name] = float(value) if value == value else None  # NaN -> null in JSON
    return out


def run_tasks(
    model_path: str | Path,
    tasks: list[str],
    *,
    include_path: str | Path = "evaluations/tasks",
    limit: int | None = None,
    pref_data: str | Path | None = None,
    batch_size: int = 8,
    device: str | None = None,
) -> tuple[dict[str, dict], dict[str, Any]]:
    """Run lm-eval tasks on an HF model folder.

    Args:
        model_path: HF folder (weights + tokenizer).
        tasks: task names under ``include_path``.
        include_path: folder of task YAMLs (relative: repository root).
        limit: documents per task (None: all).
        pref_data: preference records (JSONL) for ``upo_pref_acc``; None keeps the shipped sample.
        batch_size: lm-eval batch size.
        device: torch device (None: cuda if available, else cpu).
    Returns:
        ({task: {metric: value, ..., "version": v}}, {task: version}).
    """
    import lm_eval
    import torch
    from lm_eval.tasks import TaskManager

    resolved = resolve_tasks(list(tasks), include_path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="upo-lmeval-") as tmp:
        tmp_dir = Path(tmp)
        write_task_wrappers(resolved, tmp_dir, pref_data)
        manager = TaskManager(include_path=str(tmp_dir), include_defaults=False)
        missing = [t for t in tasks if t not in manager.all_tasks]
        if missing:
            raise TaskLoadError(
                f"lm-eval could not index the wrapper YAML of {missing[0]!r} "
                f"(from {resolved[missing[0]]['yaml_path']})"
            )
        logging.getLogger("lm_eval").setLevel(logging.WARNING)
        output = lm_eval.simple_evaluate(
            model="hf",
            model_args=f"pretrained={Path(model_path).resolve()},dtype=float32",
            tasks=list(tasks),
            task_manager=manager,
            limit=limit,
            batch_size=batch_size,
            device=device,
            log_samples=False,
        )
    if output is None:
        raise RuntimeError("lm_eval.simple_evaluate returned nothing (non-zero rank?)")
    results, versions = {}, {}
    for task in tasks:
        if task not in output["results"]:
            raise TaskLoadError(f"lm-eval returned no results for task {task!r}")
        version = output.get("versions", {}).get(task)
        version = version if isinstance(version, (str, int, float)) else str(version)
        versions[task] = version
        results[task] = {**_flatten(output["results"][task]), "version": version}
    return results, versions
