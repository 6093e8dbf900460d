"""Per-step metrics streamed to CSV (the header grows if a later row brings new columns)."""

from __future__ import annotations

import csv
import os
from pathlib import Path


class MetricsLogger:
    def __init__(self, path: str | os.PathLike, keep_until_step: int = 0, enabled: bool = True) -> None:
        """``keep_until_step`` > 0 (a resumed run) keeps the old rows up to that step and drops
        the rows a killed run logged after its last checkpoint."""
        self.path = Path(path)
        self.enabled = enabled
        self.rows: list[dict] = []
        if enabled and keep_until_step and self.path.exists():
            with open(self.path, newline="") as handle:
                self.rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= keep_until_step]

    def log(self, row: dict) -> None:
        if not self.enabled:
            return
        self.rows.append(row)
        columns = list(dict.fromkeys(key for r in self.rows for key in r))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)
