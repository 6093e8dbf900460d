"""Bradley-Terry reward model: training raises held-out accuracy; scoring and the CLI round-trip."""

from __future__ import annotations

import json

import torch

from tests.unit.rlhf_tiny import build_tokenizer, write_run
from upo.config import load_run_config
from upo.io import read_jsonl
from upo.train.reward_model import load_reward_model, score, sequence_scores


def test_sequence_scores_pool_by_attention_mask_not_pad_id(tmp_path):
    # pad = EOS here: pooling by pad id would skip the closing EOS; pooling by mask must not.
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForSequenceClassification(config).eval()
    eos = tokenizer.eos_token_id
    ids = torch.tensor([[7, 8, eos, eos, eos], [7, 8, 9, 10, eos]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    scores = sequence_scores(model, ids, mask)
    alone = sequence_scores(model, ids[:1, :3], mask[:1, :3])
    torch.testing.assert_close(scores[:1], alone, atol=1e-5, rtol=1e-5)


def test_reward_model_learns_separable_pairs_and_cli(tmp_path):
    torch.set_num_threads(1)
    config_path = write_run(
        tmp_path, "rm", train={"batch_size": 16, "max_steps": 30, "threads": 1}, optim={"lr": 3.0e-3}
    )
    run = load_run_config(config_path)
    from upo.models.pair_forward import tokenize_records
    from upo.train.reward_model import build_reward_model, evaluate_pairs, pick_device

    model, tokenizer = build_reward_model(run.model.path)
    test_pairs = tokenize_records(read_jsonl(run.data.test), tokenizer, 48, 32)
    before = evaluate_pairs(model, test_pairs, tokenizer.pad_token_id, pick_device(), False, 16)["accuracy"]

    from upo.__main__ import main as upo_main

    assert upo_main(["train-rm", str(config_path)]) == 0
    out = tmp_path / "runs" / "rm"
    held_out = json.loads((out / "eval.json").read_text())
    assert held_out["pairs"] == 48
    assert held_out["accuracy"] >= 0.8 and held_out["accuracy"] > before
    summary = json.loads((out / "train_summary.json").read_text())
    assert set(summary) == {"wall_s", "tokens", "peak_mem_mb", "steps"} and summary["steps"] == 30
    assert (out / "train_log.csv").read_text().count("\n") == 31

    reward_model, rm_tokenizer = load_reward_model(out / "model")
    prompts = [[{"role": "user", "content": "tell me about t1"}]] * 2
    scores = score(reward_model, rm_tokenizer, prompts, ["good great kind", "bad awful cruel"])
    assert scores.shape == (2,) and scores[0] > scores[1]
    # batched scoring equals one-at-a-time scoring (padding does not leak into the score)
    single = score(reward_model, rm_tokenizer, prompts[:1], ["good great kind"], batch_size=1)
    torch.testing.assert_close(scores[:1], single, atol=1e-5, rtol=1e-5)
