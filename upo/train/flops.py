"""Model FLOP utilisation (MFU) of a training step against the machine's measured matmul peak.

Conventions (stated once here, quoted by ``benchmarks/README.md`` and the GPU acceptance test):

* **Full fine-tuning**: ``6 * N * T`` FLOPs per step (Kaplan et al. 2020; PaLM appendix B without
  the attention term): 2 N T forward, 4 N T backward (activations and weights). ``N`` counts every
  parameter of the model once (a tied embedding / LM head counts once), ``T`` the useful tokens of
  the step: non-pad tokens of [chosen; rejected] (the attention-mask sum), prompt tokens included.
* **LoRA**: ``4 * N * T + 6 * N_lora * T``. The frozen base weights are used in the forward (2 N T)
  and the backward through activations (2 N T), but get no weight gradient; the adapters (``N_lora``
  trainable parameters) cost forward, activation and weight gradient like any trained weight.
* The peak is a square matmul (``size`` x ``size``, default 2048) timed in the same process, with
  the same threads and dtype as the step it is compared with: ``2 size^3`` FLOPs per call, the best
  of ``repeats`` timings.

The count is the model's, not what the step executes: our step runs the LM head only at response
positions, so the executed FLOPs are below ``6 N T`` and a step can "save" FLOPs the count credits.
:func:`step_flops` with ``embedding_params`` excluded gives the count without the (tied) embedding
matrix, a lower bound reported beside it.
"""

from __future__ import annotations

import time

import torch
from torch import nn


def matmul_peak_gflops(
    dtype: torch.dtype, size: int = 2048, repeats: int = 5, device: torch.device | str = "cpu"
) -> float:
    """Best GFLOP/s of ``size x size @ size x size`` in ``dtype`` on ``device`` with the current threads."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    cuda = torch.device(device).type == "cuda"
    calls = 20 if cuda else 1  # a GPU matmul is too short to time alone
    a @ b  # warm-up: kernel selection, page faults
    best = float("inf")
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(calls):
            a @ b
        if cuda:
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - started) / calls)
    return 2 * size**3 / best / 1e9


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """``total`` (each tensor once, tied weights once), ``trainable`` and ``embedding`` (input embedding) counts."""
    seen: set[int] = set()
    total = trainable = 0
    for parameter in model.parameters():  # parameters() already yields a tied tensor once
        if id(parameter) in seen:
            continue
        seen.add(id(parameter))
        total += parameter.numel()
        trainable += parameter.numel() if parameter.requires_grad else 0
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    embedding = embeddings.weight.numel() if embeddings is not None else 0
    return {"total": total, "trainable": trainable, "embedding": embedding}


def step_flops(total_params: int, trainable_params: int, tokens: int, lora: bool) -> float:
    """Model FLOPs of one training step over ``tokens`` useful tokens (see the module docstring).

    Full fine-tuning: 6 N T. LoRA: 4 N_frozen T + 6 N_lora T, with N_frozen = total - trainable.
    """
    if not lora:
        return 6.0 * total_params * tokens
    frozen = total_params - trainable_params
    return 4.0 * frozen * tokens + 6.0 * trainable_params * tokens


def mfu(flops: float, seconds: float, peak_gflops: float) -> float:
    """Achieved FLOP/s over the peak: ``flops / seconds / (peak_gflops * 1e9)``."""
    if seconds <= 0 or peak_gflops <= 0:
        raise ValueError(f"mfu needs positive time and peak, got {seconds} s and {peak_gflops} GFLOP/s")
    return flops / seconds / (peak_gflops * 1e9)
