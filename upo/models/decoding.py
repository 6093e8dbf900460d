"""Decoding machinery for ``upo.models.sampling``: faster forward passes, the same results up to float rounding.

- :class:`GrowingCache`: a KV cache that appends into spare capacity instead of re-concatenating itself
  at every step (``DynamicCache`` copies the whole cache per token);
- :func:`cpu_packed_linears`: the linear layers run on weights packed once per sampling call;
- :func:`repeat_cache`: one prefix's cache repeated for a batch of rows.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
from collections.abc import Iterator

import torch
from torch import nn
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class GrowingLayer(DynamicLayer):
    """A DynamicCache layer that appends into spare capacity instead of concatenating the whole cache each step.

    ``update`` returns a view of the filled part, so attention sees exactly what DynamicLayer would return.
    Capacity grows by ``chunk`` positions when full (the only copies).
    """

    chunk = 64

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._length = 0
        self._keys = self._values = None

    def _append(self, buffer, states):
        needed = self._length + states.shape[-2]
        if buffer is None or buffer.shape[-2] < needed:
            shape = (*states.shape[:-2], needed + self.chunk, states.shape[-1])
            grown = torch.empty(shape, dtype=states.dtype, device=states.device)
            if buffer is not None:
                grown[..., : self._length, :] = buffer[..., : self._length, :]
            buffer = grown
        buffer[..., self._length : needed, :] = states
        return buffer

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self._keys = self._append(self._keys, key_states)
        self._values = self._append(self._values, value_states)
        self._length += key_states.shape[-2]
        self.keys = self._keys[..., : self._length, :]
        self.values = self._values[..., : self._length, :]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized and self._length > 0:
            self._keys, self._values = self._keys[indices], self._values[indices]
            self.keys = self._keys[..., : self._length, :]
            self.values = self._values[..., : self._length, :]

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized and self._length > 0:
            self._keys = self._keys.repeat_interleave(repeats, dim=0)
            self._values = self._values.repeat_interleave(repeats, dim=0)
            self.keys = self._keys[..., : self._length, :]
            self.values = self._values[..., : self._length, :]


class GrowingCache(DynamicCache):
    """The DynamicCache ``config`` asks for, with every plain full-attention layer a :class:`GrowingLayer`.

    Sliding-window and other special layers keep their own class.
    """

    def __init__(self, config):
        super().__init__(config=config)
        self.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in self.layers]


def _packed_linear(x: torch.Tensor, *, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x.to(packed.dtype).contiguous(), packed, bias, "none", [], "")


@contextlib.contextmanager
def cpu_packed_linears(model, rows_hint: int, enabled: bool = True) -> Iterator[int]:
    """While open, the model's CPU ``nn.Linear`` layers run oneDNN matmuls on weights packed once.

    Decoding multiplies a few rows per step by every weight matrix, and ``nn.Linear`` pays a per-call
    weight preparation each time: float32 GEMMs re-pack the weight, and under bf16 autocast the weight is
    cast to bf16 on every call (for SmolLM2's 49k x 576 LM head that cast costs more than the product).
    Packed once per sampling call (in the dtype the layer computes in: autocast's bf16, else the weight's
    float32/bf16), decoding runs ~2x faster on this project's CPUs (``benchmarks/generation_throughput.py``).
    bf16 products are bit-identical to autocast's; float32 products are summed in another order and agree
    with ``nn.Linear`` to float32 rounding (~1e-6 relative), not bit for bit. A no-op off CPU, under a
    non-bf16 autocast, without oneDNN or when ``enabled`` is False. Weights are untouched; the original
    forwards are restored on exit.

    Yields:
        the number of layers packed.
    """
    parameter = next(model.parameters())
    dtype = None  # the dtype the layers compute in; None: leave them alone
    if enabled and parameter.device.type == "cpu" and torch.backends.mkldnn.is_available():
        if not torch.is_autocast_enabled("cpu"):
            dtype = "weight"
        elif torch.get_autocast_dtype("cpu") == torch.bfloat16:
            dtype = torch.bfloat16
    patched = []
    try:
        for module in model.modules() if dtype is not None else ():
            if not isinstance(module, nn.Linear) or "forward" in vars(module):
                continue
            target = module.weight.dtype if dtype == "weight" else dtype
            if target not in (torch.float32, torch.bfloat16):
                continue
            packed = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach().to(target), rows_hint)
            bias = None if module.bias is None else module.bias.detach().to(target)
            module.forward = functools.partial(_packed_linear, packed=packed, bias=bias)
            patched.append(module)
        yield len(patched)
    finally:
        for module in patched:
            del module.forward


def cache_keyword(model) -> str:
    """``cache`` (transformers >= 5.2x) or ``past_key_values``, whichever the underlying forward takes."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"


def repeat_cache(prefix_cache, batch: int):
    """A fresh cache holding the prefix's keys and values repeated for ``batch`` rows (the prefix stays intact)."""
    cache = copy.deepcopy(prefix_cache)
    cache.batch_repeat_interleave(batch)
    return cache
