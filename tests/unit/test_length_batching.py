"""Reference log-probs and the evaluation's KL batch by length: the same numbers in float32, bit for bit,
as batches in file order over full logits (the code they replaced)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_records


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from upo.models.loading import load_model, load_tokenizer

    torch.manual_seed(1)
    policy = load_model(tiny_model_dir).eval()
    with torch.no_grad():  # a policy off the reference, so that the KL is not 0
        for parameter in policy.parameters():
            parameter.add_(0.3 * parameter.abs().mean() * torch.randn_like(parameter))
    return load_model(tiny_model_dir).eval(), policy, load_tokenizer(tiny_model_dir)


def file_order_logps(model, pairs, pad_token_id, batch_size):
    """The former loop: batches in file order, full (N, T, V) logits, ``token_logps``."""
    from upo.data.batching import collate_pairs
    from upo.models.logps import token_logps

    chosen = []
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            batch = collate_pairs(chunk, pad_token_id)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            logps, mask = token_logps(logits, batch["labels"])
            chosen.append((logps * mask).sum(-1)[: len(chunk)])
    return torch.cat(chosen)


def test_reference_logps_batched_by_length_are_bit_identical(tiny):
    from upo.models.pair_forward import compute_pair_logps, tokenize_records

    reference, _, tokenizer = tiny
    pairs = tokenize_records(tiny_records(13), tokenizer, 48, 24)
    assert len({len(p.prompt_ids) + len(p.chosen_ids) for p in pairs}) > 3  # lengths vary: sorting reorders
    sorted_batches = compute_pair_logps(reference, pairs, tokenizer.pad_token_id, batch_size=4)
    assert torch.equal(sorted_batches["chosen"], file_order_logps(reference, pairs, tokenizer.pad_token_id, 4))
    one_by_one = compute_pair_logps(reference, pairs, tokenizer.pad_token_id, batch_size=1)
    for key in ("chosen", "rejected", "chosen_lengths", "prompt_states"):
        torch.testing.assert_close(sorted_batches[key], one_by_one[key], rtol=1e-5, atol=1e-5)


def _kl_inputs(tokenizer, n=11):
    records = tiny_records(n, seed=3)
    prompts = [r["prompt"] for r in records]
    responses = [tokenizer(r["chosen"], add_special_tokens=False)["input_ids"][: 2 + i] for i, r in enumerate(records)]
    responses[4] = []  # an empty response has KL 0
    return prompts, responses


def former_kl(policy, reference, tokenizer, prompts, responses, batch_size):
    """The former ``sequence_kl``: prompt order, full logits."""
    from upo.data.batching import format_prompt
    from upo.models.logps import IGNORE_INDEX, pad_right, token_logps

    out = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            seqs, labels = [], []
            for messages, ids in zip(
                prompts[start : start + batch_size], responses[start : start + batch_size], strict=True
            ):
                prompt_ids = tokenizer(format_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]
                seqs.append(prompt_ids + list(ids))
                labels.append([IGNORE_INDEX] * len(prompt_ids) + list(ids))
            input_ids = pad_right(seqs, tokenizer.pad_token_id)
            attention = pad_right([[1] * len(s) for s in seqs], 0)
            label_t = pad_right(labels, IGNORE_INDEX)
            lp, mask = token_logps(policy(input_ids=input_ids, attention_mask=attention).logits, label_t)
            lr, _ = token_logps(reference(input_ids=input_ids, attention_mask=attention).logits, label_t)
            out.extend(((lp - lr) * mask).sum(-1).tolist())
    return out


def test_kl_batched_by_length_is_bit_identical_in_float32(tiny):
    from upo.evaluate.evaluation import sequence_kl

    reference, policy, tokenizer = tiny
    prompts, responses = _kl_inputs(tokenizer)
    ours = sequence_kl(policy, reference, tokenizer, prompts, responses, batch_size=4)
    assert ours == former_kl(policy, reference, tokenizer, prompts, responses, 4)
    assert ours[4] == 0.0 and any(abs(v) > 1e-3 for v in ours)


def test_kl_scores_the_policy_with_its_sampling_prefix_and_the_reference_without(tiny):
    """CSFT samples after control tokens: the policy's log-prob conditions on them, the reference's does not."""
    from upo.data.batching import format_prompt
    from upo.evaluate.evaluation import sequence_kl
    from upo.models.logps import token_logps

    reference, policy, tokenizer = tiny
    prompts, responses = _kl_inputs(tokenizer, n=5)
    prefix = " good"

    def one_row_logp(model, messages, ids, text_prefix):
        prompt_ids = tokenizer(format_prompt(tokenizer, messages, text_prefix), add_special_tokens=False)["input_ids"]
        input_ids = torch.tensor([prompt_ids + list(ids)])
        labels = torch.tensor([[-100] * len(prompt_ids) + list(ids)])
        with torch.no_grad():
            logps, mask = token_logps(model(input_ids=input_ids).logits, labels)
        return float((logps * mask).sum())

    ours = sequence_kl(policy, reference, tokenizer, prompts, responses, batch_size=2, policy_prefix=prefix)
    pairs = zip(prompts, responses, strict=True)
    by_hand = [one_row_logp(policy, m, ids, prefix) - one_row_logp(reference, m, ids, "") for m, ids in pairs]
    assert ours == pytest.approx(by_hand, abs=1e-4)
    # the same model on both sides: 0 without the prefix, and not 0 once the prefix conditions one side
    assert sequence_kl(reference, reference, tokenizer, prompts, responses, batch_size=2) == [0.0] * 5
    shifted = sequence_kl(reference, reference, tokenizer, prompts, responses, batch_size=2, policy_prefix=prefix)
    assert any(abs(v) > 1e-3 for v in shifted)
