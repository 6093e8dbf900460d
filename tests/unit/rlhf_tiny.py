"""Tiny local models, tokenizer and synthetic preference data for the reward-model and PPO tests.

Everything is built in a temporary folder: a word-level tokenizer with a chat template (pad = EOS,
as in many chat tokenizers, so pooling by attention mask is exercised) and a random 2-layer Llama.
"""

from __future__ import annotations

import random
from pathlib import Path

from upo.io import write_jsonl, write_yaml

POSITIVE = ["good", "great", "kind", "calm", "bright", "fine", "nice", "happy"]
NEGATIVE = ["bad", "awful", "cruel", "angry", "dark", "sad", "rude", "ugly"]
NEUTRAL = [f"w{i}" for i in range(40)]
TOPICS = [f"t{i}" for i in range(12)]
SPECIALS = ["<pad>", "<eos>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = POSITIVE + NEGATIVE + NEUTRAL + TOPICS + ["about", "tell", "me", "."]
    vocab = {token: i for i, token in enumerate(SPECIALS + words)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<eos>",
        pad_token="<eos>",
        unk_token="<unk>",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|system|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_policy(folder: Path, seed: int = 0) -> Path:
    """Save a random tiny Llama causal LM and the tokenizer to ``folder``."""
    from tests.unit.tiny import save_tiny_llama

    return save_tiny_llama(folder, build_tokenizer(), seed, bos_token_id=None)


def synthetic_records(n: int, seed: int, split: str) -> list[dict]:
    """Separable pairs: the chosen reply has positive words, the rejected one negative words."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        topic = rng.choice(TOPICS)
        length = rng.randint(3, 6)

        def reply(pool, length=length):
            words = [rng.choice(pool) if rng.random() < 0.5 else rng.choice(NEUTRAL) for _ in range(length)]
            words[0] = rng.choice(pool)  # every reply carries at least one word of its class
            return " ".join(words)

        chosen, rejected = reply(POSITIVE), reply(NEGATIVE)
        records.append(
            {
                "id": f"{split}-{i}",
                "prompt": [{"role": "user", "content": f"tell me about {topic}"}],
                "chosen": chosen,
                "rejected": rejected,
                "source": "synthetic",
                "aux": {"chosen": {"share": positive_share(chosen)}, "rejected": {"share": positive_share(rejected)}},
            }
        )
    return records


def positive_share(text: str) -> float:
    words = text.split()
    return sum(w in POSITIVE for w in words) / max(len(words), 1)


def write_run(tmp: Path, method: str, **sections) -> Path:
    """Build the tiny model + data under ``tmp`` and write a run.yaml; returns its path."""
    policy = tmp / "sft"
    if not policy.exists():
        build_policy(policy)
    data = tmp / "data"
    if not (data / "train.jsonl").exists():
        write_jsonl(data / "train.jsonl", synthetic_records(96, 0, "train"))
        write_jsonl(data / "test.jsonl", synthetic_records(48, 1, "test"))
    run = {
        "method": method,
        "seed": 0,
        "output_dir": str(tmp / "runs" / method),
        "model": {"name": "tiny", "path": str(policy)},
        "reference": {"path": str(policy)},
        "data": {
            "train": str(data / "train.jsonl"),
            "test": str(data / "test.jsonl"),
            "max_length": 48,
            "max_prompt_length": 24,
        },
        "train": {"batch_size": 16, "threads": 1},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(run.get(key), dict):
            run[key] = {**run[key], **value}
        else:
            run[key] = value
    path = tmp / "runs" / method / "run.yaml"
    write_yaml(path, run)
    return path
