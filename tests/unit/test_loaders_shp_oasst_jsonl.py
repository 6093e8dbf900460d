"""The shp, oasst and jsonl loaders: field checks, labels, pair caps, clusters (hh and the CLIs: test_data)."""

from __future__ import annotations

import pytest

from tests.unit.test_data import check_invariant, write_rows
from upo.data.loaders import DataError
from upo.data.prepare import load_preferences


# --------------------------------------------------------------------------- shp
def shp_row(post, a, b, label, sa, sb, history="What should I read?"):
    return {"post_id": post, "domain": "books_train", "upvote_ratio": 0.9, "history": history,
            "c_root_id_A": "x", "c_root_id_B": "y", "created_at_utc_A": 1, "created_at_utc_B": 2,
            "score_A": sa, "score_B": sb, "human_ref_A": a, "human_ref_B": b, "labels": label,
            "seconds_difference": 1.0, "score_ratio": max(sa / sb, sb / sa)}  # fmt: skip


def test_shp_filters_and_labels(tmp_path):
    rows = [
        shp_row("p1", "Try  Dune.", "Read nothing.", 1, 10, 2),  # A preferred, ratio 5
        shp_row("p1", "Meh", "Try Borges.", 0, 3, 9),  # B preferred, ratio 3
        shp_row("p1", "x", "y", 1, 3, 2),  # ratio 1.5 < 2
        *[shp_row("p2", f"a{i}", f"b{i}", 1, 20, 1, history="Other post") for i in range(7)],
        {"post_id": "p3", "history": "h", "human_ref_A": "a", "human_ref_B": "b", "labels": 2},
    ]
    path = write_rows(tmp_path / "shp.jsonl", rows)
    records, report = load_preferences("shp", str(path), split="train", seed=0)
    check_invariant(report)
    assert report.skipped_by_reason == {"low_score_ratio": 1, "over_pair_cap": 2, "bad_field": 1}
    assert records[0]["chosen"] == "Try Dune." and records[0]["rejected"] == "Read nothing."
    assert records[1]["chosen"] == "Try Borges." and records[1]["rejected"] == "Meh"
    assert sum(r["prompt"][0]["content"] == "Other post" for r in records) == 5
    again, _ = load_preferences("shp", str(path), split="train", seed=0)
    assert [r["id"] for r in again] == [r["id"] for r in records]  # seeded cap is deterministic
    _, test_report = load_preferences("shp", str(path), split="test")
    assert test_report.skipped_by_reason == {"bad_field": 1}  # filters apply to train only


# --------------------------------------------------------------------------- oasst
def msg(mid, parent, role, text, rank=None, lang="en"):
    return {"message_id": mid, "parent_id": parent, "user_id": "u", "created_date": "2023",
            "text": text, "role": role, "lang": lang, "review_count": 3, "review_result": True,
            "deleted": False, "rank": rank, "synthetic": False, "model_name": None,
            "message_tree_id": "t", "tree_state": "ready_for_export"}  # fmt: skip


def test_oasst_ranked_sibling_pairs(tmp_path):
    rows = [
        msg("q", None, "prompter", "Explain  gravity."),
        msg("a0", "q", "assistant", "Mass attracts mass.", rank=0),
        msg("a1", "q", "assistant", "It is magic.", rank=1),
        msg("a2", "q", "assistant", "No idea.", rank=2),
        msg("f", "a0", "prompter", "Why?", rank=0),
        msg("f0", "f", "assistant", "Spacetime curves.", rank=0),
        msg("f1", "f", "assistant", "Because.", rank=1),
        msg("u", "f", "assistant", "Unranked reply."),
        msg("de", None, "prompter", "Hallo", lang="de"),
        msg("orphan", "gone", "assistant", "Lost", rank=1),
        msg("lonely", "q", "assistant", "Gap", rank=5),
    ]
    path = write_rows(tmp_path / "oasst.jsonl", rows)
    records, report = load_preferences("oasst", str(path))
    check_invariant(report)
    assert report.rows == len(rows) and report.parsed == 3
    assert report.skipped_by_reason == {
        "prompter_turn": 2, "top_ranked": 2, "unranked": 1, "not_english": 1,
        "missing_parent": 1, "no_better_sibling": 1,
    }  # fmt: skip
    pairs = {(r["chosen"], r["rejected"]) for r in records}
    assert pairs == {("Mass attracts mass.", "It is magic."), ("It is magic.", "No idea."),
                     ("Spacetime curves.", "Because.")}  # fmt: skip
    deep = next(r for r in records if r["chosen"] == "Spacetime curves.")
    assert deep["prompt"] == [
        {"role": "user", "content": "Explain gravity."},  # spaces collapsed as in HALOs
        {"role": "assistant", "content": "Mass attracts mass."},
        {"role": "user", "content": "Why?"},
    ]


# --------------------------------------------------------------------------- jsonl
def test_jsonl_loader_keeps_aux_and_oracle(tmp_path):
    rows = [
        {"id": "r1", "prompt": "Say hi", "chosen": "Hi!", "rejected": "No.",
         "aux": {"chosen": {"readability": 0.9}, "rejected": {"readability": 0.1}},
         "oracle": {"chosen": 0.8, "rejected": 0.2}},
        {"prompt": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hey"}],
         "chosen": "Hello", "rejected": "Go away", "source": "mine"},
        {"prompt": [{"role": "assistant", "content": "x"}], "chosen": "a", "rejected": "b"},
        {"prompt": "p", "chosen": "a", "rejected": "b", "aux": [1, 2]},
        {"prompt": "p", "chosen": 3, "rejected": "b"},
        {"chosen": "a", "rejected": "b"},
    ]  # fmt: skip
    path = write_rows(tmp_path / "prefs.jsonl", rows)
    records, report = load_preferences("jsonl", str(path))
    check_invariant(report)
    assert report.skipped_by_reason == {
        "unparseable_dialogue": 1,
        "bad_field": 2,
        "missing_field": 1,
    }
    assert records[0]["id"] == "r1" and records[0]["oracle"] == {"chosen": 0.8, "rejected": 0.2}
    assert records[0]["prompt"] == [{"role": "user", "content": "Say hi"}]
    assert records[1]["source"] == "mine" and records[1]["id"].startswith("mine-")
    with pytest.raises(DataError, match=r"prefs\.jsonl:3: unparseable_dialogue"):
        load_preferences("jsonl", str(path), on_error="fail")


def test_jsonl_loader_keeps_a_prompt_cluster(tmp_path):
    rows = [
        {"id": "a", "prompt": "Tell me about tea.", "chosen": "Tea.", "rejected": "No.", "cluster": "tea"},
        {"id": "b", "prompt": "Tea facts?", "chosen": "Leaves.", "rejected": "No.", "cluster": ""},
        {"id": "c", "prompt": "Hi", "chosen": "Hi!", "rejected": "No."},
    ]
    records, report = load_preferences("jsonl", str(write_rows(tmp_path / "prefs.jsonl", rows)))
    assert report.skipped_by_reason == {"bad_field": 1}
    assert records[0]["cluster"] == "tea" and "cluster" not in records[1]
