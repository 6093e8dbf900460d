"""Judge verdicts cached by a hash of (judge identity, instruction, output_1, output_2).

Re-evaluating or re-aggregating a finished study then costs no judge calls: a verdict is computed
once per judge identity (name, options, prompt and weight hashes, package version; see
``upo.evaluate.judges.judge_identity``) and pair of texts in the order shown, and read back after.
The order is part of the key because a judge's verdict may depend on it (position bias).

The store is one sqlite file (default ``results/cache/judges.sqlite``, ignored by git), shared by
concurrent workflow jobs: WAL journal (readers never block the writer), a busy timeout (a writer
waits for another instead of failing), and each batch of new verdicts is one ``INSERT OR IGNORE``
transaction, so two jobs that computed the same verdict both succeed and the first one stays.
Each row also keeps the seconds the judge spent on that verdict, so a judge card read from the
cache still reports what the judge costs; an API judge's verdicts also keep their dollars and tokens
(table ``verdict_costs``, written in the same transaction; ``None`` where the API did not say).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from upo.io import sha256_text

DEFAULT_PATH = "results/cache/judges.sqlite"
BUSY_TIMEOUT_S = 120.0  # a cluster job waits this long for another job's write before failing

# (instructions, outputs_1, outputs_2) -> P(output_2 beats output_1), as upo.evaluate.judges.PairScorer
PairScorer = Callable[[list[str], list[str], list[str]], list[float]]


def identity_digest(identity: dict) -> str:
    """sha256 of a judge identity (key order does not matter)."""
    return sha256_text(json.dumps(identity, sort_keys=True, separators=(",", ":")))


def verdict_key(identity_sha: str, instruction: str, output_1: str, output_2: str) -> str:
    """Cache key of one verdict: the judge's identity hash and the three texts, in the order shown."""
    return sha256_text("\x00".join((identity_sha, instruction, output_1, output_2)))


class VerdictCache:
    """Verdicts (P(output_2 wins)) and their cost in seconds, in a sqlite file shared between processes.

    Attributes:
        path: the sqlite file (created with its folder).
        hits / misses: lookups answered / not answered by this object since construction.
    """

    def __init__(self, path: str | os.PathLike = DEFAULT_PATH) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")  # persistent: set once per file
            db.execute(
                "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, judge TEXT NOT NULL, "
                "verdict REAL NOT NULL, seconds REAL NOT NULL, created REAL NOT NULL)"
            )
            # A table of its own, not new columns: CREATE ... IF NOT EXISTS is safe when jobs race to open a
            # cache file made before it existed (ALTER TABLE is not idempotent).
            db.execute("CREATE TABLE IF NOT EXISTS verdict_costs (key TEXT PRIMARY KEY, usd REAL, tokens REAL)")
        db.close()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        return db

    def _select(self, columns: str, table: str, keys: list[str]) -> list[tuple]:
        """Rows ``(key, *columns)`` of ``table`` for the keys present, in chunks of 500 (SQLite's limit on
        bound parameters)."""
        unique = list(dict.fromkeys(keys))
        rows: list[tuple] = []
        db = self._connect()
        try:
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows += db.execute(f"SELECT key, {columns} FROM {table} WHERE key IN ({marks})", chunk).fetchall()
        finally:
            db.close()
        return rows

    def get_many(self, keys: list[str]) -> dict[str, tuple[float, float]]:
        """``{key: (verdict, seconds)}`` for the keys present."""
        return {key: (float(v), float(s)) for key, v, s in self._select("verdict, seconds", "verdicts", keys)}

    def get_costs(self, keys: list[str]) -> dict[str, tuple[float | None, float | None]]:
        """``{key: (usd, tokens)}`` for the keys whose verdict came with a recorded cost (API judges)."""
        return {
            key: (None if usd is None else float(usd), None if tokens is None else float(tokens))
            for key, usd, tokens in self._select("usd, tokens", "verdict_costs", keys)
        }

    def put_many(
        self,
        judge: str,
        items: dict[str, tuple[float, float]],
        costs: dict[str, tuple[float | None, float | None]] | None = None,
    ) -> None:
        """Store ``{key: (verdict, seconds)}`` and ``costs`` ``{key: (usd, tokens)}`` in one transaction.

        Keys already present are kept (with their first cost), so concurrent writers never disagree.
        """
        if not items:
            return
        unknown = set(costs or {}) - set(items)
        if unknown:
            raise ValueError(f"verdict cache: costs for {len(unknown)} keys without a verdict")
        now = time.time()
        db = self._connect()
        try:
            with db:  # one transaction: commit on success, roll back on error
                db.executemany(
                    "INSERT OR IGNORE INTO verdicts (key, judge, verdict, seconds, created) VALUES (?, ?, ?, ?, ?)",
                    [(k, judge, float(v), float(s), now) for k, (v, s) in items.items()],
                )
                db.executemany(
                    "INSERT OR IGNORE INTO verdict_costs (key, usd, tokens) VALUES (?, ?, ?)",
                    [(k, usd, tokens) for k, (usd, tokens) in (costs or {}).items()],
                )
        finally:
            db.close()

    def __len__(self) -> int:
        db = self._connect()
        try:
            return int(db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0])
        finally:
            db.close()


