"""The one sampler: evaluation, PPO rollouts and the testbed generator all draw responses here.

Seeding rule (the same for every caller): response row ``r`` of a call carries a key (a tuple of ints, e.g.
``(prompt_index,)`` or ``(prompt_index, sample_index, attempt)``). Its random numbers are
``max_new_tokens`` float64 uniforms from a ``torch.Generator`` seeded with :func:`row_seed` ``(seed, key)``,
drawn before decoding; the token at step t is the inverse-CDF draw of uniform t from the step's
next-token distribution. So a row's random numbers depend only on ``(seed, key)``, never on which
other rows share its batch, on the batch size, on the order of the rows or on the global RNG (which is
left untouched). Its logits can still differ by float rounding (~1e-6 relative in fp32) with the batch's
shapes (padding width, rows per matrix product, the shared-prefix length) and the GEMM kernel, so a draw
that falls that close to a boundary between two tokens may flip; in fp32 that is rare, and greedy
decoding is checked against ``model.generate`` (tests, ``benchmarks/generation_throughput.py``).

The distribution is the one ``transformers``' ``generate`` samples from: logits / temperature, then
top-k, then top-p (the same filters and tie rules as its ``TopKLogitsWarper``/``TopPLogitsWarper``),
softmax, one categorical draw; temperature 0 is greedy (first maximal token). What is faster than
``model.generate`` (measured in ``benchmarks/generation_throughput.py``):

- the prompts' longest common token prefix (a chat template's system prompt) is run once and its KV cache
  shared by every row, so prefill only runs the part of each prompt that differs;
- all prompts go in one call, sorted by length (least padding), ``batch_size`` rows at a time;
- a row leaves the batch when it samples a stop token (its cache rows are dropped);
- the KV cache grows in place (``upo.models.decoding.GrowingCache``) instead of being re-concatenated every step;
- on CPU the linear layers run on weights packed once per call (``upo.models.decoding.cpu_packed_linears``), where
  ``nn.Linear`` re-packs (float32) or re-casts (bf16 autocast) every weight at every decoding step;
- logits are computed for the last position only, and nothing else (no per-step logits processors,
  no stopping-criteria objects) runs between forward passes.

Autocast is the caller's choice: run the call inside ``torch.autocast`` to sample in bf16.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from upo.data.batching import format_prompt
from upo.models.decoding import GrowingCache, cache_keyword, cpu_packed_linears, repeat_cache


def row_seed(seed: int, key: Sequence[int]) -> int:
    """The 63-bit generator seed of one response row: a hash of ``(seed, *key)`` (collision-free in practice)."""
    text = "/".join(str(int(part)) for part in (seed, *key))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def row_uniforms(seed: int, keys: Sequence[Sequence[int]], steps: int) -> torch.Tensor:
    """(N, steps) float64 uniforms in [0, 1): row n from a generator seeded with ``row_seed(seed, keys[n])``."""
    out = torch.empty(len(keys), steps, dtype=torch.float64)
    for n, key in enumerate(keys):
        generator = torch.Generator().manual_seed(row_seed(seed, key))
        out[n] = torch.rand(steps, generator=generator, dtype=torch.float64)
    return out


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Next-token scores as ``generate`` filters them: / temperature, top-k, top-p (removed = -inf).

    Args:
        logits: (B, V) float32 next-token logits.
        temperature: > 0.
        top_k: keep the k highest (ties with the k-th kept too); 0 = off.
        top_p: keep the smallest head whose mass exceeds ``1 - top_p``'s complement; 1 = off.
    Returns:
        (B, V) float32 scores.
    """
    scores = logits / temperature
    if top_k > 0 and top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, sorted_index = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= (1 - top_p)
        remove_sorted[..., -1:] = False  # the most likely token always stays
        remove = remove_sorted.scatter(1, sorted_index, remove_sorted)
        scores = scores.masked_fill(remove, float("-inf"))
    return scores


def choose_tokens(
    logits: torch.Tensor, uniforms: torch.Tensor | None, temperature: float, top_k: int = 0, top_p: float = 1.0
) -> torch.Tensor:
    """One token per row: greedy at temperature 0, else the inverse-CDF draw of ``uniforms`` from the filtered softmax.

    Args:
        logits: (B, V) next-token logits (any float dtype; filtered in float32 as ``generate`` does).
        uniforms: (B,) float64 in [0, 1), one per row (ignored when greedy).
    Returns:
        (B,) long token ids.
    """
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = filter_logits(logits, temperature, top_k, top_p).softmax(dim=-1)
    return inverse_cdf(probs, uniforms.to(probs.device, torch.float64))


