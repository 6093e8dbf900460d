"""The shared sampler: greedy equality with ``model.generate``, the seeding rule, stop tokens, its callers."""

from __future__ import annotations

import pytest
import torch

from upo.models import decoding, sampling
from upo.models.sampling import (
    choose_tokens,
    encode_prompts,
    filter_logits,
    inverse_cdf,
    row_uniforms,
    sample_token_ids,
    stop_token_ids,
)

TEXTS = ("the cat sat", "we love sunny days and long walks", "rain", "mat on a warm day", "hate cold rain !")
PROMPTS = [[{"role": "user", "content": t}] for t in TEXTS]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    """The shared tiny Llama with an untied random LM head (std 1).

    With its tied embeddings at init scale, greedy decoding repeats one token for every prompt, which
    would make the greedy comparisons vacuous; an independent head gives varied, prompt-dependent paths.
    """
    from upo.models.loading import load_model_and_tokenizer

    torch.set_num_threads(1)
    model, tokenizer = load_model_and_tokenizer(tiny_model_dir, device="cpu")
    shape = model.lm_head.weight.shape
    model.lm_head.weight = torch.nn.Parameter(torch.randn(shape, generator=torch.Generator().manual_seed(0)))
    return model, tokenizer


def hf_greedy(model, tokenizer, prompt_ids, max_new_tokens, stops):
    """Plain ``model.generate`` on one left-padded batch, cut after the first stop token."""
    pad = tokenizer.pad_token_id
    width = max(len(p) for p in prompt_ids)
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompt_ids])
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids])
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            eos_token_id=list(stops),
            pad_token_id=pad,
        )
    rows = []
    for row in out[:, width:].tolist():
        ids = []
        for token in row:
            ids.append(token)
            if token in stops:
                break
        rows.append(ids)
    return rows


@pytest.mark.parametrize("batch_size", [1, 2, 5])
@pytest.mark.parametrize("share_prefix", [True, False])
@pytest.mark.parametrize("packed", [True, False])
def test_greedy_equals_model_generate(tiny, batch_size, share_prefix, packed):
    model, tok = tiny
    prompt_ids = encode_prompts(tok, PROMPTS)
    stops = stop_token_ids(model, tok)
    ours = sample_token_ids(
        model,
        prompt_ids,
        seed=0,
        stop_ids=stops,
        temperature=0.0,
        max_new_tokens=10,
        batch_size=batch_size,
        share_prefix=share_prefix,
        packed_linears=packed,
    )
    assert ours == hf_greedy(model, tok, prompt_ids, 10, stops)
    assert len({tuple(row) for row in ours}) == len(ours)  # varied paths: the comparison is not vacuous


def test_greedy_equals_generate_through_lora_adapters(tiny_model_dir):
    # PPO samples from a peft-wrapped policy: the adapters must take part (packing touches only the
    # plain nn.Linear layers inside them) and the result must match generate() on the same wrapper.
    from peft import LoraConfig, get_peft_model

    from upo.models.loading import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(tiny_model_dir, device="cpu")
    policy = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    prompt_ids = encode_prompts(tok, PROMPTS)
    stops = stop_token_ids(policy, tok)
    ours = sample_token_ids(policy, prompt_ids, seed=0, stop_ids=stops, temperature=0.0, max_new_tokens=8)
    assert ours == hf_greedy(policy, tok, prompt_ids, 8, stops)
    with policy.disable_adapter():
        base = sample_token_ids(policy, prompt_ids, seed=0, stop_ids=stops, temperature=0.0, max_new_tokens=8)
    assert base != ours  # the adapters changed the greedy paths, so they were used