class CachedPairJudge:
    """A pair judge behind the verdict cache: only pairs the cache lacks are judged, each once per call.

    This class owns the bookkeeping every cached judge shares (keys, the misses in first-seen order,
    storing new verdicts, the counters and the per-pair costs of the last call); a subclass only says how
    to judge the misses (:meth:`_judge_missing`).

    Args:
        identity: the judge identity (``upo.evaluate.judges.judge_identity``, or an extension of it).
        cache: the verdict store; ``None`` judges every pair every time (seconds are still recorded).

    Attributes:
        judge_calls: times the judge ran; ``judged``: pairs it judged; ``cached``: pairs read back.
        Per pair of the last call: ``seconds`` (measured or as cached), ``usd`` and ``tokens`` (API judges
        only, ``None`` where unknown).
    """

    records_costs = False  # whether the judge's verdicts come with dollars and tokens (API judges)

    def __init__(self, identity: dict, cache: VerdictCache | None) -> None:
        self.identity_sha = identity_digest(identity)
        self.judge_name = str(identity.get("name", ""))
        self.cache = cache
        self.judge_calls = 0
        self.judged = 0
        self.cached = 0
        self.seconds: list[float] = []
        self.usd: list[float | None] = []
        self.tokens: list[float | None] = []

    def _judge_missing(
        self, instructions: list[str], outputs_1: list[str], outputs_2: list[str]
    ) -> tuple[list[tuple[float, float] | None], list[tuple[float | None, float | None]] | None, Exception | None]:
        """Judge these pairs (each one once): per pair ``(verdict, seconds)`` or ``None`` where the judge
        gave none, per pair ``(usd, tokens)`` or ``None`` when the judge records no cost, and the error to
        raise once the verdicts it did give are stored (``None`` when every pair got one)."""
        raise NotImplementedError

    def __call__(self, instructions: list[str], outputs_1: list[str], outputs_2: list[str]) -> list[float]:
        """P(output_2 beats output_1) per pair, from the cache or from the judge."""
        keys = [
            verdict_key(self.identity_sha, i, a, b) for i, a, b in zip(instructions, outputs_1, outputs_2, strict=True)
        ]
        found = self.cache.get_many(keys) if self.cache is not None else {}
        costs = self.cache.get_costs(keys) if self.cache is not None and self.records_costs else {}
        todo = [k for k in dict.fromkeys(keys) if k not in found]
        if todo:
            first = {k: n for n, k in reversed(list(enumerate(keys)))}  # first position of each key
            rows = [first[k] for k in todo]
            verdicts, pair_costs, error = self._judge_missing(
                [instructions[n] for n in rows], [outputs_1[n] for n in rows], [outputs_2[n] for n in rows]
            )
            if len(verdicts) != len(rows):
                raise ValueError(f"judge {self.judge_name!r} returned {len(verdicts)} verdicts for {len(rows)} pairs")
            self.judge_calls += 1
            new = {k: v for k, v in zip(todo, verdicts, strict=True) if v is not None}
            new_costs = {} if pair_costs is None else {k: c for k, c in zip(todo, pair_costs, strict=True) if k in new}
            self.judged += len(new)
            if self.cache is not None:
                self.cache.put_many(self.judge_name, new, new_costs)  # what it did judge is kept, even on error
            if error is not None:
                raise error
            found, costs = {**found, **new}, {**costs, **new_costs}
        self.cached += len(keys) - len(todo)
        if self.cache is not None:
            self.cache.hits += len(keys) - len(todo)
            self.cache.misses += len(todo)
        self.seconds = [found[k][1] for k in keys]
        self.usd = [costs.get(k, (None, None))[0] for k in keys]
        self.tokens = [costs.get(k, (None, None))[1] for k in keys]
        return [found[k][0] for k in keys]


class CachedScorer(CachedPairJudge):
    """A local pair scorer behind the verdict cache, built lazily.

    Args:
        make_scorer: builds the judge's pair scorer (called at most once, on the first miss: a fully
            cached evaluation never loads the judge's model).
        identity, cache: as :class:`CachedPairJudge`.
    """

    def __init__(self, make_scorer: Callable[[], PairScorer], identity: dict, cache: VerdictCache | None) -> None:
        super().__init__(identity, cache)
        self._make_scorer = make_scorer
        self._scorer: PairScorer | None = None

    def _judge_missing(self, instructions, outputs_1, outputs_2):
        if self._scorer is None:
            self._scorer = self._make_scorer()
        start = time.perf_counter()
        verdicts = self._scorer(instructions, outputs_1, outputs_2)
        per_pair = (time.perf_counter() - start) / len(instructions)
        return [(float(v), per_pair) for v in verdicts], None, None
