"""The offline trainer on a tiny model: each method lowers its loss and moves its quantity; resume;
the concatenated forward equals separate forwards; UPO at aux_weight 0 trains to DPO's weights."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from upo.config import RunConfig
from upo.data.batching import collate_pairs, tokenize_pair
from upo.models.pair_forward import PairForward, main_ref_logps
from upo.strict import from_dict
from upo.train.offline import train


def make_cache(tmp_path, model_dir, data) -> Path:
    out = tmp_path / "ref.pt"
    assert (
        main_ref_logps(
            [
                "--model",
                str(model_dir),
                "--train",
                str(data["train"]),
                "--test",
                str(data["test"]),
                "--out",
                str(out),
                "--max-length",
                "64",
                "--max-prompt-length",
                "32",
            ]
        )
        == 0
    )
    return out


def run_config(tmp_path, model_dir, data, cache, name, loss, kwargs, **train) -> RunConfig:
    return from_dict(
        RunConfig,
        {
            "method": name,
            "seed": 0,
            "output_dir": str(tmp_path / name),
            "model": {"name": "tiny", "path": str(model_dir)},
            "reference": {"path": str(model_dir), "logps_cache": str(cache)},
            "data": {
                "train": str(data["train"]),
                "test": str(data["test"]),
                "max_length": 64,
                "max_prompt_length": 32,
                "aux_rewards": {"readability": 1.0},
            },
            "loss": {"name": loss, "kwargs": kwargs},
            "optim": {"lr": 5.0e-3},
            "train": {"max_steps": 30, "batch_size": 8, "threads": 1, **train},
        },
    )


def read_log(run_dir: Path) -> list[dict]:
    with open(run_dir / "train_log.csv") as handle:
        return list(csv.DictReader(handle))


def test_concatenated_forward_equals_separate_forwards(tiny_model_dir):
    from upo.models.loading import load_model, load_tokenizer

    tokenizer, model = load_tokenizer(tiny_model_dir), load_model(tiny_model_dir)
    pairs = [
        tokenize_pair(
            tokenizer,
            [{"role": "user", "content": "the cat" * (i + 1)}],
            "we love it",
            "we hate cold rain and mats" * (i + 1),
            64,
            32,
        )
        for i in range(3)
    ]
    forward = PairForward(model).eval()
    with torch.no_grad():
        together = forward(**collate_pairs(pairs, tokenizer.pad_token_id))["logps"]
        separate = []
        for side in ("chosen_ids", "rejected_ids"):
            for pair in pairs:
                single = type(pair)(pair.prompt_ids, getattr(pair, side), getattr(pair, side), False)
                separate.append(forward(**collate_pairs([single], tokenizer.pad_token_id, False))["logps"])
    torch.testing.assert_close(together, torch.cat(separate), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_dpo_raises_margin_and_upo_zero_weight_trains_to_dpo_weights(tmp_path, tiny_model_dir, tiny_data):
    cache = make_cache(tmp_path, tiny_model_dir, tiny_data)
    train(run_config(tmp_path, tiny_model_dir, tiny_data, cache, "dpo", "dpo", {"beta": 0.5}))
    log = read_log(tmp_path / "dpo")
    assert float(log[-1]["loss"]) < float(log[0]["loss"])
    assert float(log[-1]["train/rewards/margin"]) > float(log[0]["train/rewards/margin"])
    train(run_config(tmp_path, tiny_model_dir, tiny_data, cache, "upo0", "upo", {"beta": 0.5, "aux_weight": 0.0}))
    dpo_weights = load_file(str(tmp_path / "dpo/model/model.safetensors"))
    upo_weights = load_file(str(tmp_path / "upo0/model/model.safetensors"))
    assert all(torch.equal(dpo_weights[k], upo_weights[k]) for k in dpo_weights)


@pytest.mark.slow
def test_upo_shifts_likelihood_toward_more_readable_response(tmp_path, tiny_model_dir, tiny_data):
    """With a large aux weight the log-ratio moves toward the response with higher readability."""
    from upo.io import read_jsonl
    from upo.models.loading import load_model, load_tokenizer
    from upo.models.pair_forward import compute_pair_logps, tokenize_records

    cache = make_cache(tmp_path, tiny_model_dir, tiny_data)
    train(run_config(tmp_path, tiny_model_dir, tiny_data, cache, "upo", "upo", {"beta": 0.1, "aux_weight": 4.0}))
    assert float(read_log(tmp_path / "upo")[-1]["loss"]) < float(read_log(tmp_path / "upo")[0]["loss"])
    records = read_jsonl(tiny_data["train"])
    tokenizer = load_tokenizer(tiny_model_dir)
    pairs = tokenize_records(records, tokenizer, 64, 32)
    before = compute_pair_logps(load_model(tiny_model_dir), pairs, tokenizer.pad_token_id)
    after = compute_pair_logps(load_model(tmp_path / "upo/model"), pairs, tokenizer.pad_token_id)
    # sign +1 where the chosen response is the more readable one
    sign = torch.tensor(
        [1.0 if r["aux"]["chosen"]["readability"] > r["aux"]["rejected"]["readability"] else -1.0 for r in records]
    )
    shift = ((after["chosen"] - before["chosen"]) - (after["rejected"] - before["rejected"])) * sign
    assert shift.mean() > 0


@pytest.mark.slow
@pytest.mark.parametrize("loss,kwargs", [("sft", {}), ("relabel_dpo", {"aux_weight": 1.0})])
def test_other_methods_reduce_their_loss(tmp_path, tiny_model_dir, tiny_data, loss, kwargs):
    cache = make_cache(tmp_path, tiny_model_dir, tiny_data)
    cfg = run_config(tmp_path, tiny_model_dir, tiny_data, cache, loss, loss, kwargs)
    cfg.data.preference_source = "oracle" if loss == "relabel_dpo" else None  # the relabel-dpo-oracle path
    train(cfg)
    log = read_log(tmp_path / loss)
    assert float(log[-1]["loss"]) < float(log[0]["loss"])
    assert (tmp_path / loss / "model" / "model.safetensors").exists()


@pytest.mark.slow
def test_resume_gives_the_same_final_weights(tmp_path, tiny_model_dir, tiny_data):
    cache = make_cache(tmp_path, tiny_model_dir, tiny_data)
    kwargs = {"beta": 0.5, "aux_weight": 1.0}
    full = run_config(
        tmp_path, tiny_model_dir, tiny_data, cache, "full", "upo", kwargs, max_steps=8, checkpoint_every=3
    )
    train(full)
    resumed = run_config(
        tmp_path, tiny_model_dir, tiny_data, cache, "resumed", "upo", kwargs, max_steps=8, checkpoint_every=3
    )
    assert train(resumed, stop_after=4) == {"stopped_at": 4}  # "killed" after step 4; checkpoint at 3
    train(resumed)
    a = load_file(str(tmp_path / "full/model/model.safetensors"))
    b = load_file(str(tmp_path / "resumed/model/model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in read_log(tmp_path / "resumed")][-1] == "8"


def test_checkpoint_holds_an_hf_folder(tmp_path, tiny_model_dir, tiny_data):
    from transformers import AutoModelForCausalLM

    cache = make_cache(tmp_path, tiny_model_dir, tiny_data)
    cfg = run_config(
        tmp_path, tiny_model_dir, tiny_data, cache, "ckpt", "dpo", {"beta": 0.5}, max_steps=4, checkpoint_every=2
    )
    train(cfg, stop_after=3)
    checkpoint = tmp_path / "ckpt" / "checkpoint"
    assert (checkpoint / "trainable.safetensors").exists() and (checkpoint / "optimizer.pt").exists()
    AutoModelForCausalLM.from_pretrained(checkpoint / "model")  # loads as a plain HF folder


def test_missing_tracker_package_is_named(tmp_path, tiny_model_dir, tiny_data):
    import importlib.util

    from upo.strict import ConfigError

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    cfg = run_config(tmp_path, tiny_model_dir, tiny_data, "", "trk", "sft", {}, log_to=["csv", "wandb"])
    with pytest.raises(ConfigError, match="pip install wandb"):
        train(cfg)


@pytest.fixture()
def nan_loss():
    """A registered loss that is NaN (a non-finite beta is now refused by ``get_loss`` itself)."""
    from upo.losses import LOSSES, LossOutput, register_loss

    @register_loss("test_nan", needs={"rejected"})
    def nan_loss(inputs, *, scale: float = 1.0) -> LossOutput:
        return LossOutput(inputs.policy_chosen_logps * float("nan"))

    yield "test_nan"
    LOSSES.remove("test_nan")


def test_nonfinite_loss_stops_clearly(tmp_path, tiny_model_dir, tiny_data, nan_loss):
    from upo.train.offline import NonFiniteLossError

    cfg = run_config(tmp_path, tiny_model_dir, tiny_data, "", "nan", nan_loss, {})
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 0"):
        train(cfg)
    assert not (tmp_path / "nan" / "model").exists()


def test_max_steps_zero_saves_the_starting_model_unchanged(tmp_path, tiny_model_dir, tiny_data):
    """SmolLM2's "no SFT" stage: ``max_steps: 0`` is zero steps, and the model is written as it was."""
    cfg = run_config(tmp_path, tiny_model_dir, tiny_data, "", "nosft", "sft", {}, max_steps=0)
    summary = train(cfg)
    assert summary["steps"] == 0
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    after = load_file(str(tmp_path / "nosft/model/model.safetensors"))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_batch_order_drops_the_last_partial_batch_and_is_seeded():
    from upo.train.session import batch_order, total_steps

    batches = batch_order(10, 4, seed=3, epoch=0)
    assert [len(b) for b in batches] == [4, 4] and len(set(sum(batches, []))) == 8
    assert batch_order(10, 4, 3, 0) == batches and batch_order(10, 4, 3, 1) != batches
    cfg = from_dict(RunConfig, {"train": {"epochs": 3, "batch_size": 4}})
    assert total_steps(cfg, 10) == 6  # 3 epochs x floor(10 / 4)
    cfg.train.max_steps = 0
    assert total_steps(cfg, 10) == 0


def test_heldout_metrics_call_the_bound_loss(tmp_path, tiny_model_dir, tiny_data):
    """Held-out numbers are the run's own loss (its beta, not a fixed 0.1) on the test pairs."""
    from upo.train.offline import heldout_metrics
    from upo.train.session import open_session

    cache = make_cache(tmp_path, tiny_model_dir, tiny_data)
    margins = {}
    for beta in (0.5, 2.0):
        cfg = run_config(tmp_path, tiny_model_dir, tiny_data, cache, f"b{beta}", "dpo", {"beta": beta}, eval_pairs=8)
        session = open_session(cfg)
        with torch.no_grad():  # perturb the policy so the margin is not 0
            for parameter in session.unwrapped.model.parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))
        metrics = heldout_metrics(session, session.heldout())
        assert {"eval/loss", "eval/rewards/accuracy", "eval/rewards/margin", "eval/nll_chosen"} <= set(metrics)
        margins[beta] = metrics["eval/rewards/margin"]
    assert margins[2.0] == pytest.approx(4 * margins[0.5], rel=1e-4)  # same perturbation (seeded), beta x 4
