"""The one value head (UPO's V(x), PPO's V(s_t)) and the device / precision helpers every trainer uses.

Device choice and bf16 autocast live here and nowhere else: the trainers, the reference log-prob
cache, reward-model scoring and PPO call :func:`pick_device` and :func:`autocast`.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class ValueHead(nn.Module):
    """V(h) = linear(LayerNorm(h)) (or linear(h) without ``layer_norm``) on hidden states, in float32.

    ``hidden`` (..., H) -> (...,): UPO feeds the last prompt token's detached state (B, H) -> (B,)
    (V(x)); PPO the policy's last hidden state at each response position (B, T, H) -> (B, T) (V(s_t)).
    ``zero_init`` starts the output weight at zero, so V = 0 before training (UPO warm-starts it);
    otherwise the weight keeps nn.Linear's default init (PPO). The bias always starts at zero.
    """

    def __init__(self, hidden_size: int, layer_norm: bool = True, zero_init: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size) if layer_norm else nn.Identity()
        self.linear = nn.Linear(hidden_size, 1)
        if zero_init:
            nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(hidden.float())).squeeze(-1)


def pick_device() -> torch.device:
    """The accelerator if there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_dtype(name: str) -> torch.dtype:
    """``float32`` / ``bfloat16`` (the config's ``model.dtype``) as a torch dtype."""
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} not supported; use {' or '.join(DTYPES)}")
    return DTYPES[name]


def autocast(enabled: bool, device: torch.device | str | None = None):
    """bf16 autocast on ``device`` (default: :func:`pick_device`) when ``enabled``; weights keep their dtype."""
    if not enabled:
        return contextlib.nullcontext()
    device_type = torch.device(device).type if device is not None else pick_device().type
    return torch.autocast(device_type, dtype=torch.bfloat16)