def test_stop_tokens_end_rows_and_match_generate(tiny):
    # A random tiny model rarely picks EOS greedily, so make tokens it does pick the stop tokens: rows
    # then stop at different steps and leave the batch, and the survivors must still match generate().
    model, tok = tiny
    prompt_ids = encode_prompts(tok, PROMPTS)
    free = sample_token_ids(model, prompt_ids, seed=0, stop_ids=[-1], temperature=0.0, max_new_tokens=12)
    stops = sorted({free[0][2], free[3][5]})
    ours = sample_token_ids(model, prompt_ids, seed=0, stop_ids=stops, temperature=0.0, max_new_tokens=12)
    assert ours == hf_greedy(model, tok, prompt_ids, 12, stops)
    # Each row is the free run cut after its first stop token, and rows stop at different steps.
    cut = [next((k + 1 for k, t in enumerate(row) if t in stops), len(row)) for row in free]
    assert ours == [row[:n] for row, n in zip(free, cut, strict=True)]
    assert len(set(cut)) > 1 and min(cut) < 12


def test_seeding_rule(tiny):
    model, tok = tiny
    prompt_ids = encode_prompts(tok, PROMPTS)
    stops = stop_token_ids(model, tok)
    kwargs = dict(stop_ids=stops, temperature=1.0, max_new_tokens=8)
    rng_before = torch.get_rng_state()
    a = sample_token_ids(model, prompt_ids, seed=3, batch_size=5, **kwargs)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is left alone
    assert a == sample_token_ids(model, prompt_ids, seed=3, batch_size=5, **kwargs)
    assert a != sample_token_ids(model, prompt_ids, seed=4, batch_size=5, **kwargs)
    # A row's sample depends on (seed, key), not on the batch size, the batch's other rows or their order.
    assert a == sample_token_ids(model, prompt_ids, seed=3, batch_size=2, **kwargs)
    order = [4, 2, 0, 3, 1]
    shuffled = sample_token_ids(
        model, [prompt_ids[i] for i in order], seed=3, keys=[(i,) for i in order], batch_size=3, **kwargs
    )
    assert shuffled == [a[i] for i in order]
    assert sample_token_ids(model, prompt_ids[2:3], seed=3, keys=[(2,)], **kwargs) == [a[2]]
    # Same prompt, different keys: different draws; same key: the same draw.
    twice = sample_token_ids(model, [prompt_ids[1]] * 3, seed=3, keys=[(1,), (7,), (1,)], **kwargs)
    assert twice[0] == twice[2] == a[1] and twice[1] != twice[0]


