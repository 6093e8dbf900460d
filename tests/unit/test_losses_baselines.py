"""The baselines of issue 12 (KTO, UPO-KTO, MODPO, A-LoL, CSFT): batch-level and limit behaviour beyond
the golden cases of ``test_losses.py``, KTO against TRL's own ``KTOTrainer`` loss code, gradient checks
of the stop-gradient surrogates, and the trainer plumbing each one needs (mismatched pairs, control
tokens) on a tiny model."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from upo.losses import LossInputs, get_loss
from upo.losses.base import sampling_prefix

T = lambda *values: torch.tensor(values, dtype=torch.float64)  # noqa: E731


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def random_inputs(batch: int, seed: int = 0, **overrides) -> LossInputs:
    generator = torch.Generator().manual_seed(seed)
    names = (
        "policy_chosen_logps",
        "policy_rejected_logps",
        "reference_chosen_logps",
        "reference_rejected_logps",
        "aux_chosen_rewards",
        "aux_rejected_rewards",
        "chosen_preference_scores",
        "rejected_preference_scores",
        "policy_kl_logps",
        "reference_kl_logps",
        "prompt_values",
    )
    fields = {name: torch.randn(batch, generator=generator, dtype=torch.float64) for name in names}
    fields["chosen_lengths"] = torch.full((batch,), 3.0, dtype=torch.float64)
    fields["rejected_lengths"] = torch.full((batch,), 5.0, dtype=torch.float64)
    fields.update(overrides)
    return LossInputs(**fields)


# ---------------------------------------------------------------- KTO


def test_kto_reference_point_is_the_clamped_batch_mean():
    """z_ref couples the batch: mean of (0.5, -0.5, 1.5) = 0.5; of (0.5, -0.5, -1.5) clamps to 0."""
    _, loss_fn = get_loss("kto", beta=1.0)
    zeros = T(0.0, 0.0, 0.0)
    for kl_policy, z in ((T(0.5, -0.5, 1.5), 0.5), (T(0.5, -0.5, -1.5), 0.0)):
        inputs = LossInputs(
            policy_chosen_logps=T(1.0, 0.0, -1.0),
            policy_rejected_logps=T(-1.0, 0.0, 1.0),
            reference_chosen_logps=zeros,
            reference_rejected_logps=zeros,
            policy_kl_logps=kl_policy,
            reference_kl_logps=zeros,
        )
        out = loss_fn(inputs)
        expected = [((1 - sigmoid(rw - z)) + (1 - sigmoid(z - rl))) / 2 for rw, rl in ((1, -1), (0, 0), (-1, 1))]
        torch.testing.assert_close(out.loss, T(*expected), rtol=0, atol=1e-12)
        torch.testing.assert_close(out.metrics["kl/reference_point"], T(z, z, z), rtol=0, atol=1e-12)


def test_kto_reference_point_carries_no_gradient():
    policy_kl = T(0.3, 0.9).requires_grad_()
    policy_chosen = T(-1.0, -2.0).requires_grad_()
    _, loss_fn = get_loss("kto", beta=0.5)
    out = loss_fn(random_inputs(2, policy_kl_logps=policy_kl, policy_chosen_logps=policy_chosen))
    out.loss.sum().backward()
    assert policy_kl.grad is None
    assert policy_chosen.grad.abs().min() > 0


def test_kto_gradcheck_with_a_positive_reference_point():
    _, loss_fn = get_loss("kto", beta=0.7, desirable_weight=1.0, undesirable_weight=1.3)
    base = random_inputs(4, seed=3, policy_kl_logps=T(1.0, 0.5, 0.2, 0.9), reference_kl_logps=T(0, 0, 0, 0))
    chosen = base.policy_chosen_logps.clone().requires_grad_()
    rejected = base.policy_rejected_logps.clone().requires_grad_()

    def fn(c, r):
        return loss_fn(LossInputs(**{**base.__dict__, "policy_chosen_logps": c, "policy_rejected_logps": r})).loss

    assert torch.autograd.gradcheck(fn, (chosen, rejected))


def trl_kto_loss(policy_logps, reference_logps, labels, policy_kl_logps, reference_kl_logps, beta, dw, uw):
    """TRL's own ``KTOTrainer._compute_loss`` (trl 1.16) on given sequence log-probs.

    The method needs a model only to turn token ids into per-token log-probs; a stand-in model returns
    each sequence's log-prob as a one-position sequence (ids [0, row]), so every line of TRL's loss,
    reference point and weighting runs as written, with precomputed reference log-probs.
    """
    from trl.trainer.kto_trainer import KTOTrainer

    n = policy_logps.shape[0]
    table = torch.cat([policy_logps, policy_kl_logps])

    def stand_in_model(input_ids, **_):
        rows = input_ids[:, 1]
        zeros = torch.zeros(len(rows), 1, dtype=table.dtype)
        return SimpleNamespace(log_probs=table[rows].unsqueeze(1), entropy=zeros, mean_logits=zeros)

    trainer = object.__new__(KTOTrainer)  # no __init__: no model, dataset or accelerator to build
    trainer.model = SimpleNamespace(training=True)
    trainer.accelerator = SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=lambda x: x)
    trainer.aux_loss_enabled, trainer.precompute_ref_logps, trainer.calculate_KL = False, True, True
    trainer.loss_type, trainer.beta, trainer.desirable_weight, trainer.undesirable_weight = "kto", beta, dw, uw
    trainer._metrics, trainer._total_train_tokens, trainer._tp_size = {"train": defaultdict(list)}, 0, 1
    zeros = torch.zeros(n, dtype=torch.long)
    ones = torch.ones(n, 2, dtype=torch.long)
    batch = {
        "input_ids": torch.stack([zeros, torch.arange(n)], 1),
        "attention_mask": ones,
        "completion_mask": ones,
        "label": torch.tensor(labels),
        "KL_input_ids": torch.stack([zeros, torch.arange(n, 2 * n)], 1),
        "KL_attention_mask": ones,
        "KL_completion_mask": ones,
        "ref_logps": reference_logps,
        "ref_KL_logps": reference_kl_logps,
    }
    return KTOTrainer._compute_loss(trainer, stand_in_model, batch, False), trainer._metrics["train"]


@pytest.mark.parametrize("beta,dw,uw", [(0.1, 1.0, 1.0), (0.5, 1.0, 1.33), (2.0, 0.8, 1.0)])
def test_kto_matches_trl_on_the_same_batch(beta, dw, uw):
    """Our per-pair loss averaged over B pairs == TRL's mean over the 2B unpaired examples, when TRL gets
    each pair as (chosen, desirable) + (rejected, undesirable) and the same mismatched log-probs (TRL has
    one per example: ours repeated for the two examples of a pair, which leaves the batch mean unchanged)."""
    pytest.importorskip("trl")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    inputs = random_inputs(6, seed=11)
    inputs = LossInputs(**{**inputs.__dict__, "policy_kl_logps": inputs.reference_kl_logps + 0.4})  # z > 0
    _, loss_fn = get_loss("kto", beta=beta, desirable_weight=dw, undesirable_weight=uw)
    ours = loss_fn(inputs)
    trl_loss, trl_metrics = trl_kto_loss(
        torch.cat([inputs.policy_chosen_logps, inputs.policy_rejected_logps]),
        torch.cat([inputs.reference_chosen_logps, inputs.reference_rejected_logps]),
        [True] * 6 + [False] * 6,
        inputs.policy_kl_logps.repeat(2),
        inputs.reference_kl_logps.repeat(2),
        beta,
        dw,
        uw,
    )
    torch.testing.assert_close(ours.loss.mean(), trl_loss, rtol=0, atol=1e-12)
    assert trl_metrics["kl"][0] == pytest.approx(float(ours.metrics["kl/reference_point"][0]), abs=1e-12)
    assert trl_metrics["rewards/chosen"][0] == pytest.approx(float(ours.metrics["rewards/chosen"].mean()), abs=1e-12)


# ---------------------------------------------------------------- UPO-KTO


def test_upo_needs_are_the_union_with_its_preference_term():
    _, upo_dpo = get_loss("upo")
    _, upo_kto = get_loss("upo", preference="kto")
    assert "kl_logps" not in upo_dpo.needs
    assert upo_kto.needs == upo_dpo.needs | {"kl_logps"}


def test_upo_kto_at_zero_aux_weight_is_kto_bit_for_bit():
    inputs = random_inputs(8, seed=5)
    results = []
    for name, kwargs in (("kto", {"beta": 0.3}), ("upo", {"beta": 0.3, "aux_weight": 0.0, "preference": "kto"})):
        policy = inputs.policy_chosen_logps.clone().requires_grad_()
        _, loss_fn = get_loss(name, **kwargs)
        out = loss_fn(LossInputs(**{**inputs.__dict__, "policy_chosen_logps": policy}))
        out.loss.mean().backward()
        results.append((out.loss.detach(), policy.grad))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


@pytest.mark.parametrize("preference", ["upo", "csft", "sft"])
def test_upo_refuses_a_preference_term_that_is_not_a_plain_pairwise_loss(preference):
    with pytest.raises(ValueError, match=f"preference '{preference}' must be a pairwise loss"):
        get_loss("upo", preference=preference)


# ---------------------------------------------------------------- MODPO


def test_modpo_is_the_papers_simplex_form():
    """beta z - aux_weight (dr) == (beta_p / w_0) z - (1 / w_0) w_aux dr at w = (1, aux_weight) / (1 + aux_weight),
    beta_p = beta / (1 + aux_weight) (the module docstring's mapping)."""
    inputs = random_inputs(5, seed=2)
    beta, weight = 0.4, 1.5
    w_0, w_aux, beta_paper = 1 / (1 + weight), weight / (1 + weight), beta / (1 + weight)
    z = (inputs.policy_chosen_logps - inputs.policy_rejected_logps) - (
        inputs.reference_chosen_logps - inputs.reference_rejected_logps
    )
    margin = inputs.aux_chosen_rewards - inputs.aux_rejected_rewards
    paper = -torch.nn.functional.logsigmoid(beta_paper / w_0 * z - w_aux / w_0 * margin)
    _, loss_fn = get_loss("modpo", beta=beta, aux_weight=weight)
    torch.testing.assert_close(loss_fn(inputs).loss, paper, rtol=0, atol=1e-12)


def test_modpo_at_zero_weight_is_dpo_and_a_larger_aux_margin_asks_more():
    inputs = random_inputs(8, seed=4)
    _, dpo = get_loss("dpo", beta=0.2)
    _, modpo0 = get_loss("modpo", beta=0.2, aux_weight=0.0)
    torch.testing.assert_close(modpo0(inputs).loss, dpo(inputs).loss, rtol=0, atol=0)
    _, modpo = get_loss("modpo", beta=0.2, aux_weight=1.0)
    wider = LossInputs(**{**inputs.__dict__, "aux_chosen_rewards": inputs.aux_chosen_rewards + 1.0})
    assert (modpo(wider).loss > modpo(inputs).loss).all()


# ---------------------------------------------------------------- A-LoL


def test_alol_trains_only_the_positive_advantage_response_with_a_detached_weight():
    policy_chosen, policy_rejected = T(-1.0).requires_grad_(), T(-2.0).requires_grad_()
    inputs = random_inputs(
        1,
        policy_chosen_logps=policy_chosen,
        policy_rejected_logps=policy_rejected,
        reference_chosen_logps=T(-1.5),
        reference_rejected_logps=T(-1.5),
        chosen_preference_scores=T(1.0),
        rejected_preference_scores=T(0.0),
        aux_chosen_rewards=T(1.0),
        aux_rejected_rewards=T(-1.0),
    )
    _, loss_fn = get_loss("alol", aux_weight=1.0)
    loss_fn(inputs).loss.sum().backward()
    # d/dlogpi of -(A * sg(w) * logpi) / 2 = -A w / 2 with A = 1.5, w = e^0.5; the worse response: 0
    torch.testing.assert_close(policy_chosen.grad, T(-1.5 * math.exp(0.5) / 2), rtol=0, atol=1e-12)
    torch.testing.assert_close(policy_rejected.grad, T(0.0), rtol=0, atol=0)


def test_alol_gradcheck_of_the_surrogate_inside_the_clip_range():
    """The importance weight is a stop-gradient term: moving the reference with the policy keeps it fixed,
    so the numerical gradient is that of the surrogate -A w log pi, which autograd must match."""
    _, loss_fn = get_loss("alol", aux_weight=0.7, clip=0.9)
    base = random_inputs(4, seed=7)
    offset = T(0.1, -0.2, 0.3, 0.0)  # log ratios inside log([0.1, 1.9])

    def fn(chosen, rejected):
        fields = {
            **base.__dict__,
            "policy_chosen_logps": chosen,
            "policy_rejected_logps": rejected,
            "reference_chosen_logps": chosen.detach() - offset,
            "reference_rejected_logps": rejected.detach() + offset,
        }
        return loss_fn(LossInputs(**fields)).loss

    chosen = base.policy_chosen_logps.clone().requires_grad_()
    rejected = base.policy_rejected_logps.clone().requires_grad_()
    assert torch.autograd.gradcheck(fn, (chosen, rejected))


def test_alol_rejects_an_unknown_ratio():
    with pytest.raises(ValueError, match="ratio must be 'sequence' or 'ref_free'"):
        get_loss("alol", ratio="token")


# ---------------------------------------------------------------- CSFT


def csft_pair(pair_id: str, chosen_scores: dict, rejected_scores: dict) -> dict:
    return {
        "id": pair_id,
        "prompt": [{"role": "user", "content": "hi"}],
        "chosen": f"{pair_id} good",
        "rejected": f"{pair_id} bad",
        "aux": {"chosen": chosen_scores, "rejected": rejected_scores},
    }


def test_csft_records_put_the_label_and_objective_tokens_in_the_prompt():
    from upo.losses.csft import csft_generation_prefix, csft_records

    records = [
        csft_pair("a", {"readability": 0.9, "brevity": 0.1}, {"readability": 0.2, "brevity": 0.8}),
        csft_pair("b", {"readability": 0.4, "brevity": 0.5}, {"readability": 0.6, "brevity": 0.3}),
    ]
    # readability median 0.5 (higher is better); brevity median 0.4 with a negative weight (lower is better)
    out = csft_records(records, records, {"readability": 1.0, "brevity": -0.5, "safety": 0.0})
    prefixes = {r["id"]: r["response_prefix"] for r in out}
    assert prefixes == {
        "a#chosen": "<|good|><|brevity:good|><|readability:good|>",
        "a#rejected": "<|bad|><|brevity:bad|><|readability:bad|>",
        "b#chosen": "<|good|><|brevity:bad|><|readability:bad|>",
        "b#rejected": "<|bad|><|brevity:good|><|readability:good|>",
    }
    assert [r["chosen"] for r in out] == ["a good", "a bad", "b good", "b bad"]
    assert (
        csft_generation_prefix({"readability": 1.0, "brevity": -0.5}) == "<|good|><|brevity:good|><|readability:good|>"
    )


def test_sampling_prefix_is_declared_by_the_loss():
    assert sampling_prefix("csft", {"readability": 1.0}) == "<|good|><|readability:good|>"
    assert sampling_prefix("dpo", {"readability": 1.0}) == ""
    assert sampling_prefix(None, {"readability": 1.0}) == ""  # PPO's run has no loss: no hooks
    with pytest.raises(KeyError, match="csfy"):
        sampling_prefix("csfy", {"readability": 1.0})


# ---------------------------------------------------------------- trainer plumbing on a tiny model


def session_for(tmp_path, tiny_model_dir, tiny_data, loss, kwargs, cache=True):
    from tests.unit.test_train_offline import make_cache, run_config
    from upo.train.session import open_session

    cache_path = make_cache(tmp_path, tiny_model_dir, tiny_data) if cache else ""
    cfg = run_config(tmp_path, tiny_model_dir, tiny_data, cache_path, loss, loss, kwargs, eval_pairs=8)
    return open_session(cfg)


@pytest.mark.parametrize("loss,kwargs", [("kto", {}), ("upo", {"preference": "kto"})])
def test_kl_need_forwards_mismatched_pairs(tmp_path, tiny_model_dir, tiny_data, loss, kwargs):
    """Each pair carries (x_i, y'_i) with y' the next pair's response; the forward's policy log-probs of
    those rows equal a separate forward of the same sequences, and at step 0 (policy = reference) they
    equal the reference log-probs the trainer computed, so z_ref starts at 0."""
    from upo.data.batching import TokenizedPair
    from upo.models.pair_forward import compute_pair_logps
    from upo.train.inputs import mismatched_response
    from upo.train.offline import heldout_metrics
    from upo.train.step import make_inputs

    session = session_for(tmp_path, tiny_model_dir, tiny_data, loss, kwargs)
    records, pairs = session.train.records, session.train.pairs
    assert mismatched_response(records, 0) == records[1]["chosen"]
    assert mismatched_response(records, 1) == records[2]["rejected"]
    expected_ids = session.tokenizer(records[1]["chosen"], add_special_tokens=False)["input_ids"]
    assert pairs[0].kl_ids[: len(expected_ids)] == expected_ids[: len(pairs[0].kl_ids)]
    assert pairs[0].kl_prompt_ids == pairs[0].prompt_ids

    (micro,) = session.micro_batches(list(range(8)))
    assert micro.batch["input_ids"].shape[0] == 3 * 8
    forward = session.unwrapped.eval()
    with torch.no_grad():
        inputs = make_inputs(forward(**micro.batch), micro.tensors, micro.size)
    separate = compute_pair_logps(
        forward.model,
        [TokenizedPair(p.kl_prompt_ids, p.kl_ids, [], False) for p in pairs[:8]],
        session.tokenizer.pad_token_id,
        include_rejected=False,
    )["chosen"]
    torch.testing.assert_close(inputs.policy_kl_logps, separate, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(inputs.reference_kl_logps, separate, rtol=1e-5, atol=1e-5)
    assert "eval/kl/reference_point" in heldout_metrics(session, session.heldout())


def test_csft_session_trains_on_both_responses_with_control_tokens(tmp_path, tiny_model_dir, tiny_data):
    session = session_for(tmp_path, tiny_model_dir, tiny_data, "csft", {}, cache=False)
    records, pairs = session.train.records, session.train.pairs
    assert len(records) == 2 * len(session.train.source_records)
    assert records[0]["response_prefix"].startswith("<|good|>") and records[1]["response_prefix"].startswith("<|bad|>")
    prefix_ids = session.tokenizer(records[0]["response_prefix"], add_special_tokens=False)["input_ids"]
    assert len(pairs[0].prompt_ids) > len(prefix_ids)
    (micro,) = session.micro_batches(list(range(8)))
    assert micro.batch["input_ids"].shape[0] == 8  # one row per response: no rejected rows
    labels = micro.batch["labels"][0]
    prompt_length = len(pairs[0].prompt_ids)
    assert (labels[:prompt_length] == -100).all()  # control tokens condition, never a target
    assert session.heldout() is not None and len(session.heldout().records) == 2 * 8


@pytest.mark.slow
@pytest.mark.parametrize(
    "loss,kwargs",
    [
        ("kto", {"beta": 0.5}),
        ("upo", {"preference": "kto", "aux_weight": 1.0}),
        ("modpo", {"aux_weight": 1.0}),
        ("alol", {"aux_weight": 1.0}),
        ("csft", {}),
    ],
)
def test_baselines_train_and_lower_their_loss(tmp_path, tiny_model_dir, tiny_data, loss, kwargs):
    from tests.unit.test_train_offline import make_cache, read_log, run_config
    from upo.train.offline import train

    cache = make_cache(tmp_path, tiny_model_dir, tiny_data)
    cfg = run_config(tmp_path, tiny_model_dir, tiny_data, cache, loss, loss, kwargs)
    # A-LoL's reward needs p(y); the label as +-0.5 needs neither the workflow's cross-fitted scores nor the oracle
    cfg.data.preference_source = "binary" if loss == "alol" else None
    train(cfg)
    log = read_log(tmp_path / loss)
    first, last = float(log[0]["loss"]), float(log[-1]["loss"])
    assert math.isfinite(last) and last < first
    assert (tmp_path / loss / "model" / "model.safetensors").exists()
