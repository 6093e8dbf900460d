"""Atomic writers: nothing partial is ever visible, and a killed writer's debris is removed later."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from upo.io import atomic_dir, atomic_path, remove_stale_temps, write_text

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True)


def test_killed_writers_leave_debris_that_the_next_writer_removes(tmp_path):
    killed = run_python(f"""
        import os, signal
        from pathlib import Path
        from upo.io import atomic_dir, atomic_path
        out = Path({str(tmp_path)!r})
        with atomic_path(out / "table.csv") as tmp:
            tmp.write_text("half a table")
            with atomic_dir(out / "model") as folder:
                (folder / "weights.safetensors").write_bytes(b"half the weights")
                os.kill(os.getpid(), signal.SIGKILL)
        """)
    assert killed.returncode == -9
    debris = sorted(p.name for p in tmp_path.iterdir())
    assert len(debris) == 2 and all(name.endswith(".tmp") for name in debris)
    assert not (tmp_path / "table.csv").exists() and not (tmp_path / "model").exists()
    unrelated = tmp_path / ".table.csv.backup"  # not a writer's temp name: kept
    unrelated.write_text("mine")
    rerun = run_python(f"""
        from pathlib import Path
        from upo.io import atomic_dir, write_text
        out = Path({str(tmp_path)!r})
        write_text(out / "table.csv", "a,b\\n")
        with atomic_dir(out / "model") as folder:
            (folder / "weights.safetensors").write_bytes(b"weights")
        """)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".table.csv.backup", "model", "table.csv"]
    assert (tmp_path / "model" / "weights.safetensors").read_bytes() == b"weights"


def test_temps_of_a_live_writer_and_of_other_targets_are_kept(tmp_path):
    live = tmp_path / ".model.abcdefgh.tmp"  # modified after this process started: may be in use
    live.mkdir()
    older = tmp_path / ".model.pt.abcdefgh.tmp"  # another target's temp, however old
    older.write_text("x")
    os.utime(older, (0, 0))
    stale = tmp_path / ".model.old.12345"
    stale.mkdir()
    os.utime(stale, (0, 0))
    assert remove_stale_temps(tmp_path / "model") == [stale]
    assert live.exists() and older.exists()


def test_failed_block_writes_nothing(tmp_path):
    write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("new")
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "d") as folder:
        (folder / "f").write_text("x")
        raise RuntimeError("boom")
    assert (tmp_path / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
