"""Resumable checkpoints: trainable weights (safetensors), optimizer, scheduler and RNG state.

``checkpoint/`` holds ``model/`` (the policy in HF folder layout, safetensors: a full model, or a peft
adapter folder for LoRA runs, loadable with ``from_pretrained`` / ``PeftModel.from_pretrained``),
``trainable.safetensors`` (every trainable tensor by name, value head included: what resuming
loads), ``optimizer.pt`` (optimizer, scheduler and RNG states) and ``state.json`` (step, wall time,
tokens). The final model is always a plain merged HF folder (``<run>/model/``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from upo.io import atomic_dir


def save_checkpoint(directory, forward, optimizer, value_optimizer, scheduler, state: dict, tokenizer=None) -> None:
    """Write a checkpoint atomically (a temporary folder renamed over the previous checkpoint)."""
    with atomic_dir(directory) as tmp:
        forward.model.save_pretrained(tmp / "model", safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp / "model")
        trainable = {n: p.detach().cpu().contiguous() for n, p in forward.named_parameters() if p.requires_grad}
        save_file(trainable, str(tmp / "trainable.safetensors"))
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "value_optimizer": value_optimizer.state_dict() if value_optimizer else None,
                "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "python_rng": list(random.getstate()[1]),
            },
            tmp / "optimizer.pt",
        )
        (tmp / "state.json").write_text(json.dumps(state))


def load_checkpoint(directory, forward, optimizer, value_optimizer, scheduler) -> dict:
    directory = Path(directory)
    weights = load_file(str(directory / "trainable.safetensors"))
    missing = [n for n, p in forward.named_parameters() if p.requires_grad and n not in weights]
    if missing:
        raise ValueError(f"{directory}: checkpoint lacks trainable tensor {missing[0]!r}")
    with torch.no_grad():
        for name, parameter in forward.named_parameters():
            if name in weights:
                parameter.copy_(weights[name])
    extra = torch.load(directory / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(extra["optimizer"])
    if value_optimizer is not None and extra["value_optimizer"] is not None:
        value_optimizer.load_state_dict(extra["value_optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["torch_rng"])
    random.setstate((3, tuple(extra["python_rng"]), None))
    return json.loads((directory / "state.json").read_text())
