"""Prompt lists of the shipped default testbed: everyday topics x instruction styles.

The styles invite answers of varied tone (enthusiastic, critical, neutral) and complexity (a child's
explanation, a technical one), so sampled responses differ in sentiment (the gold preference) and in
reading ease (the designer objective) independently. 125 topics x 8 styles = 1,000 prompts; the
default split holds out all styles of 25 topics, so test prompts share no topic with training.
"""

from __future__ import annotations

import math
import random
import re

TOPICS: tuple[str, ...] = (
    # home and daily life
    "cooking dinner at home",
    "doing the laundry",
    "cleaning the kitchen",
    "grocery shopping",
    "making breakfast",
    "house plants",
    "moving to a new apartment",
    "living with roommates",
    "waking up early",
    "taking a nap",
    "commuting by bus",
    "riding a bicycle to work",
    "owning a car",
    "walking in the rain",
    "public libraries",
    "recycling at home",
    "decorating a bedroom",
    "fixing a leaky faucet",
    "paying monthly bills",
    "saving money",
    # food and drink
    "drinking coffee",
    "herbal tea",
    "baking bread",
    "eating spicy food",
    "fast food restaurants",
    "vegetarian meals",
    "chocolate",
    "street food",
    "picnics in the park",
    "leftovers",
    "farmers markets",
    "cooking with children",
    "breakfast cereal",
    "ice cream in winter",
    "learning to bake a cake",
    # work and school
    "working from home",
    "job interviews",
    "meetings at work",
    "starting a new job",
    "homework",
    "learning a second language",
    "studying for exams",
    "group projects",
    "writing an essay",
    "public speaking",
    "asking for a raise",
    "retirement",
    "volunteering",
    "teachers",
    "online courses",
    # people and feelings
    "making new friends",
    "family dinners",
    "birthday parties",
    "weddings",
    "moving away from family",
    "being a parent",
    "having a younger sibling",
    "grandparents",
    "neighbors",
    "first dates",
    "apologizing to a friend",
    "loneliness",
    "feeling nervous",
    "saying no politely",
    "meeting strangers",
    # hobbies and leisure
    "playing chess",
    "gardening",
    "knitting",
    "fishing",
    "painting with watercolors",
    "playing the guitar",
    "reading novels",
    "watching movies at the cinema",
    "video games",
    "board games",
    "photography",
    "camping in the mountains",
    "going to the beach",
    "hiking alone",
    "bird watching",
    "collecting stamps",
    "running a marathon",
    "swimming",
    "yoga",
    "dancing",
    # technology and media
    "smartphones",
    "social media",
    "email",
    "online shopping",
    "streaming music",
    "self-driving cars",
    "video calls",
    "passwords",
    "podcasts",
    "electric scooters",
    # nature, places, seasons
    "winter mornings",
    "summer heat",
    "autumn leaves",
    "thunderstorms",
    "the ocean",
    "big cities",
    "small towns",
    "traffic jams",
    "airports",
    "long train journeys",
    "road trips",
    "visiting a museum",
    "zoos",
    "hot weather",
    "snow days",
    # animals and health
    "owning a dog",
    "cats",
    "keeping goldfish",
    "horses",
    "bees",
    "going to the dentist",
    "getting enough sleep",
    "drinking enough water",
    "catching a cold",
    "going to the gym",
    # miscellaneous everyday
    "waiting in line",
    "losing your keys",
    "getting a haircut",
    "wearing a uniform",
    "tattoos",
)

# (key, template) pairs; keys name the style in prompt ids.
STYLES: tuple[tuple[str, str], ...] = (
    ("tell", "Tell me about {topic}."),
    ("opinion", "What do you honestly think about {topic}?"),
    ("child", "Explain {topic} to a six-year-old."),
    ("technical", "Give a detailed, technical explanation of {topic}."),
    ("problems", "What are the worst things about {topic}?"),
    ("joys", "What makes {topic} wonderful?"),
    ("story", "Write a very short story about {topic}."),
    ("advice", "I have to deal with {topic} tomorrow. Any advice?"),
)

TEST_TOPIC_FRACTION = 0.2  # 25 of 125 topics


def slug(text: str) -> str:
    """Lower-case ASCII slug used in prompt ids (``cooking dinner at home`` -> ``cooking-dinner-at-home``)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def build_prompts(seed: int = 0, n_prompts: int | None = None) -> list[dict]:
    """Deterministic prompt list with a split by topic.

    Topics are shuffled with ``seed``; the first ``ceil(n_prompts / len(STYLES))`` are used, each with
    every style, and the first ``round(0.2 * topics used)`` of those (at least one when two or more are
    used) form the test split. The list is then cut to ``n_prompts``.

    Args:
        seed: shuffles the topic order (and so which topics are held out).
        n_prompts: how many prompts (default: all ``len(TOPICS) * len(STYLES)``).

    Returns:
        Dicts ``{"id", "topic", "style", "text", "split"}`` (split is ``train`` or ``test``), test first.
    """
    total = len(TOPICS) * len(STYLES)
    n_prompts = total if n_prompts is None else n_prompts
    if not 1 <= n_prompts <= total:
        raise ValueError(f"n_prompts must be in [1, {total}], got {n_prompts}")
    topics = list(TOPICS)
    random.Random(seed).shuffle(topics)
    n_topics = math.ceil(n_prompts / len(STYLES))
    topics = topics[:n_topics]
    n_test = round(TEST_TOPIC_FRACTION * n_topics)
    if n_topics >= 2:
        n_test = max(n_test, 1)
    prompts = []
    for index, topic in enumerate(topics):
        split = "test" if index < n_test else "train"
        for key, template in STYLES:
            prompts.append(
                {
                    "id": f"default-{slug(topic)}-{key}",
                    "topic": topic,
                    "style": key,
                    "text": template.format(topic=topic),
                    "split": split,
                }
            )
    return prompts[:n_prompts]
