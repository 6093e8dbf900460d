"""Online RLHF-PPO (docs/method.md, baselines): the expensive, on-policy way to the UPO objective.

Per step: sample one response to each of ``rollouts_per_step`` training prompts from the policy;
score each sample with reward = rm_weight * z(RM(x, y)) + sum_k c_k norm_k(r_k(y)): the reward model's
score z-scored on the training responses (both sides of every pair, fitted once at the start) plus
the same weighted, normalised auxiliary rewards as UPO, so ``aux_weight`` = 1 weighs one standard
deviation of auxiliary reward like one of reward-model score, as UPO's lambda does
(``upo.train.ppo_reward``); turn it into
per-token rewards with a KL penalty to the frozen reference (InstructGPT Eq. 2); estimate
advantages with GAE from a value head on the policy's last hidden state (warm-started on the first
rollout batch, ``upo.train.ppo_value``); whiten them; then run
``ppo_epochs`` passes of clipped-surrogate + clipped-value updates over mini-batches, with gradient
clipping. The loss pieces are the pure functions of ``upo.losses.ppo``. ``train_log.csv`` has one row
per step: reward (``score`` = ``rm`` part + ``aux`` part), ``kl``, ``response_length`` and ``eos_share``
(the collapse guard), losses, value diagnostics and phase timings.

Conventions follow "The N implementation details of RLHF with PPO" (Huang et al. 2024): log-probs
are computed at the sampling temperature, no top-k/top-p, the score goes on the last response token
(the one closing the response, EOS included), V(s_t) is read at the position that predicts token t.

``python -m upo train-ppo RUN.yaml`` writes ``model/`` (plain HF folder, LoRA merged),
``value_head.safetensors``, ``train_log.csv`` and ``train_summary.json`` into ``output_dir``.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from upo.config import PPOConfig, RunConfig, check_training_inputs, load_run_config
from upo.io import atomic_path, read_jsonl, write_json
from upo.losses.ppo import gae_advantages, kl_penalty_rewards, masked_mean, ppo_policy_loss, ppo_value_loss, whiten
from upo.models.heads import ValueHead, autocast, pick_device
from upo.models.loading import load_model, merge_and_save
from upo.models.logps import selective_log_softmax
from upo.models.sampling import decode_responses, encode_prompts, sample_token_ids, stop_token_ids
from upo.strict import ConfigError
from upo.train.optim import build_optimizer, peak_memory_mb, set_seed
from upo.train.ppo_reward import SampleReward
from upo.train.ppo_value import explained_variance, fit_value_head, monte_carlo_returns, rollout_shape
from upo.train.reward_model import resolve_output_dir
from upo.train.step import optimizer_step
from upo.train.trainlog import MetricsLogger

# (prompts as chat messages, response texts) -> (B,) sequence rewards; replaces RM + aux (tests, toys)
RewardFn = Callable[[list[list[dict]], list[str]], "torch.Tensor | list[float]"]


def ppo_config(run: RunConfig) -> tuple[PPOConfig, float]:
    """Typed ``ppo:`` section (defaults when absent) and its KL beta ``ppo.kl_beta``."""
    config = run.ppo if run.ppo is not None else PPOConfig()
    return config, config.kl_beta


def response_mask(response: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """1 on response tokens up to and including the first EOS. (B, R) ids -> (B, R) long."""
    is_eos = (response == eos_token_id).long()
    eos_before = is_eos.cumsum(-1) - is_eos  # EOS tokens strictly before position t
    return (eos_before == 0).long()


def forward_response(model, input_ids, attention_mask, prompt_len: int, temperature: float, value_head=None):
    """Log-probs (and values) of the response part of left-padded [prompt; response] sequences.

    Args:
        input_ids, attention_mask: (B, P + R); the prompt occupies the first P columns (left-padded).
        value_head: when given, also return V(s_t) for each response token t.

    Returns:
        logprobs (B, R) float32 at ``temperature``; values (B, R) or None.
    """
    # Positions count attended tokens only, as generate() does for left-padded prompts.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        output_hidden_states=value_head is not None,
    )
    logits = out.logits[:, prompt_len - 1 : -1].float() / temperature  # position t predicts token t+1
    logprobs = selective_log_softmax(logits, input_ids[:, prompt_len:])
    values = None
    if value_head is not None:
        values = value_head(out.hidden_states[-1][:, prompt_len - 1 : -1])
    return logprobs, values


def _load_policy(run: RunConfig, device):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run.model.path, trust_remote_code=run.model.trust_remote_code)
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError(f"{run.model.path}: tokenizer needs pad and eos tokens")
    model = run.model
    policy = load_model(model.path, model.dtype, model.lora, model.trust_remote_code)
    reference_path = run.reference.path or model.path
    shared_base = model.lora is not None and os.path.realpath(reference_path) == os.path.realpath(model.path)
    reference = None
    if not shared_base:  # a LoRA policy on the reference's weights uses the base with adapters off
        reference = load_model(reference_path, model.dtype, None, model.trust_remote_code).to(device)
        reference.requires_grad_(False).eval()
    return policy.to(device), reference, tokenizer


def _reference_logprobs(policy, reference, input_ids, attention_mask, prompt_len, temperature):
    if reference is None:
        with policy.disable_adapter():
            return forward_response(policy, input_ids, attention_mask, prompt_len, temperature)[0]
    return forward_response(reference, input_ids, attention_mask, prompt_len, temperature)[0]


@torch.no_grad()
def rollout(
    policy, tokenizer, prompts: list[list[dict]], config: PPOConfig, max_prompt_length: int, device, seed=None
):
    """Sample one response per prompt with the shared sampler (``upo.models.sampling``).

    ``seed`` is the sampler's seed (row keys: prompt position in ``prompts``); None draws it from the global
    torch RNG, which the run's seed fixes, so successive rollouts differ and a rerun repeats them.

    Returns:
        (input_ids (B, P + R) with prompts left-padded to P and responses right-padded with pad,
        attention_mask (B, P + R), prompt_len P, mask (B, R) 1 on sampled tokens up to and including
        the stop token, texts)
    """
    prompt_ids = encode_prompts(tokenizer, prompts, max_prompt_length)
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)))
    responses = sample_token_ids(
        policy,
        prompt_ids,
        seed=seed,
        stop_ids=stop_token_ids(policy, tokenizer),
        temperature=config.temperature,
        max_new_tokens=config.max_new_tokens,
        batch_size=len(prompt_ids),
    )
    prompt_len = max(len(p) for p in prompt_ids)
    width = max(len(r) for r in responses)
    pad = tokenizer.pad_token_id
    # Left-padded prompts, so every response starts at column prompt_len.
    rows = [
        [pad] * (prompt_len - len(p)) + p + r + [pad] * (width - len(r))
        for p, r in zip(prompt_ids, responses, strict=True)
    ]
    input_ids = torch.tensor(rows, device=device)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in responses], device=device)
    prompt_attention = torch.tensor([[0] * (prompt_len - len(p)) + [1] * len(p) for p in prompt_ids], device=device)
    attention_mask = torch.cat([prompt_attention, mask], dim=1)
    return input_ids, attention_mask, prompt_len, mask, decode_responses(tokenizer, responses)


def warm_start_value(policy, value_head, batch, rewards, maskf, config: PPOConfig, bf16: bool, device):
    """Fit the value head on the first rollout batch (``upo.train.ppo_value.fit_value_head``).

    ``batch`` is (input_ids, attention_mask, prompt_len) of the rollout. Returns the batch's values
    under the fitted head (B, R), which replace the random head's as the rollout-time values, and the
    fit's before/after squared errors.
    """
    input_ids, attention_mask, prompt_len = batch
    with torch.no_grad(), autocast(bf16, device):
        # An identity "value head" makes forward_response return the hidden states it would score.
        _, hidden = forward_response(
            policy, input_ids, attention_mask, prompt_len, config.temperature, value_head=torch.nn.Identity()
        )
    hidden = hidden.float()
    returns = monte_carlo_returns(rewards, maskf, config.gamma)
    stats = fit_value_head(value_head, hidden, returns, maskf, config.value_warmup_ridge)
    with torch.no_grad(), autocast(bf16, device):
        values = value_head(hidden)
    return values.float() * maskf, stats


def train_ppo(run: RunConfig, output_dir: str | os.PathLike, reward_fn: RewardFn | None = None) -> dict:
    """Run PPO as ``run`` describes and write its outputs. ``reward_fn`` replaces RM + aux if given."""
    config, beta = ppo_config(run)
    output_dir = Path(output_dir)
    if run.train.threads:
        torch.set_num_threads(run.train.threads)
    set_seed(run.seed)
    device, bf16 = pick_device(), run.model.autocast_bf16
    if not run.model.path or not run.data.train:
        raise ConfigError("model.path and data.train: required for train-ppo")
    records = read_jsonl(run.data.train)[: run.data.max_train_pairs]
    if not records:
        raise ValueError(f"{run.data.train}: no training records")
    policy, reference, tokenizer = _load_policy(run, device)
    # Dropout off throughout (gradients still flow): rollout-time and update-time log-probs must come
    # from the same function, or the PPO ratio is noise at step one (N implementation details).
    policy.eval()
    # V(s_t): a plain linear map of the last hidden state (no LayerNorm, nn.Linear's default init).
    hidden_size = policy.config.get_text_config().hidden_size
    value_head = ValueHead(hidden_size, layer_norm=False, zero_init=False).to(device)
    trainable = [p for p in policy.parameters() if p.requires_grad] + list(value_head.parameters())
    optimizer = build_optimizer(trainable, run.optim)
    setup_start = time.perf_counter()  # the reward model's z-scoring pass counts as training time
    reward = SampleReward(run, config, records, device) if reward_fn is None else None
    warmup: dict[str, float] = {}

    rng = random.Random(run.seed)
    queue: list[int] = []
    logger, tokens, start_time = MetricsLogger(output_dir / "train_log.csv"), 0, setup_start
    for step in tqdm(range(1, config.total_steps + 1), desc="train-ppo", disable=None):
        step_start = time.perf_counter()
        while len(queue) < config.rollouts_per_step:  # cycle through seeded shuffles of the prompts
            order = list(range(len(records)))
            rng.shuffle(order)
            queue += order
        prompts = [records[i]["prompt"] for i in queue[: config.rollouts_per_step]]
        queue = queue[config.rollouts_per_step :]

        # ---- rollout and scoring (no gradients)
        with autocast(bf16, device):
            input_ids, attention_mask, prompt_len, mask, texts = rollout(
                policy, tokenizer, prompts, config, run.data.max_prompt_length, device
            )
            with torch.no_grad():
                old_logprobs, old_values = forward_response(
                    policy, input_ids, attention_mask, prompt_len, config.temperature, value_head
                )
                ref_logprobs = _reference_logprobs(
                    policy, reference, input_ids, attention_mask, prompt_len, config.temperature
                )
        tokens += int(attention_mask.sum())
        scoring_start = time.perf_counter()  # phase timings: where PPO's cost goes (rollout/score/update)
        if reward_fn is not None:
            parts = {"score": torch.as_tensor(reward_fn(prompts, texts), dtype=torch.float32)}
        else:
            parts = reward(prompts, texts)
        scores = parts["score"].to(device)
        maskf = mask.float()
        rewards, kl = kl_penalty_rewards(scores, old_logprobs, ref_logprobs, maskf, beta=beta)
        if config.whiten_rewards:
            rewards = whiten(rewards, maskf, shift_mean=False)
        if step == 1 and config.value_warmup == "rollouts":  # before the first policy update
            old_values, warmup = warm_start_value(
                policy, value_head, (input_ids, attention_mask, prompt_len), rewards, maskf, config, bf16, device
            )
        advantages, returns = gae_advantages(rewards, old_values, maskf, gamma=config.gamma, lam=config.lam)
        if config.whiten_advantages:
            advantages = whiten(advantages, maskf)

        update_start = time.perf_counter()
        # ---- PPO epochs over mini-batches
        stats: dict[str, list[float]] = {
            "policy_loss": [],
            "value_loss": [],
            "clipfrac": [],
            "approx_kl": [],
            "vf_clipfrac": [],
        }
        n = input_ids.shape[0]
        for _ in range(config.ppo_epochs):
            idx = torch.randperm(n)  # a fresh mini-batch split each epoch (seeded global RNG)
            for start in range(0, n, config.mini_batch_size):
                mb = idx[start : start + config.mini_batch_size].to(device)
                with autocast(bf16, device):
                    logprobs, values = forward_response(
                        policy, input_ids[mb], attention_mask[mb], prompt_len, config.temperature, value_head
                    )
                pg = ppo_policy_loss(
                    logprobs, old_logprobs[mb], advantages[mb], maskf[mb], clip_range=config.clip_range
                )
                vf = ppo_value_loss(
                    values, old_values[mb], returns[mb], maskf[mb], clip_range_value=config.clip_range_value
                )
                loss = pg.loss + config.vf_coef * vf.loss
                loss.backward()
                optimizer_step(trainable, optimizer, None, run.optim.max_grad_norm)
                for key, value in (
                    ("policy_loss", pg.loss),
                    ("value_loss", vf.loss),
                    ("clipfrac", pg.metrics["clipfrac"]),
                    ("approx_kl", pg.metrics["approx_kl"]),
                    ("vf_clipfrac", vf.metrics["clipfrac"]),
                ):
                    stats[key].append(float(value.detach()))

        row = {"step": step, "score": float(parts["score"].mean())}
        for key in ("rm", "aux", "rm_raw"):
            if key in parts:
                row[key] = float(parts[key].mean())
        row["kl"] = float(kl.sum(-1).mean())  # sequence KL estimate (sum of per-token log-ratios)
        row["non_score_reward"] = float((-beta * kl).sum(-1).mean())
        row.update({key: sum(values) / len(values) for key, values in stats.items()})
        row["value_mean"] = float(masked_mean(old_values, maskf))
        row["value_explained_var"] = explained_variance(old_values, returns, maskf)  # before this step's updates
        row.update(rollout_shape(input_ids[:, prompt_len:], mask, tokenizer.eos_token_id))
        row["response_words"] = sum(len(t.split()) for t in texts) / len(texts)
        row["rollout_s"] = scoring_start - step_start  # sampling + policy/reference log-probs
        row["score_s"] = update_start - scoring_start
        row["update_s"] = time.perf_counter() - update_start
        row["step_s"] = time.perf_counter() - step_start
        logger.log(row)
    wall_s = time.perf_counter() - start_time

    policy.eval()
    merge_and_save(policy, tokenizer, output_dir / "model")
    from safetensors.torch import save_file

    with atomic_path(output_dir / "value_head.safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in value_head.state_dict().items()}, str(tmp))
    summary = {"wall_s": wall_s, "tokens": tokens, "peak_mem_mb": peak_memory_mb(device), "steps": config.total_steps}
    summary["rm_normalisation"] = reward.rm_stats if reward is not None else None
    summary["value_warmup"] = {"method": config.value_warmup, **warmup}
    write_json(output_dir / "train_summary.json", summary)
    return summary


def main(argv: list[str]) -> int:
    """``python -m upo train-ppo RUN.yaml``."""
    parser = argparse.ArgumentParser(prog="python -m upo train-ppo", description=__doc__.split("\n")[0])
    parser.add_argument("config", help="run.yaml (upo.config.RunConfig with a ppo: section)")
    args = parser.parse_args(argv)
    run = load_run_config(args.config)
    check_training_inputs(run, args.config)
    output_dir = resolve_output_dir(run, args.config)
    summary = train_ppo(run, output_dir)
    print(f"train-ppo: {summary['steps']} steps in {summary['wall_s']:.1f}s -> {output_dir / 'model'}")
    return 0
