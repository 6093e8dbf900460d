"""The TRL side of ``benchmarks/train_throughput.py``: ``DPOTrainer`` on the benchmark's pairs, timed per step
by a trainer callback, and the step-0 DPO loss of ours and TRL on one batch.

TRL gets the pairs in text format: the prompt rendered by the same chat template
(``upo.data.batching.format_prompt``), the responses as plain text to which TRL appends EOS; both sides'
token ids are compared pair by pair (:func:`count_same_token_ids`).
"""

from __future__ import annotations

import tempfile
import time

from timing import peak_memory, reset_peak_memory, step_batches, sync_device, torch_device


def load_pairs(spec: dict):
    """(tokenizer, records, our tokenised pairs) of the benchmark's warm-up and timed steps."""
    import torch

    from upo.io import read_jsonl
    from upo.models.loading import load_tokenizer
    from upo.models.pair_forward import tokenize_records

    torch.set_num_threads(spec["threads"])
    tokenizer = load_tokenizer(spec["model"])
    records = read_jsonl(spec["data"])[: spec["batch_size"] * (spec["warmup"] + spec["steps"])]
    pairs = tokenize_records(records, tokenizer, spec["max_length"], spec["max_prompt_length"])
    return tokenizer, records, pairs


def trl_dataset(tokenizer, records):
    """Text-format rows: the prompt rendered by the same chat template; TRL appends EOS to responses."""
    from datasets import Dataset

    from upo.data.batching import format_prompt

    return Dataset.from_list(
        [
            {"prompt": format_prompt(tokenizer, r["prompt"]), "chosen": r["chosen"], "rejected": r["rejected"]}
            for r in records
        ]
    )


def trl_config(spec: dict, out: str, **overrides):
    """``DPOConfig`` holding equal what ours uses: batch, steps, lr, beta, max_length, precision, grad clip."""
    from trl import DPOConfig

    from upo.config import OptimConfig

    return DPOConfig(
        output_dir=out,
        per_device_train_batch_size=spec["batch_size"],
        max_steps=spec["warmup"] + spec["steps"],
        learning_rate=spec["lr"],
        beta=spec["beta"],
        max_length=spec["max_length"],
        bf16=spec["bf16"],
        max_grad_norm=OptimConfig().max_grad_norm,  # the same clipping as our trainer's default
        train_sampling_strategy="sequential",  # the same batches as ours, in order
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
        seed=0,
        use_cpu=torch_device() == "cpu",  # transformers refuses bf16 on CPU without it
        **overrides,
    )


def count_same_token_ids(trl_rows, pairs) -> int:
    """Pairs that TRL tokenised to exactly our prompt, chosen and rejected ids."""
    return sum(
        row["prompt_ids"] == p.prompt_ids
        and row["chosen_ids"] == p.chosen_ids
        and row["rejected_ids"] == p.rejected_ids
        for row, p in zip(trl_rows, pairs, strict=True)
    )


def child_trl(spec: dict, precompute: bool, gradient_checkpointing: bool | None) -> dict:
    """Step times, tokens, setup time and peaks of ``DPOTrainer`` (reference precomputed or not)."""
    import gc

    from transformers import TrainerCallback
    from trl import DPOTrainer

    from upo.models.loading import load_model

    tokenizer, records, pairs = load_pairs(spec)

    class StepTimer(TrainerCallback):  # on_step_begin .. on_step_end = forward, backward, clip, optimizer step
        def __init__(self):
            self.times: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            sync_device()
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync_device()
            self.times.append(time.perf_counter() - self.started)

    overrides = {"precompute_ref_log_probs": precompute}
    if gradient_checkpointing is not None:
        overrides["gradient_checkpointing"] = gradient_checkpointing
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        trainer = DPOTrainer(
            model=load_model(spec["model"]),
            args=trl_config(spec, out, **overrides),
            train_dataset=trl_dataset(tokenizer, records),
            processing_class=tokenizer,
            callbacks=[timer],
        )
        setup_s = time.perf_counter() - started
        rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
        length = spec["max_length"]
        tokens = [
            sum(
                min(len(rows[i]["prompt_ids"]) + len(rows[i][side]), length)
                for i in ids
                for side in ("chosen_ids", "rejected_ids")
            )
            for ids in step_batches(spec)
        ]
        gc.collect()
        reset_peak_memory()
        trainer.train()
    return {
        "times": timer.times,
        "tokens": tokens,
        "setup_s": setup_s,
        "pairs_same_tokens": count_same_token_ids(rows, pairs),
        "pairs": len(pairs),
        **peak_memory(),
    }


def child_loss_check(spec: dict) -> dict:
    """Step-0 DPO loss of ours and TRL on the first batch, fp32, with the policy perturbed off the reference."""
    import torch
    from trl import DPOTrainer

    from upo.data.batching import collate_pairs
    from upo.losses import LossInputs, get_loss
    from upo.models.loading import load_model
    from upo.models.pair_forward import PairForward, compute_pair_logps

    tokenizer, records, pairs = load_pairs(spec)
    size = spec["batch_size"]
    records, pairs = records[:size], pairs[:size]
    reference, policy = load_model(spec["model"]), load_model(spec["model"])
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # so the loss is not trivially log 2
        for parameter in policy.parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.add_(spec["perturb"] * parameter.abs().mean() * noise)
    ref = compute_pair_logps(reference, pairs, tokenizer.pad_token_id, size)
    with torch.no_grad():
        out = PairForward(policy.eval())(**collate_pairs(pairs, tokenizer.pad_token_id))
    _, dpo = get_loss("dpo", beta=spec["beta"])
    ours = dpo(
        LossInputs(
            policy_chosen_logps=out["logps"][:size],
            policy_rejected_logps=out["logps"][size:],
            reference_chosen_logps=ref["chosen"],
            reference_rejected_logps=ref["rejected"],
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        spec_fp32 = {**spec, "bf16": False}
        trainer = DPOTrainer(
            model=policy,
            ref_model=reference,
            args=trl_config(spec_fp32, tmp),
            train_dataset=trl_dataset(tokenizer, records),
            processing_class=tokenizer,
        )
        rows = [trainer.train_dataset[i] for i in range(size)]
        batch = {k: v.to(torch_device()) for k, v in trainer.data_collator(rows).items()}
        with torch.no_grad():
            trl_loss = float(trainer.compute_loss(trainer.model.eval(), batch))
    ours_loss = float(ours.loss.mean())
    return {
        "ours_loss": ours_loss,
        "trl_loss": trl_loss,
        "abs_diff": abs(ours_loss - trl_loss),
        "pairs_same_tokens": count_same_token_ids(rows, pairs),
        "pairs": size,
    }
