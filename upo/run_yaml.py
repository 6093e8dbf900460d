"""Writing a resolved run's ``run.yaml``: what the workflow's run.yaml rules do, and its command line.

The workflow resolves and checks every run when it builds the DAG (``upo.sweeps``, ``upo.checks``), so a
changed setting reruns exactly the runs it touches; the run.yaml rules then call
``python -m upo write-run-config --resolved``, which type-checks the run again and writes it. They are
shell commands, not ``run:`` blocks: Snakemake runs a ``run:`` block in a new Snakemake process that
parses the whole workflow again (about 13 s a job for the default config, against 0.3 s here).
"""

from __future__ import annotations

import argparse
import json

from upo.io import write_yaml
from upo.strict import ConfigError
from upo.sweeps import validated


def write_run_yaml(run_json: str, out: str, check_loss: bool = True) -> None:
    """Re-validate a resolved run (a JSON object: unknown keys, types and, with ``check_loss``, the loss
    keywords) and write it atomically to ``out``."""
    try:
        run = json.loads(run_json)
    except json.JSONDecodeError as error:
        raise ConfigError(f"--json: not a JSON object ({error})") from None
    if not isinstance(run, dict):
        raise ConfigError(f"--json: expected a JSON object, got {type(run).__name__}")
    write_yaml(out, validated(run, check_loss=check_loss))


def main_write_run_config(argv: list[str]) -> int:
    """``python -m upo write-run-config --json RUN_JSON --out run.yaml [--resolved]``: write a resolved run."""
    parser = argparse.ArgumentParser(prog="python -m upo write-run-config")
    parser.add_argument("--json", required=True, help="the resolved run config as a JSON object")
    parser.add_argument("--out", required=True, help="path of run.yaml")
    parser.add_argument(
        "--resolved",
        action="store_true",
        help="the run was resolved and fully checked when the workflow built its DAG: check its types "
        "again but not its loss keywords (which imports torch: ~1.5 s of a job that writes one file)",
    )
    args = parser.parse_args(argv)
    write_run_yaml(args.json, args.out, check_loss=not args.resolved)
    return 0
