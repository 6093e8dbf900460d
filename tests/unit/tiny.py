"""The one tiny-model builder of the test suite: a random-init Llama (causal LM or one-label scorer).

Every test that needs a model builds it here (``tests/conftest.py``'s fixtures, ``rlhf_tiny``, the
model, reward-model and testbed tests), so a change of architecture or transformers API is one edit.
"""

from __future__ import annotations

from pathlib import Path

import torch

DEFAULTS = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    tie_word_embeddings=True,
)


def tiny_llama_config(tokenizer, **overrides):
    """LlamaConfig with the tokenizer's vocabulary and special ids; ``overrides`` replace any field."""
    from transformers import LlamaConfig

    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return LlamaConfig(vocab_size=len(tokenizer), **{**DEFAULTS, **ids, **overrides})


def tiny_llama(tokenizer, seed: int | None = 0, score_head: bool = False, **overrides):
    """A random-init tiny Llama (``score_head``: LlamaForSequenceClassification, one label).

    ``seed`` None keeps the caller's torch RNG stream.
    """
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification

    config = tiny_llama_config(tokenizer, **({"num_labels": 1} if score_head else {}), **overrides)
    if seed is not None:
        torch.manual_seed(seed)
    return (LlamaForSequenceClassification if score_head else LlamaForCausalLM)(config)


def save_tiny_llama(out_dir: Path, tokenizer, seed: int | None = 0, **overrides) -> Path:
    """Build :func:`tiny_llama` and save it with ``tokenizer`` as an HF folder."""
    tiny_llama(tokenizer, seed, **overrides).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)
