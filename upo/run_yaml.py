"""Writing a resolved run's ``run.yaml``: what the workflow's run.yaml rules do, and its command line.

The workflow resolves every run when it builds the DAG (``upo.sweeps``), so a changed setting reruns
exactly the runs it touches; the rule then only re-validates the resolved run and writes it.
"""

from __future__ import annotations

import argparse
import json

from upo.io import write_yaml
from upo.strict import ConfigError
from upo.sweeps import validated


def write_run_yaml(run_json: str, out: str, log: str | None = None) -> None:
    """Re-validate a resolved run (a JSON object: unknown keys, types, loss keywords) and write it atomically
    to ``out``; ``log`` gets one line saying so. The workflow's run.yaml rules call this in Snakemake's
    own process: the run was resolved when the DAG was built, and passed as the rule's params."""
    try:
        run = json.loads(run_json)
    except json.JSONDecodeError as error:
        raise ConfigError(f"--json: not a JSON object ({error})") from None
    if not isinstance(run, dict):
        raise ConfigError(f"--json: expected a JSON object, got {type(run).__name__}")
    write_yaml(out, validated(run))
    if log:
        with open(log, "w", encoding="utf-8") as handle:
            handle.write(f"wrote {out}\n")


def main_write_run_config(argv: list[str]) -> int:
    """``python -m upo write-run-config --json RUN_JSON --out run.yaml``: write a resolved run (see
    :func:`write_run_yaml`; the command reproduces what the workflow's run.yaml rules do)."""
    parser = argparse.ArgumentParser(prog="python -m upo write-run-config")
    parser.add_argument("--json", required=True, help="the resolved run config as a JSON object")
    parser.add_argument("--out", required=True, help="path of run.yaml")
    args = parser.parse_args(argv)
    write_run_yaml(args.json, args.out)
    return 0
