"""Bradley-Terry reward model for the RLHF-PPO baseline (method note, baseline 2).

A sequence-classification head (``num_labels=1``) is put on the SFT model (run.yaml ``model.path``)
and trained on the same preference pairs as DPO/UPO with the ``bradley_terry`` loss, one
concatenated forward of [chosen; rejected] per batch (``upo.data.batching``). The score of a sequence is
the head's output at its last attention-masked token: we pool by the attention mask rather than by
``pad_token_id`` (transformers' default), because many chat tokenizers use EOS as padding and the
EOS that closes every response would then be mistaken for padding.

``python -m upo train-rm RUN.yaml`` writes into ``output_dir`` (run.yaml's folder if empty):
``model/`` (plain HF folder, LoRA merged), ``train_log.csv``, ``train_summary.json`` and
``eval.json`` (held-out pairwise accuracy). ``upo.train.ppo`` loads it with :func:`load_reward_model`
and scores samples with :func:`score`.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import time
from pathlib import Path

import torch
from tqdm import tqdm

import upo.losses.reward  # noqa: F401  (registers bradley_terry)
from upo.config import RunConfig, load_run_config
from upo.data.batching import TokenizedPair, collate_pairs, encode_response, format_prompt
from upo.io import read_jsonl, write_json
from upo.losses.base import LossInputs, get_loss
from upo.models.loading import merge_and_save
from upo.models.logps import pad_right
from upo.models.pair_forward import tokenize_records
from upo.train.optim import build_optimizer, lr_lambda, peak_memory_mb, set_seed
from upo.train.trainlog import MetricsLogger

# ------------------------------------------------------------------------------ shared run helpers


def resolve_output_dir(run: RunConfig, config_path: str | os.PathLike) -> Path:
    """``run.output_dir``, or the folder holding run.yaml when it is empty (documented default)."""
    return Path(run.output_dir) if run.output_dir else Path(config_path).resolve().parent


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast context on ``device`` (weights stay in their dtype)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


# ------------------------------------------------------------------------------ model and scoring


def build_reward_model(sft_path: str | os.PathLike, dtype: str = "float32", trust_remote_code: bool = False):
    """A fresh reward model on the SFT folder: ``AutoModelForSequenceClassification``, one label.

    The score head is newly initialised (seeded by the caller); the pad id is set from the tokenizer
    so batched inputs are accepted. Returns (model, tokenizer).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(sft_path), trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        raise ValueError(f"{sft_path}: tokenizer has no pad token; prepare the model with upo.models.loading")
    model = AutoModelForSequenceClassification.from_pretrained(
        str(sft_path), num_labels=1, dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_reward_model(path: str | os.PathLike, dtype: str = "float32", device: torch.device | str | None = None):
    """Load a trained reward model folder for scoring (eval mode, no gradients). Returns (model, tokenizer)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a model folder (no config.json); train it with train-rm")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path), dtype=torch_dtype(dtype))
    if model.config.num_labels != 1:
        raise ValueError(f"{path}: reward model must have num_labels=1, has {model.config.num_labels}")
    model.requires_grad_(False).eval()
    if device is not None:
        model.to(device)
    return model, tokenizer


def sequence_scores(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Reward-model score at each row's last attended token.

    Args:
        model: a ``*ForSequenceClassification`` with ``num_labels=1`` (or its LoRA-wrapped base).
        input_ids, attention_mask: (B, T), left or right padded.

    Returns:
        (B,) float32 scores.
    """
    head = getattr(model, "score", None)
    if head is None:
        raise TypeError(f"{type(model).__name__} has no 'score' head; expected a *ForSequenceClassification")
    trunk = getattr(model, model.base_model_prefix)
    hidden = trunk(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    last = (positions * attention_mask.long()).argmax(-1)  # (B,) rightmost attended position
    pooled = hidden[torch.arange(input_ids.shape[0], device=input_ids.device), last]  # (B, H)
    return head(pooled).squeeze(-1).float()


@torch.no_grad()
def score(
    reward_model,
    tokenizer,
    prompts: list[list[dict]],
    responses: list[str],
    *,
    max_length: int | None = None,
    max_prompt_length: int | None = None,
    batch_size: int = 16,
    autocast_bf16: bool = False,
) -> torch.Tensor:
    """Score (prompt messages, response text) pairs exactly as the model saw them in training.

    Args:
        prompts: B chat message lists ending with a user turn.
        responses: B assistant replies (plain text; EOS is appended as in training).
        max_length, max_prompt_length: the DPO truncation rule of ``upo.data.batching`` (None: no cut).

    Returns:
        (B,) float32 scores on CPU.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"score: {len(prompts)} prompts for {len(responses)} responses")
    device = next(reward_model.parameters()).device
    sequences = []
    for messages, response in zip(prompts, responses, strict=True):
        prompt_ids = tokenizer(format_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]
        response_ids = encode_response(tokenizer, response)
        if max_length is not None and len(prompt_ids) + len(response_ids) > max_length:
            prompt_ids = prompt_ids[-(max_prompt_length or max_length) :]
            response_ids = response_ids[: max(max_length - len(prompt_ids), 1)]
        sequences.append(prompt_ids + response_ids)
    out = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        input_ids = pad_right(chunk, tokenizer.pad_token_id).to(device)
        attention_mask = pad_right([[1] * len(s) for s in chunk], 0).to(device)
        with autocast(device, autocast_bf16):
            out.append(sequence_scores(reward_model, input_ids, attention_mask).cpu())
    return torch.cat(out) if out else torch.zeros(0)


# ------------------------------------------------------------------------------ training


def pair_forward(model, pairs: list[TokenizedPair], pad_token_id: int, device, bf16: bool):
    """One concatenated forward of [chosen; rejected]. Returns ((B,), (B,)) scores and token count."""
    batch = collate_pairs(pairs, pad_token_id)
    input_ids, attention_mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    with autocast(device, bf16):
        scores = sequence_scores(model, input_ids, attention_mask)  # (2B,)
    chosen, rejected = scores.chunk(2)
    return chosen, rejected, int(attention_mask.sum())


@torch.no_grad()
def evaluate_pairs(model, pairs: list[TokenizedPair], pad_token_id: int, device, bf16: bool, batch_size: int) -> dict:
    """Held-out pairwise accuracy (ties count as wrong), mean margin and Bradley-Terry loss."""
    if not pairs:
        raise ValueError("evaluate_pairs: no held-out pairs")
    was_training = model.training
    model.eval()
    _, loss_fn = get_loss("bradley_terry")
    correct, margins, losses = [], [], []
    for start in range(0, len(pairs), batch_size):
        chosen, rejected, _ = pair_forward(model, pairs[start : start + batch_size], pad_token_id, device, bf16)
        out = loss_fn(LossInputs(chosen_rewards=chosen, rejected_rewards=rejected))
        correct += out.metrics["accuracy"].tolist()
        margins += out.metrics["margin"].tolist()
        losses += out.loss.tolist()
    model.train(was_training)
    n = len(correct)
    return {"accuracy": sum(correct) / n, "margin": sum(margins) / n, "loss": sum(losses) / n, "pairs": n}


def _apply_lora(model, lora):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="SEQ_CLS",  # keeps the new score head fully trainable (modules_to_save)
    )
    return get_peft_model(model, config)


def train_reward_model(run: RunConfig, output_dir: str | os.PathLike) -> dict:
    """Train the reward model described by ``run`` and write its outputs. Returns the summary."""
    output_dir = Path(output_dir)
    if run.train.threads:
        torch.set_num_threads(run.train.threads)
    set_seed(run.seed)
    device = pick_device()
    bf16 = run.model.autocast_bf16
    for key in ("path",):
        if not getattr(run.model, key):
            raise ValueError(f"run.yaml: model.{key} is required for train-rm")
    if not run.data.train or not run.data.test:
        raise ValueError("run.yaml: data.train and data.test are required for train-rm")

    model, tokenizer = build_reward_model(run.model.path, run.model.dtype, run.model.trust_remote_code)
    if run.model.lora is not None:
        model = _apply_lora(model, run.model.lora)
    model.to(device).train()
    # The LoRA wrapper forwards to the same modules; pool on the wrapped model's own trunk and head.
    scoring_model = model.get_base_model() if hasattr(model, "get_base_model") else model

    train_records = read_jsonl(run.data.train)[: run.data.max_train_pairs]
    test_records = read_jsonl(run.data.test)
    train_pairs = tokenize_records(train_records, tokenizer, run.data.max_length, run.data.max_prompt_length)
    test_pairs = tokenize_records(test_records, tokenizer, run.data.max_length, run.data.max_prompt_length)
    if not train_pairs:
        raise ValueError(f"{run.data.train}: no training pairs")

    batch_size, accum = run.train.batch_size, run.train.grad_accum
    if batch_size % accum:
        raise ValueError(f"train.batch_size {batch_size} must divide by train.grad_accum {accum}")
    steps_per_epoch = math.ceil(len(train_pairs) / batch_size)
    total_steps = run.train.max_steps or run.train.epochs * steps_per_epoch
    optimizer = build_optimizer(model.parameters(), run.optim)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(run.optim.warmup_steps, total_steps, run.optim.schedule)
    )
    # A dedicated RM run.yaml may tune the loss (loss.name: bradley_terry); a PPO run's file, whose
    # loss section describes the policy, trains the RM with the loss's own defaults.
    loss_kwargs = run.loss.kwargs if run.loss.name == "bradley_terry" else {}
    _, loss_fn = get_loss("bradley_terry", **loss_kwargs)

    rng = random.Random(run.seed)
    order: list[int] = []
    logger, tokens, start_time = MetricsLogger(output_dir / "train_log.csv"), 0, time.perf_counter()
    pad_id = tokenizer.pad_token_id
    for step in tqdm(range(1, total_steps + 1), desc="train-rm", disable=None):
        if len(order) < batch_size:  # refill with a fresh seeded shuffle each epoch
            epoch_order = list(range(len(train_pairs)))
            rng.shuffle(epoch_order)
            order += epoch_order
        batch_indices, order = order[:batch_size], order[batch_size:]
        micro = batch_size // accum
        step_loss, step_acc, step_margin = 0.0, 0.0, 0.0
        optimizer.zero_grad(set_to_none=True)
        for k in range(accum):
            pairs = [train_pairs[i] for i in batch_indices[k * micro : (k + 1) * micro]]
            chosen, rejected, n_tokens = pair_forward(scoring_model, pairs, pad_id, device, bf16)
            out = loss_fn(LossInputs(chosen_rewards=chosen, rejected_rewards=rejected))
            (out.loss.mean() / accum).backward()
            tokens += n_tokens
            step_loss += out.loss.mean().item() / accum
            step_acc += out.metrics["accuracy"].mean().item() / accum
            step_margin += out.metrics["margin"].mean().item() / accum
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), run.optim.max_grad_norm)
        optimizer.step()
        scheduler.step()
        row = {
            "step": step,
            "loss": step_loss,
            "accuracy": step_acc,
            "margin": step_margin,
            "grad_norm": float(grad_norm),
            "lr": scheduler.get_last_lr()[0],
            "elapsed_s": time.perf_counter() - start_time,
        }
        if run.train.eval_every and step % run.train.eval_every == 0:
            held_out = evaluate_pairs(
                scoring_model, test_pairs[: run.train.eval_pairs], pad_id, device, bf16, batch_size
            )
            row["eval_accuracy"] = held_out["accuracy"]
        logger.log(row)
    wall_s = time.perf_counter() - start_time

    held_out = evaluate_pairs(scoring_model, test_pairs, pad_id, device, bf16, batch_size)
    held_out["train_accuracy_last_step"] = logger.rows[-1]["accuracy"]
    write_json(output_dir / "eval.json", held_out)
    model.eval()
    merge_and_save(model, tokenizer, output_dir / "model")
    summary = {"wall_s": wall_s, "tokens": tokens, "peak_mem_mb": peak_memory_mb(device), "steps": total_steps}
    write_json(output_dir / "train_summary.json", summary)
    return summary


def main(argv: list[str]) -> int:
    """``python -m upo train-rm RUN.yaml``."""
    parser = argparse.ArgumentParser(prog="python -m upo train-rm", description=__doc__.split("\n")[0])
    parser.add_argument("config", help="run.yaml (upo.config.RunConfig)")
    args = parser.parse_args(argv)
    run = load_run_config(args.config)
    output_dir = resolve_output_dir(run, args.config)
    summary = train_reward_model(run, output_dir)
    print(f"train-rm: {summary['steps']} steps in {summary['wall_s']:.1f}s -> {output_dir / 'model'}")
    return 0
