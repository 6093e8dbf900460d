"""Write evaluations/data/upo_capability.jsonl: the offline capability probe (~100 items).

Deterministic (fixed seed); rerun after editing: ``python evaluations/data/make_capability.py``.
Items: two-number arithmetic (4 choices), capital cities (4 choices) and simple facts (2 choices).
Each row: {"id", "kind", "question", "choices": [...], "answer": index of the right choice}.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 20240527
CAPITALS = {
    "France": "Paris",
    "Germany": "Berlin",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Japan": "Tokyo",
    "China": "Beijing",
    "Egypt": "Cairo",
    "Canada": "Ottawa",
    "Australia": "Canberra",
    "Brazil": "Brasilia",
    "Russia": "Moscow",
    "India": "New Delhi",
    "Kenya": "Nairobi",
    "Mexico": "Mexico City",
    "Norway": "Oslo",
    "Sweden": "Stockholm",
    "Greece": "Athens",
    "Portugal": "Lisbon",
    "Ireland": "Dublin",
    "Poland": "Warsaw",
    "Austria": "Vienna",
    "Peru": "Lima",
    "Argentina": "Buenos Aires",
    "Turkey": "Ankara",
    "Thailand": "Bangkok",
    "South Korea": "Seoul",
    "Finland": "Helsinki",
    "Hungary": "Budapest",
    "Chile": "Santiago",
    "Cuba": "Havana",
}
FACTS = [
    ("How many days are in a week?", "seven", "five"),
    ("What colour is the sky on a clear day?", "blue", "green"),
    ("Which is larger, an elephant or a mouse?", "an elephant", "a mouse"),
    ("What do bees make?", "honey", "milk"),
    ("What is frozen water called?", "ice", "steam"),
    ("How many legs does a spider have?", "eight", "six"),
    ("Which planet do we live on?", "Earth", "Mars"),
    ("What is the opposite of hot?", "cold", "tall"),
    ("Which season comes after winter?", "spring", "autumn"),
    ("How many hours are in a day?", "twenty-four", "twelve"),
    ("What do cows drink?", "water", "oil"),
    ("Which animal barks?", "a dog", "a cat"),
    ("What is the opposite of up?", "down", "left"),
    ("Which fruit is yellow and curved?", "a banana", "a cherry"),
    ("What gas do people breathe in to live?", "oxygen", "helium"),
    ("How many months are in a year?", "twelve", "ten"),
    ("Where does the sun rise?", "in the east", "in the west"),
    ("What is the boiling point of water at sea level in Celsius?", "100 degrees", "50 degrees"),
    ("Which is heavier, a kilogram of iron or a gram of iron?", "a kilogram of iron", "a gram of iron"),
    ("What do you use to see?", "your eyes", "your ears"),
]


def arithmetic(rng: random.Random, n: int) -> list[dict]:
    items = []
    for i in range(n):
        a, b = rng.randint(2, 49), rng.randint(2, 49)
        op = rng.choice("+-")
        answer = a + b if op == "+" else a - b
        wrong = set()
        while len(wrong) < 3:
            candidate = answer + rng.choice([-10, -2, -1, 1, 2, 10])
            wrong.add(candidate)
        choices = [answer, *sorted(wrong)]
        rng.shuffle(choices)
        items.append(
            {
                "id": f"arith-{i}",
                "kind": "arithmetic",
                "question": f"What is {a} {op} {b}?",
                "choices": [str(c) for c in choices],
                "answer": choices.index(answer),
            }
        )
    return items


def capitals(rng: random.Random) -> list[dict]:
    items = []
    cities = sorted(CAPITALS.values())
    for i, (country, city) in enumerate(sorted(CAPITALS.items())):
        choices = [city, *rng.sample([c for c in cities if c != city], 3)]
        rng.shuffle(choices)
        items.append(
            {
                "id": f"capital-{i}",
                "kind": "capital",
                "question": f"What is the capital city of {country}?",
                "choices": choices,
                "answer": choices.index(city),
            }
        )
    return items


def facts(rng: random.Random) -> list[dict]:
    items = []
    for i, (question, right, wrong) in enumerate(FACTS):
        choices = [right, wrong]
        rng.shuffle(choices)
        items.append(
            {
                "id": f"fact-{i}",
                "kind": "fact",
                "question": question,
                "choices": choices,
                "answer": choices.index(right),
            }
        )
    return items


def build() -> list[dict]:
    rng = random.Random(SEED)
    return arithmetic(rng, 50) + capitals(rng) + facts(rng)


def main() -> None:
    out = Path(__file__).resolve().parent / "upo_capability.jsonl"
    with open(out, "w", encoding="utf-8") as handle:
        for item in build():
            handle.write(json.dumps(item) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
