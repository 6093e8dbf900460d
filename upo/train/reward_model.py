"""Bradley-Terry reward model for the RLHF-PPO baseline: loading and scoring; training is the offline trainer.

Training is an ordinary run of ``upo.train.offline`` with the ``bradley_terry`` loss: its
``sequence_scores`` need makes the session load the SFT model (run.yaml ``model.path``) with a new
one-label score head (``upo.models.loading.load_model(head="score")``), and every step is the shared
``train_step`` over one concatenated forward of [chosen; rejected]. The score of a sequence is the
head's output at its last attention-masked token (``upo.models.pair_forward.sequence_scores``).

``python -m upo train-rm RUN.yaml`` writes into ``output_dir`` (run.yaml's folder if empty):
``model/`` (plain HF folder, LoRA merged), ``train_log.csv`` (held-out ``eval/accuracy``,
``eval/margin``, ``eval/loss`` on the last row) and ``train_summary.json``. ``upo.train.ppo`` loads
it with :func:`load_reward_model` and scores samples with :func:`score`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from upo.config import RunConfig, check_training_inputs, load_run_config
from upo.data.batching import encode_response, format_prompt
from upo.models.heads import autocast, torch_dtype
from upo.models.logps import pad_right
from upo.models.pair_forward import sequence_scores

__all__ = ["heldout_accuracy", "load_reward_model", "main", "resolve_output_dir", "score", "sequence_scores"]


def resolve_output_dir(run: RunConfig, config_path: str | os.PathLike) -> Path:
    """``run.output_dir``, or the folder holding run.yaml when it is empty (documented default)."""
    return Path(run.output_dir) if run.output_dir else Path(config_path).resolve().parent


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
        with autocast(autocast_bf16, device):
            out.append(sequence_scores(reward_model, input_ids, attention_mask).cpu())
    return torch.cat(out) if out else torch.zeros(0)


def heldout_accuracy(model_dir: str | os.PathLike) -> dict:
    """The reward model's held-out pairwise accuracy (share of test pairs with r(chosen) > r(rejected)).

    Read from the run folder holding ``model_dir``: ``train_summary.json``'s ``heldout_accuracy`` when
    the reward-model run wrote it, else the last ``eval/accuracy`` of ``train_log.csv`` (the offline
    trainer's held-out evaluation after the final step). Returns ``{"heldout_accuracy", "source"}``.
    """
    import csv
    import json

    run_dir = Path(model_dir).parent
    summary_path, log_path = run_dir / "train_summary.json", run_dir / "train_log.csv"
    if summary_path.is_file():
        value = json.loads(summary_path.read_text(encoding="utf-8")).get("heldout_accuracy")
        if value is not None:
            return {"heldout_accuracy": float(value), "source": "train_summary.json"}
    if log_path.is_file():
        with open(log_path, newline="", encoding="utf-8") as handle:
            values = [row["eval/accuracy"] for row in csv.DictReader(handle) if row.get("eval/accuracy")]
        if values:
            return {"heldout_accuracy": float(values[-1]), "source": "train_log.csv"}
    raise FileNotFoundError(
        f"{run_dir}: no held-out accuracy of the reward model (neither heldout_accuracy in {summary_path.name} "
        f"nor eval/accuracy in {log_path.name}); train it with train-rm, train.eval_pairs > 0 and data.test set"
    )


# ------------------------------------------------------------------------------ training


def main(argv: list[str]) -> int:
    """``python -m upo train-rm RUN.yaml``: the offline trainer on a loss that needs ``sequence_scores``."""
    from upo.losses import LOSSES
    from upo.strict import ConfigError
    from upo.train.offline import train

    parser = argparse.ArgumentParser(prog="python -m upo train-rm", description=__doc__.split("\n")[0])
    parser.add_argument("config", help="run.yaml (upo.config.RunConfig)")
    args = parser.parse_args(argv)
    run = load_run_config(args.config)
    check_training_inputs(run, args.config)
    if "sequence_scores" not in LOSSES.get(run.loss.name).needs:
        raise ConfigError(
            f"{args.config}: loss.name {run.loss.name!r} does not train a reward model (bradley_terry does)"
        )
    run.output_dir = str(resolve_output_dir(run, args.config))
    summary = train(run)
    print(f"train-rm: {summary['steps']} steps in {summary['wall_s']:.1f}s -> {Path(run.output_dir) / 'model'}")
    return 0
