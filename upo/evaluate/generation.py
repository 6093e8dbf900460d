"""Sampling responses to held-out prompts: the first step of evaluating a run.

``python -m upo generate RUN_DIR`` reads ``RUN_DIR/run.yaml`` (``data.test`` and the ``eval``
section), loads ``RUN_DIR/model`` and writes ``RUN_DIR/generations.jsonl`` in AlpacaEval's
model-outputs format (``instruction``, ``output``, ``generator``) plus our own fields (``id``,
``prompt``, ``reference``, ``token_ids``). ``upo.evaluate.evaluation`` judges, scores and measures KL on it.

Every run uses the same evaluation seed (``eval.seed``) and the same test prompts (all, or a seeded
subset of ``max_prompts`` stratified over prompt clusters: ``eval_records``), so runs are paired prompt
by prompt. Prompt i of that list draws its random numbers from (``eval.seed``, i) (the seeding rule of
``upo.models.sampling``), whatever the batch size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from upo.io import read_jsonl, write_jsonl
from upo.losses.base import sampling_prefix
from upo.models.loading import load_model_and_tokenizer
from upo.models.sampling import decode_responses, encode_prompts, sample_token_ids, stop_token_ids
from upo.startup import TRANSFORMERS_MODULES, libraries_outside_gc


def prompt_to_instruction(messages: list[dict]) -> str:
    """The judge-facing text of a prompt: the user turn, or the whole dialogue if multi-turn.

    Args:
        messages: chat messages ending with a user turn.
    Returns:
        The single user turn's content, or ``"User: ...\\n\\nAssistant: ...\\n\\nUser: ..."``.
    """
    if not messages or messages[-1].get("role") != "user":
        raise ValueError("a prompt must be a non-empty message list ending with a user turn")
    if len(messages) == 1:
        return messages[0]["content"]
    names = {"user": "User", "assistant": "Assistant", "system": "System"}
    return "\n\n".join(f"{names.get(m['role'], m['role'])}: {m['content']}" for m in messages)


@torch.no_grad()
def generate_with_ids(
    model,
    tokenizer,
    prompts: list[list[dict]],
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 48,
    batch_size: int = 32,
    seed: int = 0,
    response_prefix: str = "",
) -> tuple[list[str], list[list[int]]]:
    """Like :func:`generate_responses`, also returning the sampled token ids (stop token included).

    The ids are what the policy actually sampled, so the KL estimate scores exactly these tokens
    instead of a re-tokenisation of the decoded text. Sampling is :func:`upo.models.sampling.sample_token_ids`
    with row keys ``(prompt index,)``: prompt i's response depends on (seed, i), not on the batch size.
    ``response_prefix`` ends every prompt (the run's loss conditions sampling: CSFT's "good" control
    tokens, see :func:`upo.losses.base.sampling_prefix`); it is not part of the decoded output.
    """
    ids = sample_token_ids(
        model,
        encode_prompts(tokenizer, prompts, response_prefix=response_prefix),
        seed=seed,
        stop_ids=stop_token_ids(model, tokenizer),
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
    )
    return decode_responses(tokenizer, ids), ids


def generate_responses(
    model,
    tokenizer,
    prompts: list[list[dict]],
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 48,
    batch_size: int = 32,
    seed: int = 0,
) -> list[str]:
    """Sample one response per prompt (chat template applied, seeded per prompt; see ``upo.models.sampling``).

    Args:
        model: a causal LM (``transformers`` ``generate`` API).
        tokenizer: its tokenizer, with a chat template.
        prompts: B message lists, each ending with a user turn.
        temperature: 0 means greedy decoding.
        top_p: nucleus sampling mass.
        max_new_tokens: cap on response tokens.
        batch_size: rows decoded together (memory cap; outputs do not depend on it beyond float rounding).
        seed: same seed, same outputs (prompt i's random numbers depend on (seed, i) only).
    Returns:
        B decoded responses (special tokens removed, whitespace stripped).
    """
    return generate_with_ids(
        model,
        tokenizer,
        prompts,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        seed=seed,
    )[0]


def generator_name(tags: dict) -> str:
    """AlpacaEval ``generator`` string of a run: method/model/dataset/beta~b/w~w[/max_steps~n]/seed~s."""
    parts = [str(tags.get(k, "?")) for k in ("method", "model", "dataset")]
    parts += [f"{k}~{tags[k]}" for k in ("beta", "aux_weight", "max_steps", "seed") if tags.get(k) is not None]
    return "/".join(parts)


def eval_records(run_config, eval_config) -> list[dict]:
    """The test records a run is evaluated on: all of ``data.test``, or a seeded subset of ``max_prompts``
    stratified over prompt clusters (never the first N in file order, which covers few topics).

    The subset depends only on the test file and ``eval.seed`` (shared by every run), so all runs are
    paired on the same prompts. Clusters (``record["cluster"]``, e.g. the testbed's topics; a record
    without one is its own cluster) are shuffled with the seed, as are the prompts within each, and
    prompts are taken round-robin, one per cluster per round, until ``max_prompts``: every cluster gets
    floor or ceil of ``max_prompts / clusters`` prompts (as far as it has them). The records keep their
    file order.
    """
    import random

    if not run_config.data.test:
        raise ValueError("run.yaml: data.test is empty; evaluation needs a held-out split")
    records = read_jsonl(run_config.data.test)
    if not records:
        raise ValueError(f"{run_config.data.test}: no records to evaluate")
    if eval_config.max_prompts is None or eval_config.max_prompts >= len(records):
        return records
    rng = random.Random(eval_config.seed)
    clusters: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        clusters.setdefault(str(record.get("cluster", record["id"])), []).append(index)
    queues = [clusters[name] for name in sorted(clusters)]
    rng.shuffle(queues)
    for queue in queues:
        rng.shuffle(queue)
    chosen: list[int] = []
    for round_index in range(max(len(q) for q in queues)):
        for queue in queues:
            if round_index < len(queue) and len(chosen) < eval_config.max_prompts:
                chosen.append(queue[round_index])
    return [records[i] for i in sorted(chosen)]


def generate_run(run_dir: str | Path) -> Path:
    """Sample the run's model on its test prompts and write ``RUN_DIR/generations.jsonl``."""
    from upo.config import load_eval_config, load_run_config
    from upo.evaluate.judges import check_judge_available

    run_dir = Path(run_dir)
    run_config = load_run_config(run_dir / "run.yaml")
    eval_config = load_eval_config(run_config, where=run_dir / "run.yaml")
    # An unusable judge (no API key, missing judge model) must fail before minutes of sampling.
    check_judge_available(eval_config)
    records = eval_records(run_config, eval_config)
    model, tokenizer = load_model_and_tokenizer(run_dir / "model")
    loss_name = run_config.loss.name if run_config.loss is not None else None  # None: PPO's own objective
    outputs, token_ids = generate_with_ids(
        model,
        tokenizer,
        [r["prompt"] for r in records],
        temperature=eval_config.temperature,
        top_p=eval_config.top_p,
        max_new_tokens=eval_config.max_new_tokens,
        batch_size=eval_config.batch_size,
        seed=eval_config.seed,
        response_prefix=sampling_prefix(loss_name, run_config.data.aux_rewards),
    )
    name = generator_name(run_config.tags)
    rows = [
        {
            "instruction": prompt_to_instruction(record["prompt"]),
            "output": output,
            "generator": name,
            "id": str(record["id"]),
            "prompt": record["prompt"],
            "reference": record["chosen"],
            "token_ids": ids,
        }
        for record, output, ids in zip(records, outputs, token_ids, strict=True)
    ]
    path = run_dir / "generations.jsonl"
    write_jsonl(path, rows)
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m upo generate", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="run directory holding run.yaml and model/")
    args = parser.parse_args(argv)
    with libraries_outside_gc(TRANSFORMERS_MODULES):  # ~0.4 s less CPU of a pico run's ~4.6 s job
        path = generate_run(args.run_dir)
    print(f"wrote {path}", file=sys.stderr)
    return 0
