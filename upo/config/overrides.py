"""Command-line overrides of a run.yaml that never make a saved run.yaml lie.

``python -m upo train RUN.yaml optim.lr=1.0e-5 --out DIR`` trains a new run in ``DIR`` whose own
``run.yaml`` holds the overridden settings and records where they came from (``overridden``). Overrides
without ``--out`` are refused: the run directory of ``RUN.yaml`` would otherwise hold a model trained
with settings its ``run.yaml`` does not show.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from upo.config.run import RunConfig, read_run_yaml
from upo.strict import ConfigError, from_dict, to_dict


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``a.b=value`` overrides (value parsed as YAML) applied to ``data`` in place; typing comes after."""
    for item in overrides:
        key, separator, raw = item.partition("=")
        if not separator or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} is not key=value (e.g. optim.lr=1.0e-5)")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: value {raw!r} is not valid YAML") from None
        node = data
        *parents, leaf = key.split(".")
        for depth, part in enumerate(parents):
            child = node.setdefault(part, {})
            if child is None:  # an unset optional section (e.g. model.lora: null) is created
                child = node[part] = {}
            if not isinstance(child, dict):
                section = ".".join(parents[: depth + 1])
                raise ConfigError(f"override {item!r}: {section} is a value ({child!r}), not a section")
            node = child
        node[leaf] = value
    return data


def overridden_run(run_yaml: str | os.PathLike, overrides: list[str], out: str | os.PathLike | None) -> RunConfig:
    """The run of ``run_yaml`` with ``overrides`` applied, to be trained in ``out`` (required with overrides).

    Raises ConfigError when overrides come without ``out``, when ``out`` is the source run's own folder, or
    when ``out`` already holds a run.yaml with other settings (its model would not match either).
    """
    data = read_run_yaml(run_yaml)
    if not overrides and out is None:
        try:
            return from_dict(RunConfig, data)
        except ConfigError as error:
            raise ConfigError(f"{run_yaml}: {error}") from None
    if out is None:
        raise ConfigError(
            f"overrides {' '.join(overrides)} need --out DIR: the run would no longer match {run_yaml} "
            "(the overridden run and its own run.yaml go to DIR)"
        )
    source_dir = Path(data.get("output_dir") or Path(run_yaml).parent).resolve()
    if Path(out).resolve() in (source_dir, Path(run_yaml).resolve().parent):
        raise ConfigError(f"--out {out}: is the source run's own folder; pick a new folder for the overridden run")
    apply_overrides(data, overrides)
    data["output_dir"] = str(out)
    data["overridden"] = {"source": str(run_yaml), "overrides": list(overrides)}
    try:
        config = from_dict(RunConfig, data)
    except ConfigError as error:
        raise ConfigError(f"{run_yaml} with overrides: {error}") from None
    existing = Path(out) / "run.yaml"
    if existing.is_file() and read_run_yaml(existing) != to_dict(config):
        raise ConfigError(f"{existing}: already holds another run's settings; pick a new --out folder")
    return config
