"""Shared fixtures: a tiny tokenizer, a tiny random Llama saved as an HF folder, tiny preference data.

Nothing here touches a hub: the tokenizer is trained on a few sentences in the test session.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

SHARED_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"

WORDS = (
    "the cat sat on a warm mat and smiled . we love sunny days but hate cold rain ! "
    "reading short clear words is easy ; long convoluted sentences are exhausting"
).split()


def tiny_records(n: int, seed: int = 0) -> list[dict]:
    """Synthetic pairs in the record schema; chosen responses are happier (more 'love'/'smiled')."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8)))
        chosen = "we love it and smiled " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
        rejected = "we hate cold rain " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10)))
        records.append(
            {
                "id": f"tiny-{i}",
                "prompt": [{"role": "user", "content": prompt}],
                "chosen": chosen,
                "rejected": rejected,
                "source": "tiny",
                "aux": {
                    "chosen": {"readability": rng.random(), "brevity": rng.random()},
                    "rejected": {"readability": rng.random(), "brevity": rng.random()},
                },
                "oracle": {"chosen": 0.5 + rng.random(), "rejected": rng.random() - 0.5},
            }
        )
    return records


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    from upo.models.loading import train_project_tokenizer

    corpus = [" ".join(WORDS)] * 4 + [r["prompt"][0]["content"] + " " + r["chosen"] for r in tiny_records(64)]
    return train_project_tokenizer(corpus, tmp_path_factory.mktemp("tok") / "tokenizer", vocab_size=300)


def save_tiny_llama(out_dir: Path, tokenizer_dir: Path, seed: int = 0, hidden: int = 32) -> Path:
    from transformers import AutoTokenizer

    from tests.unit.tiny import save_tiny_llama as save

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    return save(out_dir, tokenizer, seed, hidden_size=hidden, intermediate_size=2 * hidden)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("lm") / "model", tiny_tokenizer_dir)


@pytest.fixture()
def tiny_data(tmp_path) -> dict[str, Path]:
    from upo.io import write_jsonl

    records = tiny_records(48)
    paths = {"train": tmp_path / "train.jsonl", "test": tmp_path / "test.jsonl"}
    write_jsonl(paths["train"], records[:32])
    write_jsonl(paths["test"], records[32:])
    return paths
