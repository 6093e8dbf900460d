"""Generation: seeded, batched, left-padded sampling and the generate CLI."""

from __future__ import annotations

import pytest
import torch

from upo.evaluate.generation import generate_responses, generate_with_ids, generator_name, prompt_to_instruction
from upo.io import read_jsonl, write_yaml

PROMPTS = [[{"role": "user", "content": t}] for t in ("the cat sat", "we love sunny days and", "rain", "mat")]


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    from upo.models.loading import load_model_and_tokenizer

    torch.set_num_threads(1)
    return load_model_and_tokenizer(tiny_model_dir, device="cpu")


def test_same_seed_same_outputs(model_and_tokenizer):
    model, tok = model_and_tokenizer
    kwargs = dict(temperature=1.0, top_p=1.0, max_new_tokens=8, batch_size=2)
    a = generate_responses(model, tok, PROMPTS, seed=3, **kwargs)
    b = generate_responses(model, tok, PROMPTS, seed=3, **kwargs)
    c = generate_responses(model, tok, PROMPTS, seed=4, **kwargs)
    assert a == b and len(a) == 4
    assert a != c  # random init model, 8 sampled tokens: different seeds differ


def test_left_padding_matches_unbatched_greedy(model_and_tokenizer):
    model, tok = model_and_tokenizer
    kwargs = dict(temperature=0.0, max_new_tokens=6, seed=0)
    batched = generate_with_ids(model, tok, PROMPTS, batch_size=4, **kwargs)[1]
    single = [generate_with_ids(model, tok, [p], batch_size=1, **kwargs)[1][0] for p in PROMPTS]
    assert batched == single


def test_ids_stop_at_eos(model_and_tokenizer):
    model, tok = model_and_tokenizer
    _, ids = generate_with_ids(model, tok, PROMPTS, max_new_tokens=12, batch_size=4, seed=1)
    for row in ids:
        assert len(row) <= 12
        assert tok.eos_token_id not in row[:-1]


def test_prompt_to_instruction():
    assert prompt_to_instruction([{"role": "user", "content": "hi"}]) == "hi"
    multi = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    assert prompt_to_instruction(multi) == "User: a\n\nAssistant: b\n\nUser: c"
    with pytest.raises(ValueError):
        prompt_to_instruction([{"role": "assistant", "content": "x"}])


def test_generator_name():
    tags = {"method": "upo", "model": "pico", "dataset": "default", "beta": 0.1, "aux_weight": 1.0, "seed": 0}
    assert generator_name(tags) == "upo/pico/default/beta~0.1/aux_weight~1.0/seed~0"


def write_run(run_dir, model_dir, data, eval_section, reference=None):
    """A minimal run directory: run.yaml plus model/ (a symlink to the tiny model)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "model").symlink_to(model_dir, target_is_directory=True)
    write_yaml(
        run_dir / "run.yaml",
        {
            "method": "dpo",
            "tags": {"dataset": "tiny", "model": "pico", "method": "dpo", "beta": 0.1, "aux_weight": None, "seed": 0},
            "model": {"name": "pico", "path": str(model_dir)},
            "reference": {"path": str(reference or model_dir)},
            "data": {"train": str(data["train"]), "test": str(data["test"])},
            "eval": eval_section,
        },
    )
    return run_dir


def test_generate_cli(tmp_path, tiny_model_dir, tiny_data):
    from upo.__main__ import main

    run = write_run(
        tmp_path / "run", tiny_model_dir, tiny_data, {"max_prompts": 5, "max_new_tokens": 6, "batch_size": 4}
    )
    assert main(["generate", str(run)]) == 0
    rows = read_jsonl(run / "generations.jsonl")
    by_id = {r["id"]: r for r in read_jsonl(tiny_data["test"])}
    order = list(by_id)
    ids = [r["id"] for r in rows]  # a seeded subset of 5 (eval_records), in file order
    assert len(ids) == 5 and set(ids) <= set(by_id) and ids == sorted(ids, key=order.index)
    for row, record in zip(rows, (by_id[i] for i in ids), strict=True):
        assert set(row) >= {"instruction", "output", "generator", "id", "prompt", "reference", "token_ids"}
        assert row["reference"] == record["chosen"] and row["prompt"] == record["prompt"]
        assert row["generator"].startswith("dpo/pico/tiny")


def test_generate_checks_judge_before_sampling(tmp_path, tiny_model_dir, tiny_data, monkeypatch):
    from upo.evaluate.generation import generate_run
    from upo.evaluate.judges import JudgeUnavailable

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    run = write_run(tmp_path / "run", tiny_model_dir, tiny_data, {"judge": "weighted_alpaca_eval_gpt4_turbo"})
    monkeypatch.setattr(
        "upo.evaluate.generation.load_model_and_tokenizer", lambda *a, **k: pytest.fail("loaded a model")
    )
    with pytest.raises(JudgeUnavailable, match="OPENAI_API_KEY"):
        generate_run(run)
