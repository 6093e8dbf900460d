"""What ``benchmarks/train_throughput.py`` trains on: deterministic synthetic pairs in the record schema, a
random-init tiny Llama, and a private copy of SmolLM2-135M (prepared from the packaged GGUF when absent)."""

from __future__ import annotations

import os
import random
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SMOLLM2_DIR = REPO_ROOT / "resources" / "models" / "smollm2-135m"
AUX_NAME = "readability"
WORDS = (
    "the a cat dog sat on warm mat and we love sunny days but hate cold rain reading short clear words is easy "
    "long convoluted sentences are exhausting people often ask how to cook pasta fix a bike or write a letter "
    "please explain why sky blue answer simply kindly with examples because it helps you learn quickly today "
    "tomorrow garden river mountain city music story friend teacher computer water bread coffee morning night"
).split()


def synthetic_records(n: int, seed: int = 0) -> list[dict]:
    """Deterministic pairs in the record schema, lengths varied so that batches carry real padding.

    Aux scores are seeded random numbers: they are data the step reads, not something it computes.
    """
    rng = random.Random(seed)

    def text(low: int, high: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))

    return [
        {
            "id": f"bench-{i}",
            "prompt": [{"role": "user", "content": text(4, 16)}],
            "chosen": text(8, 40),
            "rejected": text(8, 40),
            "source": "synthetic",
            "aux": {"chosen": {AUX_NAME: rng.random()}, "rejected": {AUX_NAME: rng.random()}},
        }
        for i in range(n)
    ]


def make_tiny_model(out_dir: Path, tokenizer_dir: Path, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """A random-init Llama (tied embeddings) saved as an HF folder with the project chat template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from upo.models.loading import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def prepare_assets(work: Path, models: list[str], num_pairs: int) -> dict[str, Path]:
    """Data JSONL plus one HF folder per model name ("tiny" is built here; smollm2-135m is reused or prepared)."""
    from upo.io import write_jsonl
    from upo.models.loading import prepare_model, train_project_tokenizer

    records = synthetic_records(num_pairs)
    assets = {"data": work / "pairs.jsonl"}
    write_jsonl(assets["data"], records)
    for name in models:
        if name == "tiny":
            corpus = [r["prompt"][0]["content"] + " " + r["chosen"] + " " + r["rejected"] for r in records]
            tokenizer_dir = train_project_tokenizer(corpus, work / "tokenizer", vocab_size=512)
            assets["tiny"] = make_tiny_model(work / "tiny", tokenizer_dir)
        elif name == "smollm2-135m":
            if not (SMOLLM2_DIR / "config.json").exists():
                prepare_model("smollm2-135m", SMOLLM2_DIR)  # GGUF conversion, ~35 s, once
            # Hard links pin this version: the workflow may replace the shared folder while we run.
            private = work / "smollm2-135m"
            private.mkdir()
            for source in SMOLLM2_DIR.iterdir():
                os.link(source, private / source.name)
            assets["smollm2-135m"] = private
        else:
            raise KeyError(f"benchmark model {name!r} unknown; known: tiny, smollm2-135m")
    return assets
