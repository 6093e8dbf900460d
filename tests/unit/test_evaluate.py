"""evaluate_run: metrics.json against the schema, scores.jsonl, KL, and its error messages."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from tests.unit.test_generation import write_run
from upo.config import EvalConfig, load_eval_config
from upo.evaluate.evaluation import evaluate_run, mean_se, sequence_kl, validate_metrics
from upo.io import read_jsonl
from upo.strict import ConfigError, from_dict


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory, tiny_model_dir, tiny_tokenizer_dir):
    """A run evaluated end to end (policy != reference), shared by the tests below."""
    from tests.conftest import save_tiny_llama, tiny_records
    from upo.__main__ import main
    from upo.io import write_jsonl

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("evalrun")
    records = tiny_records(20)
    data = {"train": root / "train.jsonl", "test": root / "test.jsonl"}
    write_jsonl(data["train"], records[:10])
    write_jsonl(data["test"], records[10:])
    reference = save_tiny_llama(root / "reference", tiny_tokenizer_dir, seed=1)
    run = write_run(
        root / "run",
        tiny_model_dir,
        data,
        {
            "max_prompts": 6,
            "max_new_tokens": 8,
            "batch_size": 4,
            "aux_rewards": ["readability", "brevity"],
            "lm_eval_tasks": ["upo_pref_acc"],
            "lm_eval_limit": 3,
        },
        reference=reference,
    )
    (run / "train_summary.json").write_text(
        json.dumps({"wall_s": 1.5, "tokens": 100, "peak_mem_mb": 12.0, "steps": 2})
    )
    assert main(["generate", str(run)]) == 0
    assert main(["evaluate", str(run), "--judge-cache", str(root / "judges.sqlite")]) == 0
    return run


def test_metrics_validate_and_match_scores(evaluated_run):
    metrics = json.loads((evaluated_run / "metrics.json").read_text())
    validate_metrics(metrics)
    assert metrics["run"] == {
        "dataset": "tiny",
        "model": "pico",
        "method": "dpo",
        "beta": 0.1,
        "aux_weight": None,
        "seed": 0,
        "run_dir": str(evaluated_run),
    }
    assert metrics["win_rate"]["n"] == 6 and metrics["win_rate"]["judge"]["name"] == "oracle"
    assert set(metrics["aux"]) == {"readability", "brevity"}
    assert metrics["cost"] == {"train_wall_s": 1.5, "tokens": 100, "peak_mem_mb": 12.0}
    assert metrics["kl"]["n"] == 6 and metrics["kl"]["value"] != 0
    assert len(metrics["manifest"]["data_sha256"]) == 2
    assert 0 <= metrics["lm_eval"]["upo_pref_acc"]["acc"] <= 1
    assert metrics["manifest"]["task_versions"]["upo_pref_acc"] == metrics["lm_eval"]["upo_pref_acc"]["version"]
    scores = read_jsonl(evaluated_run / "scores.jsonl")
    generations = read_jsonl(evaluated_run / "generations.jsonl")
    assert [s["id"] for s in scores] == [g["id"] for g in generations]
    mean_pref = sum(s["preference"] for s in scores) / len(scores)
    assert mean_pref * 100 == pytest.approx(metrics["win_rate"]["value"])
    mean_read = sum(s["aux"]["readability"] for s in scores) / len(scores)
    assert mean_read == pytest.approx(metrics["aux"]["readability"]["mean"])
    assert sum(s["kl"] for s in scores) / len(scores) == pytest.approx(metrics["kl"]["value"])


def test_schema_rejects_broken_metrics(evaluated_run):
    metrics = json.loads((evaluated_run / "metrics.json").read_text())
    for mutate, where in [
        (lambda m: m.update(extra=1), "<root>"),
        (lambda m: m["win_rate"].update(value=150.0), "win_rate/value"),
        (lambda m: m["aux"]["readability"].update(mean=1.5), "aux/readability/mean"),
        (lambda m: m["run"].pop("seed"), "run"),
    ]:
        broken = copy.deepcopy(metrics)
        mutate(broken)
        with pytest.raises(ValueError, match=where):
            validate_metrics(broken)


def test_kl_of_model_against_itself_is_zero(tiny_model_dir):
    from upo.evaluate.generation import generate_with_ids
    from upo.models.loading import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(tiny_model_dir, device="cpu")
    prompts = [[{"role": "user", "content": t}] for t in ("the cat", "sunny days", "rain")]
    _, ids = generate_with_ids(model, tok, prompts, max_new_tokens=8, batch_size=3, seed=0)
    kl = sequence_kl(model, model, tok, prompts, ids, batch_size=2)
    assert kl == pytest.approx([0.0] * 3, abs=1e-5)


def test_missing_generations_names_file(tmp_path, tiny_model_dir, tiny_data):
    run = write_run(tmp_path / "run", tiny_model_dir, tiny_data, {})
    with pytest.raises(FileNotFoundError, match=r"generations\.jsonl.*python -m upo generate"):
        evaluate_run(run)


def test_unknown_judge_fails_listing_judges(tmp_path, tiny_model_dir, tiny_data):
    run = write_run(tmp_path / "run", tiny_model_dir, tiny_data, {"judge": "gpt-17"})
    with pytest.raises(KeyError, match="local-llm.*oracle"):
        evaluate_run(run)


def test_eval_config_strict():
    assert from_dict(EvalConfig, {}).max_new_tokens == 48
    with pytest.raises(ConfigError, match="tempreature"):
        from_dict(EvalConfig, {"tempreature": 1.0}, where="eval")
    with pytest.raises(ConfigError, match="reference"):
        from_dict(EvalConfig, {"reference": "gpt4"}, where="eval")

    class Cfg:
        eval = {"max_prompts": 0}

    with pytest.raises(ConfigError, match="run.yaml.*max_prompts"):
        load_eval_config(Cfg())


def test_mean_se():
    assert mean_se([1.0, 3.0]) == (2.0, pytest.approx(1.0))
    mean, se = mean_se([5.0])
    assert mean == 5.0 and math.isnan(se)  # one value: SE undefined, not 0


def test_sft_samples_reference(tmp_path, tiny_model_dir, tiny_data):
    from upo.__main__ import main

    section = {"max_prompts": 3, "max_new_tokens": 6, "aux_rewards": [], "kl": False}
    sft = write_run(tmp_path / "sft", tiny_model_dir, tiny_data, section)
    run = write_run(
        tmp_path / "run", tiny_model_dir, tiny_data, {**section, "reference": "sft_samples"}, reference=sft / "model"
    )
    assert main(["generate", str(run)]) == 0
    with pytest.raises(FileNotFoundError, match="sft_samples"):
        evaluate_run(run)
    assert main(["generate", str(sft)]) == 0
    metrics = evaluate_run(run)
    # Same weights, same evaluation seed: identical samples, so every comparison is a tie.
    assert metrics["win_rate"]["value"] == pytest.approx(50.0)
    assert metrics["win_rate"]["reference"] == "sft_samples" and metrics["kl"] is None


def test_ppo_metrics_carry_the_reward_models_heldout_accuracy(tmp_path, tiny_model_dir, tiny_data):
    from upo.io import read_yaml, write_yaml
    from upo.train.reward_model import heldout_accuracy

    rm_dir = tmp_path / "reward_model"
    (rm_dir / "model").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="train_log.csv"):
        heldout_accuracy(rm_dir / "model")
    (rm_dir / "train_log.csv").write_text("step,loss,eval/accuracy\n1,0.7,\n2,0.6,0.8125\n3,0.5,\n")
    assert heldout_accuracy(rm_dir / "model") == {"heldout_accuracy": 0.8125, "source": "train_log.csv"}
    (rm_dir / "train_summary.json").write_text(json.dumps({"steps": 3, "heldout_accuracy": 0.75}))
    assert heldout_accuracy(rm_dir / "model") == {"heldout_accuracy": 0.75, "source": "train_summary.json"}

    section = {"max_prompts": 3, "max_new_tokens": 6, "aux_rewards": [], "kl": False}
    run = write_run(tmp_path / "run", tiny_model_dir, tiny_data, section)
    config = read_yaml(run / "run.yaml")
    write_yaml(run / "run.yaml", {**config, "method": "ppo", "reward_model": str(rm_dir / "model")})
    from upo.__main__ import main

    assert main(["generate", str(run)]) == 0
    metrics = evaluate_run(run)
    assert metrics["reward_model"] == {"heldout_accuracy": 0.75, "source": "train_summary.json"}
    assert json.loads((run / "metrics.json").read_text())["reward_model"]["heldout_accuracy"] == 0.75
    broken = copy.deepcopy(metrics)
    broken["reward_model"]["heldout_accuracy"] = 1.5
    with pytest.raises(ValueError, match="reward_model/heldout_accuracy"):
        validate_metrics(broken)
    write_yaml(run / "run.yaml", config)  # an offline run: no reward model, no field
    assert "reward_model" not in evaluate_run(run)
