"""Bradley-Terry reward model: training raises held-out accuracy; scoring and the CLI round-trip."""

from __future__ import annotations

import csv
import json

import torch

from tests.unit.rlhf_tiny import build_tokenizer, write_run
from upo.config import load_run_config
from upo.io import read_jsonl
from upo.train.reward_model import load_reward_model, score, sequence_scores


def test_sequence_scores_pool_by_attention_mask_not_pad_id(tmp_path):
    # pad = EOS here: pooling by pad id would skip the closing EOS; pooling by mask must not.
    from tests.unit.tiny import tiny_llama

    tokenizer = build_tokenizer()
    model = tiny_llama(tokenizer, 0, score_head=True, hidden_size=16, num_hidden_layers=1).eval()
    eos = tokenizer.eos_token_id
    ids = torch.tensor([[7, 8, eos, eos, eos], [7, 8, 9, 10, eos]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    scores = sequence_scores(model, ids, mask)
    alone = sequence_scores(model, ids[:1, :3], mask[:1, :3])
    torch.testing.assert_close(scores[:1], alone, atol=1e-5, rtol=1e-5)


def heldout_accuracy(model, tokenizer, records) -> float:
    prompts = [r["prompt"] for r in records]
    chosen = score(model, tokenizer, prompts, [r["chosen"] for r in records], max_length=48, max_prompt_length=32)
    rejected = score(model, tokenizer, prompts, [r["rejected"] for r in records], max_length=48, max_prompt_length=32)
    return float((chosen > rejected).float().mean())


def test_reward_model_is_an_offline_run_that_learns_separable_pairs(tmp_path):
    """train-rm is the offline trainer with the bradley_terry loss: a score head, the shared step."""
    from upo.models.loading import load_model, load_tokenizer

    torch.set_num_threads(1)
    config_path = write_run(
        tmp_path,
        "rm",
        loss={"name": "bradley_terry", "kwargs": {}},
        train={"batch_size": 16, "max_steps": 30, "threads": 1},
        optim={"lr": 3.0e-3},
    )
    run = load_run_config(config_path)
    test_records = read_jsonl(run.data.test)[:32]
    torch.manual_seed(run.seed)  # the trainer's seed: the same fresh score head it starts from
    before_model = load_model(run.model.path, head="score").eval()
    before = heldout_accuracy(before_model, load_tokenizer(run.model.path), test_records)

    from upo.__main__ import main as upo_main

    assert upo_main(["train-rm", str(config_path)]) == 0
    out = tmp_path / "runs" / "rm"
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 30 and summary["loss"] == "bradley_terry"
    assert 0.8 <= summary["heldout_accuracy"] <= 1.0 and summary["heldout_pairs"] == 48  # for PPO's tables
    with open(out / "train_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 30 and float(rows[-1]["eval/accuracy"]) >= 0.8  # held-out: the bound loss's metric
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])

    reward_model, rm_tokenizer = load_reward_model(out / "model")
    after = heldout_accuracy(reward_model, rm_tokenizer, test_records)
    assert after >= 0.8 and after > before
    prompts = [[{"role": "user", "content": "tell me about t1"}]] * 2
    scores = score(reward_model, rm_tokenizer, prompts, ["good great kind", "bad awful cruel"])
    assert scores.shape == (2,) and scores[0] > scores[1]
    # batched scoring equals one-at-a-time scoring (padding does not leak into the score)
    single = score(reward_model, rm_tokenizer, prompts[:1], ["good great kind"], batch_size=1)
    torch.testing.assert_close(scores[:1], single, atol=1e-5, rtol=1e-5)


def test_train_rm_refuses_a_loss_that_is_not_a_reward_model(tmp_path):
    from upo.__main__ import main as upo_main

    config_path = write_run(tmp_path, "not-rm", loss={"name": "dpo", "kwargs": {}})
    assert upo_main(["train-rm", str(config_path)]) == 2
