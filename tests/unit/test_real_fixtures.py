"""The real-data fixtures (tests/fixtures/real/): what their README says about them holds, and the
``hh``, ``shp`` and ``oasst`` loaders read them in their published formats."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from upo.data.prepare import load_preferences

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "tests" / "fixtures" / "real"
HH = REAL / "hh-rlhf" / "harmless-base-test.first100.jsonl"
SHP_FIELDS = [
    "post_id",
    "domain",
    "upvote_ratio",
    "history",
    "c_root_id_A",
    "c_root_id_B",
    "created_at_utc_A",
    "created_at_utc_B",
    "score_A",
    "score_B",
    "human_ref_A",
    "human_ref_B",
    "labels",
    "seconds_difference",
    "score_ratio",
]  # fmt: skip  (stanfordnlp/SHP's columns, in its order)
OASST_FIELDS = {
    "message_id",
    "parent_id",
    "user_id",
    "created_date",
    "text",
    "role",
    "lang",
    "review_count",
    "review_result",
    "deleted",
    "rank",
    "synthetic",
    "model_name",
    "emojis",
    "labels",
    "detoxify",
    "message_tree_id",
    "tree_state",
}  # fmt: skip  (the oasst1 messages export)


def readme() -> str:
    return (REAL / "README.md").read_text(encoding="utf-8")


def test_hh_sample_is_the_file_the_readme_names():
    digest = hashlib.sha256(HH.read_bytes()).hexdigest()
    assert f"`{digest}`" in readme(), "the README must state the fixture's sha256"
    rows = [json.loads(line) for line in HH.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 100 and all(set(row) == {"chosen", "rejected"} for row in rows)
    license_text = (REAL / "hh-rlhf" / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("MIT License") and "Anthropic" in license_text


def test_hh_loader_reads_the_real_rows_and_counts_the_one_empty_reply():
    records, report = load_preferences("hh", str(HH))
    assert report.rows == 100 and report.parsed == 99
    assert report.skipped_by_reason == {"empty_response": 1}  # line 87: HH's own empty chosen reply
    assert report.first_where["empty_response"].startswith(f"{HH}:87:")
    multi_turn = [r for r in records if sum(m["role"] == "user" for m in r["prompt"]) >= 2]
    assert len(multi_turn) >= 70
    assert all(r["prompt"][-1]["role"] == "user" for r in records)


@pytest.mark.parametrize("split", ["train", "test"])
def test_shp_rows_have_the_published_columns_and_parse(split):
    path = REAL / "shp" / f"{split}.json"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert all(list(row) == SHP_FIELDS for row in rows)
    assert all(row["domain"].endswith(f"_{split}") and row["labels"] in (0, 1) for row in rows)
    for row in rows:  # SHP's label: the preferred comment scores higher and was written no earlier
        a_wins = row["labels"] == 1
        assert (row["score_A"] > row["score_B"]) == a_wins
        assert (row["created_at_utc_A"] >= row["created_at_utc_B"]) == a_wins
    records, report = load_preferences("shp", str(path), split=split, on_error="fail")
    assert report.parsed == len(records) > 0
    if split == "test":  # the train-only filters leave the test split whole
        assert report.parsed == len(rows)


def test_a_json_list_file_is_still_read(tmp_path):
    rows = [json.loads(line) for line in (REAL / "shp" / "test.json").read_text(encoding="utf-8").splitlines()]
    listed = tmp_path / "rows.json"
    listed.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    records, _ = load_preferences("shp", str(listed), split="test", on_error="fail")
    lines, _ = load_preferences("shp", str(REAL / "shp" / "test.json"), split="test", on_error="fail")
    assert [r["id"] for r in records] == [r["id"] for r in lines]


@pytest.mark.parametrize("name,split", [("train", "train"), ("validation", "test")])
def test_oasst_rows_have_the_export_fields_and_give_multi_turn_pairs(name, split):
    path = REAL / "oasst1" / f"{name}.messages.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert all(set(row) == OASST_FIELDS for row in rows)
    records, report = load_preferences("oasst", str(path), split=split, on_error="fail")
    assert report.parsed == len(records) > 0
    assert any(len(r["prompt"]) >= 3 for r in records)  # prompter, assistant, prompter: a conversation


HAND_WRITTEN = [
    ("shp", ["train.json", "test.json"]),
    ("oasst1", ["train.messages.jsonl", "validation.messages.jsonl"]),
]


@pytest.mark.parametrize("folder,outputs", HAND_WRITTEN)
def test_hand_written_rows_are_what_their_script_writes(tmp_path, folder, outputs):
    script = tmp_path / "written_by_hand.py"
    shutil.copy(REAL / folder / "written_by_hand.py", script)
    subprocess.run([sys.executable, str(script)], check=True, capture_output=True)
    for name in outputs:
        assert (tmp_path / name).read_bytes() == (REAL / folder / name).read_bytes(), name


def test_readme_labels_the_hand_written_rows():
    text = readme()
    for folder in ("shp", "oasst1"):
        assert re.search(rf"`{folder}/`[^\n]*written by hand", text), folder
