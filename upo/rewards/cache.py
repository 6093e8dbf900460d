"""The reward score cache: scores per (reward name, reward version, [prompt,] text), in memory and optionally
in a sqlite file shared by concurrent workflow jobs, so the same text is never scored twice
(``upo.rewards.scorers.score_texts`` reads and fills it)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from upo.io import sha256_text
from upo.rewards.spec import RewardSpec


class RewardCache:
    """Scores per (reward name, reward version, [prompt,] text): in memory, optionally in sqlite.

    The sqlite file is safe to share between processes (each insert is one transaction; sqlite
    locks the file), so concurrent workflow jobs can read and extend one cache.

    Attributes:
        hits / misses: lookups answered / not answered since construction.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._memory: dict[str, float] = {}
        self.hits = 0
        self.misses = 0
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, "
                    "reward TEXT NOT NULL, version TEXT NOT NULL, value REAL NOT NULL)"
                )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    @staticmethod
    def key(spec: RewardSpec, text: str, prompt: str | None = None) -> str:
        parts = [
            spec.name,
            spec.version,
            prompt if spec.uses_prompt and prompt is not None else "",
            text,
        ]
        return sha256_text("\x00".join(parts))

    def get_many(self, keys: Sequence[str]) -> dict[str, float]:
        found = {k: self._memory[k] for k in keys if k in self._memory}
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing and self.path is not None:
            with self._connect() as db:
                for start in range(0, len(missing), 500):
                    chunk = missing[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows = db.execute(f"SELECT key, value FROM scores WHERE key IN ({marks})", chunk)
                    for k, v in rows:
                        found[k] = float(v)
                        self._memory[k] = float(v)
        return found

    def put_many(self, spec: RewardSpec, items: dict[str, float]) -> None:
        self._memory.update(items)
        if items and self.path is not None:
            with self._connect() as db:
                db.executemany(
                    "INSERT OR REPLACE INTO scores (key, reward, version, value) VALUES (?, ?, ?, ?)",
                    [(k, spec.name, spec.version, float(v)) for k, v in items.items()],
                )

    def __len__(self) -> int:
        if self.path is None:
            return len(self._memory)
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM scores").fetchone()[0])