def test_packed_linears_agree_with_nn_linear_and_restore(tiny):
    model, _ = tiny
    linear = model.model.layers[0].mlp.up_proj
    x = torch.randn(3, 7, linear.in_features, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = linear(x)
        with decoding.cpu_packed_linears(model, rows_hint=3) as count:
            packed = linear(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain_bf16 = linear(x)
            with decoding.cpu_packed_linears(model, rows_hint=3) as count_bf16:
                packed_bf16 = linear(x)
        with decoding.cpu_packed_linears(model, rows_hint=3, enabled=False) as disabled:
            assert disabled == 0
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert count == count_bf16 == n_linear > 0
    torch.testing.assert_close(packed, plain, rtol=1e-5, atol=1e-5)  # float32 products in another order
    assert packed_bf16.dtype == torch.bfloat16 and torch.equal(packed_bf16, plain_bf16)  # autocast's own bf16 GEMM
    assert not any("forward" in vars(m) for m in model.modules())  # original forwards restored
    assert torch.equal(linear(x), plain)


def test_row_uniforms_depend_on_seed_and_key_only():
    u = row_uniforms(0, [(0,), (1,), (0,)], 6)
    assert u.dtype == torch.float64 and u.shape == (3, 6)
    assert torch.equal(u[0], u[2]) and not torch.equal(u[0], u[1])
    assert torch.equal(row_uniforms(0, [(1,)], 6)[0], u[1])
    assert not torch.equal(row_uniforms(1, [(0,)], 6)[0], u[0])
    assert ((u >= 0) & (u < 1)).all()


def test_filters_match_transformers_warpers():
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    torch.manual_seed(0)
    logits = torch.randn(6, 50) * 3
    logits[0, :5] = 2.0  # ties at the top-k boundary
    for top_k, top_p in ((0, 0.9), (7, 1.0), (7, 0.5), (0, 0.05)):
        expected = logits / 0.7
        if top_k:
            expected = TopKLogitsWarper(top_k)(None, expected)
        if top_p < 1:
            expected = TopPLogitsWarper(top_p)(None, expected)
        assert torch.equal(filter_logits(logits, 0.7, top_k, top_p), expected)


def test_inverse_cdf_samples_the_distribution():
    probs = torch.tensor([0.1, 0.0, 0.25, 0.0, 0.0, 0.65])
    n = 40_000
    uniforms = torch.rand(n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    tokens = inverse_cdf(probs.expand(n, -1).contiguous(), uniforms, block=4)
    share = torch.bincount(tokens, minlength=6).double() / n
    assert share[1] == share[3] == share[4] == 0  # probability 0 is never drawn
    torch.testing.assert_close(share, probs.double(), atol=0.01, rtol=0)  # ~5 standard errors
    # Edges: u = 0 gives the first token with mass, u just below 1 the last one.
    edge = inverse_cdf(probs.expand(2, -1).contiguous(), torch.tensor([0.0, 1 - 1e-12], dtype=torch.float64), 4)
    assert edge.tolist() == [0, 5]
    # Two levels equal one full cumsum.
    logits = torch.randn(8, 1000, generator=torch.Generator().manual_seed(1)) * 4
    p = logits.softmax(-1)
    u = torch.rand(8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    cdf = p.double().cumsum(-1)
    full = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1), right=True).squeeze(-1)
    assert torch.equal(inverse_cdf(p, u), full)
    assert torch.equal(choose_tokens(logits, u, 1.0), full)
    assert torch.equal(choose_tokens(logits, None, 0.0), logits.argmax(-1))


def test_rejects_bad_settings(tiny):
    model, tok = tiny
    ids = encode_prompts(tok, PROMPTS[:1])
    with pytest.raises(ValueError, match="temperature"):
        sample_token_ids(model, ids, seed=0, stop_ids=[0], temperature=-1.0)
    with pytest.raises(ValueError, match="keys"):
        sample_token_ids(model, ids, seed=0, stop_ids=[0], keys=[(0,), (1,)])
    assert sample_token_ids(model, [], seed=0, stop_ids=[0]) == []


# ------------------------------------------------------------------------------------------ callers


def test_evaluation_ppo_and_testbed_use_the_sampler(tiny):
    from upo.data import testbed
    from upo.evaluate import generation
    from upo.train import ppo

    assert generation.sample_token_ids is ppo.sample_token_ids is sampling.sample_token_ids
    model, tok = tiny
    stops = stop_token_ids(model, tok)
    settings = dict(stop_ids=stops, temperature=1.0, max_new_tokens=6)
    prompt_ids = encode_prompts(tok, PROMPTS)
    # evaluation: keys (prompt index,), seed = eval.seed
    _, eval_ids = generation.generate_with_ids(model, tok, PROMPTS, max_new_tokens=6, batch_size=2, seed=5)
    assert eval_ids == sample_token_ids(model, prompt_ids, seed=5, **settings)
    # PPO rollouts: keys (position in the rollout batch,), prompts truncated to max_prompt_length
    config = ppo.PPOConfig(max_new_tokens=6, temperature=1.0)
    input_ids, _, prompt_len, mask, _ = ppo.rollout(model, tok, PROMPTS, config, 16, "cpu", seed=9)
    expected = sample_token_ids(model, encode_prompts(tok, PROMPTS, 16), seed=9, **settings)
    responses = [row[: int(n)] for row, n in zip(input_ids[:, prompt_len:].tolist(), mask.sum(-1), strict=True)]
    assert responses == expected
    # testbed: keys (prompt index, sample index, attempt)
    texts, _ = testbed.sample_responses(model, tok, list(TEXTS), samples=2, max_new_tokens=6, seed=1)
    keys = [(i, j, 0) for i in range(len(TEXTS)) for j in range(2)]
    drawn = sample_token_ids(model, [prompt_ids[i] for i, _, _ in keys], seed=1, keys=keys, **settings)
    flat = sampling.decode_responses(tok, drawn)
    kept = [(i, j) for (i, j, _), text in zip(keys, flat, strict=True) if text]  # empty ones are resampled
    assert kept and all(texts[i][j] == flat[2 * i + j] for i, j in kept)
