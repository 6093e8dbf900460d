"""Where a preference dataset's raw rows come from: a local file or a hub dataset, read row by row.

A local JSONL file (one object a line; ``*.json`` / ``*.json.gz``: one JSON list, or JSON Lines as SHP
publishes them: the first character decides), gzip or not (recognised by its magic bytes, not its name), is
read line by line here (a line that is not UTF-8 is counted as ``invalid_utf8`` with its file and line); a hub
dataset id or local dataset folder is read with ``datasets.load_dataset(source, data_dir, split)``. A source
that cannot be read at all raises :class:`DataSourceError`; a bad row becomes a :class:`RawRow` without a row,
which ``upo.data.prepare`` counts.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

from upo.data.loaders import Loader, RawRow

GZIP_MAGIC = b"\x1f\x8b"


class DataSourceError(ValueError):
    """A source that cannot be read at all (corrupt gzip, unreachable hub id): one line, naming it."""


def read_rows(loader: Loader, source: str, split: str, data_dir: str | None = None) -> Iterator[RawRow]:
    """Raw rows of a local JSONL/JSON file, or of a hub id / local dataset folder via datasets."""
    path = Path(source)
    if path.is_file():
        yield from _read_file(path)
        return
    if not path.exists() and not re.fullmatch(r"[\w.-]+/[\w.-]+", source):
        raise FileNotFoundError(f"{source}: no such file, and not a hub dataset id (owner/name)")
    import datasets

    hub_split = loader.hub_split(split)
    label = f"{source}{'/' + data_dir if data_dir else ''}[{hub_split}]"
    try:
        dataset = datasets.load_dataset(source, data_dir=data_dir, split=hub_split)
    except Exception as error:  # datasets raises many types (ConnectionError, DatasetNotFoundError...)
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise DataSourceError(f"{label}: cannot load with datasets: {type(error).__name__}: {message}") from error
    for index, row in enumerate(dataset):
        yield RawRow(f"{label}#{index}", dict(row))


def _is_gzip(path: Path) -> bool:
    """Gzip is recognised by its magic bytes, whatever the file is called."""
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def _json_kind(path: Path, opener) -> str:
    """``json`` (one JSON list) for a ``*.json`` / ``*.json.gz`` file that starts with ``[``, else ``jsonl``
    (one object a line): SHP publishes its splits as ``<subreddit>/train.json`` in JSON Lines."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if not name.endswith(".json"):
        return "jsonl"
    with opener(path, "rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return "json" if head[:1] == b"[" else "jsonl"


def _undecodable(where: str, error: UnicodeDecodeError) -> RawRow:
    bad = error.object[error.start : error.start + 4]
    return RawRow(where, None, f"not UTF-8: byte {error.start} of the line is {bad[:1]!r}", reason="invalid_utf8")


def _read_file(path: Path) -> Iterator[RawRow]:
    opener = gzip.open if _is_gzip(path) else open
    try:
        if _json_kind(path, opener) == "json":
            with opener(path, "rb") as handle:
                data = handle.read()
            try:
                rows = json.loads(data.decode("utf-8-sig"))
            except UnicodeDecodeError as error:
                line = data[: error.start].count(b"\n") + 1
                raise DataSourceError(f"{path}:{line}: not UTF-8 (byte {error.start} of the file)") from None
            except json.JSONDecodeError as error:
                raise DataSourceError(f"{path}:{error.lineno}: invalid JSON: {error.msg}") from None
            if not isinstance(rows, list):
                raise DataSourceError(f"{path}: expected a JSON list of rows")
            for index, row in enumerate(rows):
                ok = isinstance(row, dict)
                yield RawRow(f"{path}#{index}", row if ok else None, "" if ok else "not a JSON object")
            return
        with opener(path, "rb") as handle:
            for line_number, raw_line in enumerate(handle, start=1):
                where = f"{path}:{line_number}"
                try:
                    line = raw_line.decode("utf-8-sig" if line_number == 1 else "utf-8")
                except UnicodeDecodeError as error:
                    yield _undecodable(where, error)
                    continue
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    yield RawRow(where, None, f"invalid JSON: {error}")
                    continue
                ok = isinstance(row, dict)
                yield RawRow(where, row if ok else None, "" if ok else "not a JSON object")
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DataSourceError(f"{path}: corrupt gzip data: {error}") from None
