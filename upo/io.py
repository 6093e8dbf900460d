"""File helpers: atomic writes (no partial outputs), JSONL reading with line numbers, hashing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

# Temporary files and folders of the atomic writers are ``.NAME.XXXXXXXX.tmp`` (mkstemp's 8 random
# characters) beside ``NAME``, and ``.NAME.old.PID`` while a folder is swapped in.
PROCESS_START = time.time()


def _temp_pattern(name: str) -> re.Pattern:
    return re.compile(rf"\.{re.escape(name)}\.(?:[a-z0-9_]{{8}}\.tmp|old\.\d+)")


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove what a killed atomic writer of ``path`` left beside it; returns the removed paths.

    Only one process writes a given output at a time (Snakemake runs one job per output), so a
    temporary sibling last modified before this process started belongs to a writer that died.
    """
    target = Path(path)
    if not target.parent.is_dir():
        return []
    pattern = _temp_pattern(target.name)
    removed = []
    for stale in target.parent.iterdir():
        if not pattern.fullmatch(stale.name):
            continue
        try:
            if stale.lstat().st_mtime >= PROCESS_START:
                continue
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
            else:
                stale.unlink()
        except FileNotFoundError:
            continue
        removed.append(stale)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Temporary files of an earlier writer of ``path`` that was killed are removed first.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; outputs should read like any other file
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` (renames only) if the block succeeds.

    Temporary folders of an earlier writer of ``path`` that was killed are removed first.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the final folder should read like any other
    try:
        yield tmp
        old = target.with_name(f".{target.name}.old.{os.getpid()}")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_yaml(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, yaml.safe_dump(obj, sort_keys=False))


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file; a bad line raises ``ValueError`` naming the file and line number."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: invalid JSON: {error}") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{line_number}: expected a JSON object per line")
            rows.append(row)
    return rows


def read_yaml(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_dir(path: str | os.PathLike, patterns: tuple[str, ...] = ("*.safetensors", "*.json")) -> str:
    """Hash of the files matching ``patterns`` in a folder (names and contents), e.g. model weights."""
    digest = hashlib.sha256()
    root = Path(path)
    files = sorted({f for pattern in patterns for f in root.glob(pattern) if f.is_file()})
    for file in files:
        digest.update(file.name.encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
