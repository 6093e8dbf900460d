"""Online PPO on a tiny random Llama: config strictness, log-prob plumbing, learning, reward-model
z-scoring, value warm start, the per-step curves, CLI end to end."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from tests.unit.rlhf_tiny import build_policy, positive_share, write_run
from upo.config import PPOConfig, load_run_config
from upo.strict import ConfigError, from_dict
from upo.train.ppo import forward_response, ppo_config, response_mask, rollout, train_ppo
from upo.train.ppo_reward import SampleReward

# Columns of train_log.csv the ppo_curves figure and a reader of the run need on every row.
CURVE_COLUMNS = ("score", "kl", "response_length", "eos_share", "response_words", "value_explained_var")


def test_ppo_config_is_strict_and_beta_is_an_ordinary_field(tmp_path):
    with pytest.raises(ConfigError, match="clip_rnage"):
        from_dict(PPOConfig, {"clip_rnage": 0.1}, "ppo")
    with pytest.raises(ConfigError, match="ppo.ppo_epochs"):
        from_dict(PPOConfig, {"ppo_epochs": 0}, "ppo")
    run = load_run_config(write_run(tmp_path, "ppo", tags={"beta": 0.05}, ppo={"total_steps": 3, "kl_beta": 0.2}))
    config, beta = ppo_config(run)
    assert config.total_steps == 3 and beta == 0.2  # the identity tags are never read
    run = load_run_config(write_run(tmp_path, "ppo", tags={"beta": 0.05}, ppo={}))
    assert ppo_config(run)[1] == PPOConfig().kl_beta


def test_response_mask_keeps_tokens_through_first_eos():
    eos = 1
    response = torch.tensor([[5, 6, eos, 7, eos], [5, 5, 5, 5, 5], [eos, 4, 4, 4, 4]])
    expected = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    assert torch.equal(response_mask(response, eos), expected)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    folder = build_policy(tmp_path_factory.mktemp("policy"))
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def test_forward_response_left_padding_matches_unpadded(tiny):
    model, _ = tiny
    torch.manual_seed(0)
    prompt, response = torch.randint(6, 60, (1, 4)), torch.randint(6, 60, (1, 3))
    alone, _ = forward_response(model, torch.cat([prompt, response], 1), torch.ones(1, 7, dtype=torch.long), 4, 1.0)
    padded_ids = torch.cat([torch.zeros(1, 2, dtype=torch.long), prompt, response], 1)
    padded_mask = torch.cat([torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 7, dtype=torch.long)], 1)
    padded, _ = forward_response(model, padded_ids, padded_mask, 6, 1.0)
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)


def test_rollout_logprobs_equal_the_sampling_distribution(tiny):
    # The policy's log-probs of its own samples must use the sampling temperature (N details, #2).
    model, tokenizer = tiny
    torch.manual_seed(0)
    config = PPOConfig(max_new_tokens=5, temperature=0.7)
    prompts = [[{"role": "user", "content": "tell me about t1"}], [{"role": "user", "content": "t2"}]]
    input_ids, attention_mask, prompt_len, mask, texts = rollout(model, tokenizer, prompts, config, 32, "cpu")
    assert input_ids.shape[1] == prompt_len + mask.shape[1] and len(texts) == 2
    logprobs, _ = forward_response(model, input_ids, attention_mask, prompt_len, 0.7)
    with torch.no_grad():
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
    manual = torch.log_softmax(logits[:, prompt_len - 1 : -1] / 0.7, -1)
    manual = manual.gather(-1, input_ids[:, prompt_len:, None]).squeeze(-1)
    torch.testing.assert_close(logprobs * mask, manual * mask, atol=1e-5, rtol=1e-5)


def test_ppo_raises_a_toy_reward(tmp_path):
    torch.set_num_threads(1)
    config_path = write_run(
        tmp_path,
        "ppo",
        ppo={"kl_beta": 0.01, "total_steps": 30, "rollouts_per_step": 16, "max_new_tokens": 8, "mini_batch_size": 8},
        optim={"lr": 3.0e-3},
    )
    out = tmp_path / "out"
    summary = train_ppo(
        load_run_config(config_path), out, reward_fn=lambda p, texts: [positive_share(t) for t in texts]
    )
    rows = list(csv.DictReader(open(out / "train_log.csv")))
    assert len(rows) == 30 and summary["steps"] == 30
    score = [float(r["score"]) for r in rows]
    assert float(rows[0]["kl"]) == pytest.approx(0.0, abs=1e-5)  # the policy starts at the reference
    assert sum(score[-5:]) / 5 > sum(score[:5]) / 5 + 0.2, score
    for column in ("policy_loss", "value_loss", "clipfrac", "approx_kl", *CURVE_COLUMNS):
        assert column in rows[0]
    assert all(0 <= float(r["eos_share"]) <= 1 and 1 <= float(r["response_length"]) <= 8 for r in rows)


def test_value_warm_start_lowers_the_value_loss_of_the_first_update(tmp_path):
    torch.set_num_threads(1)
    first_value_loss, summaries = {}, {}
    for warmup in ("rollouts", "none"):
        config_path = write_run(
            tmp_path / warmup,
            "ppo",
            ppo={
                "kl_beta": 0.05,
                "total_steps": 1,
                "rollouts_per_step": 8,
                "max_new_tokens": 8,
                "value_warmup": warmup,
            },
        )
        toy_reward = lambda prompts, texts: [positive_share(t) for t in texts]  # noqa: E731
        summaries[warmup] = train_ppo(load_run_config(config_path), tmp_path / warmup / "out", reward_fn=toy_reward)
        rows = list(csv.DictReader(open(tmp_path / warmup / "out" / "train_log.csv")))
        first_value_loss[warmup] = float(rows[0]["value_loss"])
    # Same seed, same rollouts (the fit draws no random numbers): only the value head's start differs.
    assert first_value_loss["rollouts"] < 0.5 * first_value_loss["none"], first_value_loss
    fit = summaries["rollouts"]["value_warmup"]
    assert fit["method"] == "rollouts" and fit["value_warmup_mse_after"] < fit["value_warmup_mse_before"]
    assert summaries["none"]["value_warmup"] == {"method": "none"}


@pytest.fixture(scope="module")
def trained_rm(tmp_path_factory):
    """A tiny Bradley-Terry reward model trained with train-rm; returns the root holding runs/ and data/."""
    from upo.__main__ import main as upo_main

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("rlhf")
    rm_config = write_run(
        root, "rm", loss={"name": "bradley_terry"}, train={"batch_size": 16, "max_steps": 5, "threads": 1}
    )
    assert upo_main(["train-rm", str(rm_config)]) == 0
    return root


def test_reward_model_scores_are_z_scored_on_the_training_responses(trained_rm):
    from upo.io import read_jsonl
    from upo.rewards.normalise import zscore_stats

    rm = str(trained_rm / "runs" / "rm" / "model")
    records = read_jsonl(trained_rm / "data" / "train.jsonl")
    prompts = [r["prompt"] for r in records for _ in ("chosen", "rejected")]
    texts = [r[side] for r in records for side in ("chosen", "rejected")]
    run = load_run_config(write_run(trained_rm, "ppo", reward_model=rm))
    reward = SampleReward(run, PPOConfig(), records, "cpu")
    parts = reward(prompts, texts)
    mean, std = zscore_stats(parts["rm"].tolist())
    assert mean == pytest.approx(0.0, abs=1e-5) and std == pytest.approx(1.0, abs=1e-4)
    assert parts["rm_raw"].std() > 0 and not torch.allclose(parts["rm"], parts["rm_raw"])
    torch.testing.assert_close(parts["score"], parts["rm"])  # no aux rewards in this run
    assert reward.rm_stats["method"] == "zscore"
    raw = SampleReward(run, PPOConfig(rm_normalisation="none"), records, "cpu")(prompts[:4], texts[:4])
    torch.testing.assert_close(raw["rm"], parts["rm_raw"][:4])


def test_cli_end_to_end_with_reward_model_aux_and_lora(trained_rm, monkeypatch):
    import upo.rewards.scorers
    from upo.__main__ import main as upo_main

    torch.set_num_threads(1)
    tmp_path = trained_rm
    # The aux reward "share" is scored by upo.rewards.scorers in real runs; a toy scorer stands in here.
    monkeypatch.setattr(
        upo.rewards.scorers, "score_texts", lambda name, texts, prompts=None: [positive_share(t) for t in texts]
    )
    ppo_yaml = write_run(
        tmp_path,
        "ppo",
        reward_model=str(tmp_path / "runs" / "rm" / "model"),
        model={"lora": {"r": 4, "alpha": 8}},
        data={"aux_rewards": {"share": 0.5}},
        ppo={
            "kl_beta": 0.1,
            "total_steps": 2,
            "rollouts_per_step": 4,
            "max_new_tokens": 6,
            "mini_batch_size": 2,
            "ppo_epochs": 2,
        },
    )
    assert upo_main(["train-ppo", str(ppo_yaml)]) == 0
    out = tmp_path / "runs" / "ppo"
    rows = list(csv.DictReader(open(out / "train_log.csv")))
    assert len(rows) == 2 and {"rm", "aux", "rm_raw", *CURVE_COLUMNS} <= set(rows[0])
    assert float(rows[0]["score"]) == pytest.approx(float(rows[0]["rm"]) + float(rows[0]["aux"]), abs=1e-4)
    summary = json.loads((out / "train_summary.json").read_text())
    assert set(summary) == {"wall_s", "tokens", "peak_mem_mb", "steps", "rm_normalisation", "value_warmup"}
    assert summary["tokens"] > 0 and summary["rm_normalisation"]["method"] == "zscore"
    assert summary["rm_normalisation"]["std"] > 0 and summary["value_warmup"]["method"] == "rollouts"
    from upo.train.reward_model import heldout_accuracy

    accuracy = heldout_accuracy(tmp_path / "runs" / "rm" / "model")  # what metrics.json of this run reports
    assert 0 <= accuracy["heldout_accuracy"] <= 1 and accuracy["source"] in {"train_summary.json", "train_log.csv"}
    assert (out / "value_head.safetensors").is_file()
    assert not (out / "model" / "adapter_config.json").exists()  # LoRA merged into a plain folder
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "model")
