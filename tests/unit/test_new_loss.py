"""Extending the benchmark: a new loss is one file in ``upo/losses/`` (plus its method YAML) and trains
through the offline trainer with no other edit: no import list, no trainer change."""

from __future__ import annotations

import csv
import importlib.util
import sys
import uuid
from pathlib import Path

import upo.losses
from tests.unit.test_train_offline import make_cache, run_config
from upo.io import read_yaml, write_text
from upo.losses import LOSSES, discover, get_loss
from upo.strict import from_dict
from upo.sweeps import MethodFile
from upo.train.offline import train

LOSS_SOURCE = '''"""SLiC-HF's calibration loss (Zhao et al. 2023, Eq. 3, no regulariser), as a user would add it."""

from __future__ import annotations

from typing import Annotated

import torch

from upo.losses.base import POSITIVE, LossInputs, LossOutput, register_loss
from upo.losses.dpo import preference_logits


@register_loss("{name}", needs={{"rejected", "reference"}})
def hinge_loss(inputs: LossInputs, *, beta: Annotated[float, POSITIVE] = 0.1, delta: float = 1.0) -> LossOutput:
    """max(0, delta - beta * z), z the DPO log-ratio margin; (B,) -> (B,)."""
    return LossOutput(torch.relu(delta - beta * preference_logits(inputs)))
'''

METHOD_YAML = """# A hinge (SLiC) method added by a user
trainer: offline
loss: {name}
loss_kwargs: {{delta: 2.0}}
description: "hinge loss on the DPO margin"
"""


def test_a_loss_added_in_one_file_trains(tmp_path, tiny_model_dir, tiny_data):
    name = f"hinge_{uuid.uuid4().hex[:8]}"
    module_path = Path(upo.losses.__file__).parent / f"{name}.py"
    write_text(module_path, LOSS_SOURCE.format(name=name))
    try:
        assert name in discover() and name in LOSSES
        write_text(tmp_path / f"{name}.yaml", METHOD_YAML.format(name=name))
        method = from_dict(MethodFile, read_yaml(tmp_path / f"{name}.yaml"))
        get_loss(method.loss, **method.loss_kwargs)  # what the DAG build checks
        cache = make_cache(tmp_path, tiny_model_dir, tiny_data)
        kwargs = {**method.loss_kwargs, "beta": 0.5}
        summary = train(run_config(tmp_path, tiny_model_dir, tiny_data, cache, name, method.loss, kwargs, max_steps=2))
        assert summary["steps"] == 2 and summary["loss"] == name
        with open(tmp_path / name / "train_log.csv") as handle:
            rows = list(csv.DictReader(handle))
        assert [r["step"] for r in rows] == ["1", "2"]
        assert float(rows[0]["loss"]) == 2.0  # policy == reference at step 1: z = 0, loss = delta
        assert "eval/loss" in rows[-1]  # held-out metrics come from the new loss too
        assert (tmp_path / name / "model" / "model.safetensors").exists()
    finally:
        module_path.unlink(missing_ok=True)
        Path(importlib.util.cache_from_source(str(module_path))).unlink(missing_ok=True)
        if name in LOSSES:
            LOSSES.remove(name)
        sys.modules.pop(f"upo.losses.{name}", None)
