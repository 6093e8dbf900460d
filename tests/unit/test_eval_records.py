"""eval_records: a seeded subset stratified over prompt clusters, the same for every run, never file order."""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

import pytest

from upo.evaluate.generation import eval_records


def configs(path, max_prompts, seed=0):
    return SimpleNamespace(data=SimpleNamespace(test=str(path))), SimpleNamespace(max_prompts=max_prompts, seed=seed)


@pytest.fixture
def test_file(tmp_path):
    # 10 topics x 8 prompts in file order, topic by topic (as the shipped testbed)
    rows = [{"id": f"t{t}-s{s}", "cluster": f"t{t}", "prompt": "x"} for t in range(10) for s in range(8)]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_subset_covers_every_cluster_evenly(test_file):
    records = eval_records(*configs(test_file, 25))
    counts = Counter(r["cluster"] for r in records)
    assert len(records) == 25 and len(counts) == 10  # the first 25 in file order would cover 4 topics
    assert sorted(set(counts.values())) == [2, 3]
    order = [int(r["id"].split("-")[0][1:]) * 8 + int(r["id"].split("-s")[1]) for r in records]
    assert order == sorted(order)  # file order kept within the subset


def test_subset_is_seeded_and_shared(test_file):
    first = [r["id"] for r in eval_records(*configs(test_file, 20, seed=3))]
    assert first == [r["id"] for r in eval_records(*configs(test_file, 20, seed=3))]
    assert first != [r["id"] for r in eval_records(*configs(test_file, 20, seed=4))]


def test_all_records_when_no_cap_or_cap_above_size(test_file):
    assert len(eval_records(*configs(test_file, None))) == 80
    assert len(eval_records(*configs(test_file, 500))) == 80


def test_records_without_clusters_are_a_random_subset(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i:02d}"}) + "\n" for i in range(40)))
    ids = [r["id"] for r in eval_records(*configs(path, 10))]
    assert len(ids) == 10 and ids != [f"p{i:02d}" for i in range(10)]
