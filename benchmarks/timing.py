"""Measuring a training step in ``benchmarks/train_throughput.py``: the device, synchronising it around a
timed step, the training-only memory peak, the batches of the warm-up and timed steps, and tokens/s over the
steps after the warm-up.

Peak memory: Linux ``VmHWM`` of the process, reset (``/proc/self/clear_refs``) just before the training loop,
so it covers training only (``ru_maxrss`` over the whole process is reported beside it); on CUDA,
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import resource
import statistics


def torch_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def sync_device() -> None:
    """Wait for queued GPU work, so a step's wall time includes it (a no-op on CPU)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak_memory() -> None:
    """Start the training-only peak: reset VmHWM (Linux) or the CUDA allocator's peak."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # 5 = reset the peak resident set size to the current one


def peak_memory() -> dict:
    """Training-only and whole-process peak resident memory (MiB), and the CUDA allocator's peak."""
    import torch

    with open("/proc/self/status") as handle:
        status = dict(line.split(":", 1) for line in handle if ":" in line)
    peaks = {
        "train_peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024,
        "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
    }
    if torch.cuda.is_available():
        peaks["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peaks


def step_batches(spec: dict) -> list[list[int]]:
    """Pair indices of every step, warm-up steps first, in file order (the same batches on every side)."""
    size = spec["batch_size"]
    return [list(range(i * size, (i + 1) * size)) for i in range(spec["warmup"] + spec["steps"])]


def timed(result: dict, warmup: int) -> dict:
    """Tokens/s and median step time over the steps after ``warmup``."""
    times, tokens = result["times"][warmup:], result["tokens"][warmup:]
    return {
        "tokens_per_s": sum(tokens) / sum(times),
        "median_step_s": statistics.median(times),
        "timed_steps": len(times),
        "tokens_per_step": sum(tokens) / len(tokens),
    }
