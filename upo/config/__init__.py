"""The config layer: typed run config (``run``), command-line overrides (``overrides``) and the checks of
every name an experiment config uses (``checks``). Method files and JSON schemas are package data
(``upo/methods``, ``upo/schemas``), read with :func:`package_file`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from upo.config.run import (
    DataConfig,
    EvalConfig,
    FoldConfig,
    LoraConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    OverrideRecord,
    PPOConfig,
    ReferenceConfig,
    RunConfig,
    TrainConfig,
    check_training_inputs,
    load_eval_config,
    load_run_config,
    read_run_yaml,
    save_run_config,
)

__all__ = [
    "DataConfig",
    "EvalConfig",
    "FoldConfig",
    "LoraConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "OverrideRecord",
    "PPOConfig",
    "ReferenceConfig",
    "RunConfig",
    "TrainConfig",
    "check_training_inputs",
    "load_eval_config",
    "load_run_config",
    "package_file",
    "read_run_yaml",
    "save_run_config",
]


def package_file(*parts: str) -> Path:
    """A data file shipped inside the ``upo`` package, e.g. ``package_file("schemas", "config.schema.yaml")``."""
    return Path(str(resources.files("upo").joinpath(*parts)))
