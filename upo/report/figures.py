"""What every figure shares: headless matplotlib, the figure grid, and PNG + PDF written atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: workflow jobs and CI have no display
import matplotlib.pyplot as plt  # noqa: E402

from upo.io import atomic_path  # noqa: E402

__all__ = ["PlotError", "_save", "_subplots", "plt"]


class PlotError(ValueError):
    """The table cannot be plotted; the message names the file and what is missing."""


def _save(fig, out_dir: Path, stem: str) -> list[Path]:
    paths = []
    for fmt in ("png", "pdf"):
        path = out_dir / f"{stem}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def _subplots(rows: int, cols: int, width: float = 4.8, height: float = 3.8):
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    return fig, axes