def inverse_cdf(probs: torch.Tensor, uniforms: torch.Tensor, block: int = 256) -> torch.Tensor:
    """The first token whose cumulative mass exceeds ``u * total``, found in two levels (blocks, then tokens).

    Two levels instead of one float64 cumsum over the whole vocabulary: the same draw up to float rounding
    (~1e-7 of probability mass, below float32 softmax's own error), at a fraction of the cost. A token of
    probability 0 is never returned.

    Args:
        probs: (B, V) float32 probabilities (rows sum to ~1).
        uniforms: (B,) float64 in [0, 1).
    Returns:
        (B,) long token ids.
    """
    rows, vocab = probs.shape
    padding = (-vocab) % block
    blocks = (torch.nn.functional.pad(probs, (0, padding)) if padding else probs).view(rows, -1, block)
    # float32 block sums (a float64 pass over the whole vocabulary cost ~7% of a decoding step); the
    # cumulative sums that locate the draw are float64
    block_mass = blocks.sum(-1).double()  # (B, n_blocks)
    block_cdf = block_mass.cumsum(-1)
    target = uniforms * block_cdf[:, -1]
    chosen_block = torch.searchsorted(block_cdf, target.unsqueeze(-1), right=True).squeeze(-1)
    chosen_block = chosen_block.clamp(max=blocks.shape[1] - 1)
    row = torch.arange(rows, device=probs.device)
    within = blocks[row, chosen_block]  # (B, block)
    mass_before = block_cdf[row, chosen_block] - block_mass[row, chosen_block]
    inner_cdf = within.double().cumsum(-1) + mass_before.unsqueeze(-1)
    index = torch.searchsorted(inner_cdf, target.unsqueeze(-1), right=True).squeeze(-1)
    # Rounding can leave the target at or past the block's last cumulative value: take its last positive token.
    last_positive = block - 1 - (within > 0).flip(-1).int().argmax(-1)
    return chosen_block * block + torch.minimum(index, last_positive)


def encode_prompts(
    tokenizer, prompts: list[list[dict]], max_prompt_length: int | None = None, response_prefix: str = ""
) -> list[list[int]]:
    """Chat-template and tokenise prompts (no special tokens added); keep the last ``max_prompt_length`` ids.

    ``response_prefix`` ends every prompt after the assistant header (a loss's control tokens, see
    :func:`upo.data.batching.format_prompt`); it is prompt, so it is not part of the sampled response.
    """
    encoded = [
        tokenizer(format_prompt(tokenizer, m, response_prefix), add_special_tokens=False)["input_ids"] for m in prompts
    ]
    if max_prompt_length is not None:
        encoded = [ids[-max_prompt_length:] for ids in encoded]
    if any(not ids for ids in encoded):
        raise ValueError("a prompt tokenised to zero tokens; the sampler needs at least one")
    return encoded


def stop_token_ids(model, tokenizer) -> list[int]:
    """Tokens that end a response: the model's generation-config EOS id(s) and the tokenizer's EOS."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
    ids.discard(None)
    if not ids:
        raise ValueError("neither the model's generation config nor the tokenizer names an EOS token")
    return sorted(ids)


def decode_responses(tokenizer, token_ids: list[list[int]]) -> list[str]:
    """Response texts: special tokens removed, surrounding whitespace stripped."""
    return [text.strip() for text in tokenizer.batch_decode(token_ids, skip_special_tokens=True)]


def _common_prefix(rows: list[list[int]]) -> int:
    """Length of the longest common prefix, leaving every row at least one token of its own."""
    limit = min(len(r) for r in rows) - 1
    first = rows[0]
    length = 0
    while length < limit and all(r[length] == first[length] for r in rows):
        length += 1
    return length


@torch.no_grad()
def sample_token_ids(
    model,
    prompt_ids: list[list[int]],
    *,
    seed: int,
    stop_ids: Sequence[int],
    keys: Sequence[Sequence[int]] | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    max_new_tokens: int = 48,
    batch_size: int = 32,
    share_prefix: bool = True,
    packed_linears: bool = True,
) -> list[list[int]]:
    """Sample one response per prompt row (see the module docstring for the seeding rule).

    Args:
        model: a decoder-only ``transformers`` causal LM (or a peft wrapper of one), put in eval mode for
            the call and restored after.
        prompt_ids: N token-id lists (already templated; see :func:`encode_prompts`).
        seed: the call's seed; with ``keys`` it fixes every row's random numbers.
        stop_ids: tokens that end a response (kept as its last token).
        keys: N int tuples naming the rows (default ``(n,)``); rows with equal keys draw equal numbers.
        temperature: 0 = greedy.
        top_p, top_k: nucleus mass (1 = off) and top-k (0 = off).
        max_new_tokens: cap on response tokens.
        batch_size: rows decoded together (a memory cap; results do not depend on it beyond float rounding).
        share_prefix: run the prompts' common prefix once (off: every row prefills its whole prompt).
        packed_linears: on CPU, run the linear layers on weights packed once
            (``upo.models.decoding.cpu_packed_linears``; off: ``nn.Linear``'s own GEMM, as ``generate`` runs it).
    Returns:
        N lists of sampled ids, in input order, each ending at its first stop token or at the cap.
    """
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
        raise ValueError(f"invalid sampling settings temperature={temperature}, top_p={top_p}, top_k={top_k}")
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError("max_new_tokens and batch_size must be >= 1")
    if not prompt_ids:
        return []
    keys = [(n,) for n in range(len(prompt_ids))] if keys is None else [tuple(k) for k in keys]
    if len(keys) != len(prompt_ids):
        raise ValueError(f"{len(keys)} keys for {len(prompt_ids)} prompts")
    device = next(model.parameters()).device
    uniforms = row_uniforms(seed, keys, max_new_tokens) if temperature > 0 else None
    stops = torch.tensor(sorted(set(stop_ids)), device=device)
    cache_kw = cache_keyword(model)
    prefix_len = _common_prefix(prompt_ids) if share_prefix else 0
    was_training = model.training
    model.eval()
    try:
        with cpu_packed_linears(model, min(batch_size, len(prompt_ids)), enabled=packed_linears):
            return _sample_sorted(
                model,
                prompt_ids,
                uniforms,
                stops,
                cache_kw,
                prefix_len,
                batch_size,
                temperature,
                top_p,
                top_k,
                max_new_tokens,
            )
    finally:
        model.train(was_training)


def _sample_sorted(
    model, prompt_ids, uniforms, stops, cache_kw, prefix_len, batch_size, temperature, top_p, top_k, max_new_tokens
) -> list[list[int]]:
    """Prefill the shared prefix once, then decode the rows longest prompt first, ``batch_size`` at a time."""
    device = stops.device
    prefix_cache = None
    if prefix_len:
        prefix_cache = GrowingCache(model.config)
        prefix = torch.tensor([prompt_ids[0][:prefix_len]], device=device)
        model(input_ids=prefix, use_cache=True, logits_to_keep=1, **{cache_kw: prefix_cache})
    # Longest first: least padding per batch, and the memory peak shows up in the first batch.
    order = sorted(range(len(prompt_ids)), key=lambda n: (-len(prompt_ids[n]), n))
    results: list[list[int]] = [[] for _ in prompt_ids]
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc="sample", unit="batch", disable=None if len(starts) > 1 else True):
        rows = order[start : start + batch_size]
        row_uniform = uniforms[rows] if uniforms is not None else None
        tokens = _decode_batch(
            model,
            [prompt_ids[n][prefix_len:] for n in rows],
            prefix_cache,
            prefix_len,
            row_uniform,
            stops,
            cache_kw,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            max_new_tokens=max_new_tokens,
        )
        for n, ids in zip(rows, tokens, strict=True):
            results[n] = ids
    return results


def _decode_batch(
    model, suffixes, prefix_cache, prefix_len, uniforms, stops, cache_kw, *, temperature, top_p, top_k, max_new_tokens
) -> list[list[int]]:
    """Prefill ``suffixes`` after the shared prefix, then decode until every row stopped or hit the cap."""
    device = stops.device
    batch = len(suffixes)
    width = max(len(s) for s in suffixes)
    # Left padding inside the suffix block: [prefix | pad | suffix], so every row's next token is at the end.
    input_ids = torch.tensor([[0] * (width - len(s)) + s for s in suffixes], device=device)
    suffix_mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in suffixes], device=device)
    attention = torch.cat([torch.ones(batch, prefix_len, dtype=torch.long, device=device), suffix_mask], dim=1)
    # Positions count attended tokens only, as generate() does for left-padded prompts.
    positions = (attention.cumsum(-1) - 1).clamp(min=0)[:, prefix_len:]
    if prefix_cache is not None:
        cache = repeat_cache(prefix_cache, batch)
    else:
        cache = GrowingCache(model.config)
    logits = model(
        input_ids=input_ids,
        attention_mask=attention,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=1,
        **{cache_kw: cache},
    ).logits[:, -1]
    next_position = positions[:, -1] + 1
    alive = torch.arange(batch, device=device)  # batch rows still decoding, in cache order
    sampled = torch.full((batch, max_new_tokens), -1, dtype=torch.long, device=device)
    row_uniforms_device = uniforms.to(device) if uniforms is not None else None
    for step in range(max_new_tokens):
        u = row_uniforms_device[alive, step] if row_uniforms_device is not None else None
        token = choose_tokens(logits, u, temperature, top_k, top_p)
        sampled[alive, step] = token
        if step == max_new_tokens - 1:
            break
        stopped = torch.isin(token, stops)
        if stopped.any():  # one sync per step, as generate's own stopping check
            keep = (~stopped).nonzero().squeeze(-1)
            if keep.numel() == 0:
                break
            cache.batch_select_indices(keep)
            alive, token, attention, next_position = alive[keep], token[keep], attention[keep], next_position[keep]
        attention = torch.cat([attention, attention.new_ones(attention.shape[0], 1)], dim=1)
        logits = model(
            input_ids=token.unsqueeze(-1),
            attention_mask=attention,
            position_ids=next_position.unsqueeze(-1),
            use_cache=True,
            **{cache_kw: cache},
        ).logits[:, -1]
        next_position = next_position + 1
    out = []
    for row in sampled.tolist():
        ids = [t for t in row if t >= 0]
        out.append(ids)
    return out
