"""Preference loaders (hh, shp, oasst, jsonl), report counts, on_error, length checks and CLIs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from upo.data.loaders import DataError, parse_hh_dialogue, render_hh_dialogue
from upo.data.prepare import (
    load_preferences,
    main_data_report,
    main_prepare,
    prompt_key,
    split_by_prompt,
)
from upo.io import read_jsonl

# The first 100 rows of Anthropic HH-RLHF harmless-base/test, unmodified (tests/fixtures/real/README.md)
HH_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures/real/hh-rlhf/harmless-base-test.first100.jsonl"


def write_rows(path: Path, rows: list, raw_lines: tuple[str, ...] = ()) -> Path:
    lines = [json.dumps(r) for r in rows] + list(raw_lines)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def check_invariant(report) -> None:
    assert report.parsed + sum(report.skipped_by_reason.values()) == report.rows


def hh(prompt: str, reply: str) -> str:
    return f"\n\nHuman: {prompt}\n\nAssistant: {reply}"


# --------------------------------------------------------------------------- hh
def test_hh_real_rows_parse_and_reassemble():
    """Every real row but the one with an empty chosen reply parses, and renders back to its exact text."""
    raw = read_jsonl(HH_FIXTURE)
    records, report = load_preferences("hh", str(HH_FIXTURE))
    check_invariant(report)
    assert report.rows == len(raw) == 100 and report.parsed == len(records) == 99
    rendered = {
        (render_hh_dialogue(r["prompt"], r["chosen"]), render_hh_dialogue(r["prompt"], r["rejected"])) for r in records
    }
    assert sum((row["chosen"], row["rejected"]) in rendered for row in raw) == 99
    for record in records:
        assert record["prompt"][-1]["role"] == "user" and record["source"] == "hh"


def test_hh_dialogue_parsing_and_errors():
    text = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: How are you?\n\nAssistant:  Fine. "
    prompt, reply = parse_hh_dialogue(text)
    assert prompt == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"},
    ]
    assert reply == " Fine. "  # verbatim after the one separating space
    assert render_hh_dialogue(prompt, reply) == text
    for bad in ["Hi\n\nHuman: x\n\nAssistant: y", "\n\nHuman: x", "\n\nHuman:x\n\nAssistant: y",
                "\n\nHuman: x\n\nAssistant: y\n\nAssistant: z"]:  # fmt: skip
        with pytest.raises(ValueError):
            parse_hh_dialogue(bad)


def test_hh_consecutive_same_role_turns_stay_in_the_shared_prompt(tmp_path):
    """Real HH rows hold two Assistant turns in a row in the shared context (HALOs keeps them)."""
    shared = (
        "\n\nHuman: Can you help me fix my bike?"
        "\n\nAssistant: Sure, what is wrong with it?"
        "\n\nAssistant: Is it the chain or the brakes?"
        "\n\nHuman: The chain keeps falling off."
        "\n\nHuman: Also it squeaks."
    )
    rows = [
        {"chosen": shared + "\n\nAssistant: Tighten the chain and oil it.",
         "rejected": shared + "\n\nAssistant: Buy a new bike."},
        # the same turns, but the rejected side's shared context really differs: skipped
        {"chosen": shared + "\n\nAssistant: Oil it.",
         "rejected": shared.replace("the brakes", "the gears") + "\n\nAssistant: Oil it now."},
    ]  # fmt: skip
    path = write_rows(tmp_path / "hh.jsonl", rows)
    records, report = load_preferences("hh", str(path))
    check_invariant(report)
    assert report.parsed == 1 and report.skipped_by_reason == {"prompt_mismatch": 1}
    roles = [m["role"] for m in records[0]["prompt"]]
    assert roles == ["user", "assistant", "assistant", "user", "user"]
    assert records[0]["prompt"][2]["content"] == "Is it the chain or the brakes?"
    assert records[0]["chosen"] == "Tighten the chain and oil it." and records[0]["rejected"] == "Buy a new bike."
    assert render_hh_dialogue(records[0]["prompt"], records[0]["chosen"]) == rows[0]["chosen"]


def test_non_utf8_lines_counted_with_file_and_line(tmp_path):
    good = json.dumps({"chosen": hh("q1", "good"), "rejected": hh("q1", "bad")}).encode()
    bad = json.dumps({"chosen": hh("q2", "caf\u00e9"), "rejected": hh("q2", "no")}).encode()
    bad = bad.replace(b"\\u00e9", b"\xe9")  # Latin-1 e-acute: not UTF-8
    path = tmp_path / "latin.jsonl"
    path.write_bytes(good + b"\n" + bad + b"\n" + good.replace(b"q1", b"q3") + b"\n")
    records, report = load_preferences("hh", str(path))
    check_invariant(report)
    assert report.rows == 3 and report.parsed == 2 and report.skipped_by_reason == {"invalid_utf8": 1}
    assert report.first_where["invalid_utf8"].startswith(f"{path}:2: not UTF-8")
    with pytest.raises(DataError, match=r"latin\.jsonl:2: invalid_utf8"):
        load_preferences("hh", str(path), on_error="fail")
    listing = tmp_path / "latin.json"
    listing.write_bytes(b"[\n" + good + b",\n" + bad + b"\n]")
    with pytest.raises(ValueError, match=r"latin\.json:3: not UTF-8"):
        load_preferences("hh", str(listing))


def test_gzip_recognised_by_content_not_name(tmp_path):
    rows = [{"chosen": hh(f"q{i}", "yes"), "rejected": hh(f"q{i}", "no")} for i in range(3)]
    plain = write_rows(tmp_path / "rows.jsonl", rows)
    hidden = tmp_path / "rows.jsonl"  # gzip content under a plain name
    data = gzip.compress(plain.read_bytes())
    hidden.write_bytes(data)
    assert load_preferences("hh", str(hidden))[1].parsed == 3
    named = tmp_path / "plain.jsonl.gz"  # a .gz name over plain text
    named.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert load_preferences("hh", str(named))[1].parsed == 3
    listing = tmp_path / "rows.json.gz"
    listing.write_bytes(gzip.compress(json.dumps(rows).encode()))
    assert load_preferences("hh", str(listing))[1].parsed == 3
    (tmp_path / "cut.jsonl").write_bytes(data[: len(data) // 2])  # a truncated gzip file
    with pytest.raises(ValueError, match=r"cut\.jsonl: corrupt gzip"):
        load_preferences("hh", str(tmp_path / "cut.jsonl"))


def test_unknown_loader_and_missing_hub_id_are_one_line(tmp_path, capsys, monkeypatch):
    import datasets

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nobody/none' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    out = ["--out-dir", str(tmp_path / "out"), "--test-size", "2"]
    assert main_prepare(["--loader", "nope", "--source", "x.jsonl", *out]) == 1
    err = capsys.readouterr().err
    assert err == "prepare-data: unknown preference loader 'nope'; known: hh, jsonl, oasst, shp\n"
    assert main_prepare(["--loader", "hh", "--source", "nobody/none", *out]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nobody/none[train]: cannot load with datasets: ConnectionError" in err
    assert main_data_report(["--loader", "nope", "x.jsonl"]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_prepare_cli_args_keep_each_value_one_argument():
    from upo.data.prepare import prepare_cli_args

    entry = {"loader": "jsonl", "source": "my data/x$(touch MARKER).jsonl", "split": "-h", "limit": 3,
             "aux": ["brevity"]}  # fmt: skip
    assert prepare_cli_args(entry) == [
        "--loader=jsonl", "--source=my data/x$(touch MARKER).jsonl", "--test-size=200",
        "--split=-h", "--limit=3", "--aux=brevity",
    ]  # fmt: skip


def test_hh_malformed_rows_counted(tmp_path):
    rows = [
        {"chosen": hh("q1", "good"), "rejected": hh("q1", "bad")},
        {"chosen": hh("q2", "same"), "rejected": hh("q2", "same")},  # identical
        {"chosen": hh("q3", ""), "rejected": hh("q3", "bad")},  # empty chosen
        {"chosen": hh("q4", "a"), "rejected": hh("other", "b")},  # prompts differ
        {"chosen": "no turns at all", "rejected": hh("q5", "b")},  # unparseable
        {"rejected": hh("q6", "b")},  # missing chosen
        {"chosen": hh("q1", "good"), "rejected": hh("q1", "bad")},  # duplicate of row 1
    ]
    path = write_rows(tmp_path / "hh.jsonl.gz", rows, raw_lines=("{not json",))
    records, report = load_preferences("hh", str(path))
    check_invariant(report)
    assert report.rows == 8 and report.parsed == 1
    assert report.skipped_by_reason == {
        "identical_responses": 1, "empty_response": 1, "prompt_mismatch": 1,
        "unparseable_dialogue": 1, "missing_field": 1, "duplicate": 1, "invalid_json": 1,
    }  # fmt: skip
    assert records[0]["chosen"] == "good" and records[0]["prompt"] == [{"role": "user", "content": "q1"}]
    with pytest.raises(DataError, match=r"hh\.jsonl\.gz:2: identical_responses"):
        load_preferences("hh", str(path), on_error="fail")


def test_hh_dataset_folder_via_datasets(tmp_path):
    """The hub code path (datasets.load_dataset with data_dir) on a local dataset folder."""
    folder = tmp_path / "hh-rlhf"
    (folder / "harmless-base").mkdir(parents=True)
    (folder / "helpful-base").mkdir(parents=True)
    rows = [{"chosen": hh(f"q{i}", "yes"), "rejected": hh(f"q{i}", "no")} for i in range(3)]
    write_rows(folder / "harmless-base" / "train.jsonl", rows)
    write_rows(folder / "harmless-base" / "test.jsonl", rows[:1])
    write_rows(folder / "helpful-base" / "train.jsonl", rows[:2])
    records, report = load_preferences("hh", str(folder), data_dir="harmless-base", split="train")
    assert report.parsed == 3 and [r["prompt"][0]["content"] for r in records] == ["q0", "q1", "q2"]
    _, report = load_preferences("hh", str(folder), data_dir="harmless-base", split="test")
    assert report.rows == 1


def test_limit_stops_reading(tmp_path):
    rows = [{"chosen": hh(f"q{i}", "yes"), "rejected": hh(f"q{i}", "no")} for i in range(10)]
    path = write_rows(tmp_path / "hh.jsonl", rows)
    records, report = load_preferences("hh", str(path), limit=4)
    assert len(records) == 4 and report.rows == 4


def test_unknown_loader_and_missing_file(tmp_path):
    with pytest.raises(KeyError, match="hh, jsonl, oasst, shp"):
        load_preferences("nope", "x.jsonl")
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_preferences("hh", str(tmp_path / "missing.jsonl"))


# --------------------------------------------------------------------------- lengths
@pytest.fixture(scope="module")
def word_tokenizer():
    """Word-level tokenizer: prompt = <|user|> words <|assistant|>; response = words + <eos>."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<unk>", "<|user|>", "<|assistant|>"])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    specials = {"eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        additional_special_tokens=["<|user|>", "<|assistant|>"],
        **specials,
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    return tokenizer


def test_too_long_and_truncated(tmp_path, word_tokenizer):
    words = lambda n: " ".join(["w"] * n)  # noqa: E731
    rows = [
        {"prompt": words(3), "chosen": words(3), "rejected": words(2)},  # 5 + 4 = 9 <= 10: fits
        {"prompt": words(6), "chosen": words(4), "rejected": words(1)},  # 8 + 5 > 10: truncated
        {"prompt": words(9), "chosen": "a", "rejected": "b"},  # prompt alone 11 >= 10: too long
    ]
    path = write_rows(tmp_path / "len.jsonl", rows)
    kwargs = {"tokenizer": word_tokenizer, "max_length": 10, "max_prompt_length": 4}
    records, report = load_preferences("jsonl", str(path), **kwargs)
    check_invariant(report)
    assert report.to_dict() == {
        "rows": 3,
        "parsed": 2,
        "skipped_by_reason": {"too_long": 1},
        "truncated": 1,
    }
    _, dropped = load_preferences("jsonl", str(path), truncation="drop", **kwargs)
    assert dropped.skipped_by_reason == {"too_long": 2} and dropped.truncated == 0
    with pytest.raises(DataError, match=r"len\.jsonl:3: too_long"):
        load_preferences("jsonl", str(path), on_error="fail", **kwargs)
    with pytest.raises(ValueError, match="together"):
        load_preferences("jsonl", str(path), tokenizer=word_tokenizer, max_length=10)


# --------------------------------------------------------------------------- split and CLIs
def test_split_by_prompt_is_disjoint_and_seeded():
    prompts = [[{"role": "user", "content": f"p{i % 7}"}] for i in range(30)]
    records = [{"prompt": p, "chosen": str(i), "rejected": "x"} for i, p in enumerate(prompts)]
    train, test = split_by_prompt(records, 8, seed=3)
    assert len(train) + len(test) == 30 and len(test) >= 8
    assert not {prompt_key(r) for r in train} & {prompt_key(r) for r in test}
    assert split_by_prompt(records, 8, seed=3) == (train, test)


def test_data_report_cli_invariant(tmp_path, capsys):
    rows = [{"chosen": hh(f"q{i}", "yes"), "rejected": hh(f"q{i}", "yes" if i == 2 else "no")}
            for i in range(5)]  # fmt: skip
    path = write_rows(tmp_path / "hh.jsonl", rows, raw_lines=("[1, 2]",))
    assert main_data_report(["--loader", "hh", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"rows", "parsed", "skipped_by_reason"}
    assert out["parsed"] + sum(out["skipped_by_reason"].values()) == out["rows"] == 6
    assert main_data_report(["--loader", "hh", str(path), "--on-error", "fail"]) == 1
    assert "hh.jsonl:3: identical_responses" in capsys.readouterr().err


def test_prepare_data_cli(tmp_path, capsys):
    rows = [{"id": f"r{i}", "prompt": f"topic {i % 6}", "chosen": "I love this lovely day.",
             "rejected": f"Terrible {i}.", "oracle": {"chosen": 1.0, "rejected": 0.0},
             **({"aux": {"chosen": {"brevity": 0.123}}} if i == 0 else {})}
            for i in range(18)]  # fmt: skip
    path = write_rows(tmp_path / "prefs.jsonl", rows)
    out = tmp_path / "out"
    argv = ["--loader", "jsonl", "--source", str(path), "--out-dir", str(out), "--test-size", "5",
            "--aux", "brevity,sentiment", "--seed", "1",
            "--reward-cache", str(tmp_path / "c.sqlite")]  # fmt: skip
    assert main_prepare(argv) == 0
    train, test = read_jsonl(out / "train.jsonl"), read_jsonl(out / "test.jsonl")
    report = json.loads((out / "report.json").read_text())
    assert len(train) + len(test) == 18 and report["n_test"] == len(test) >= 5
    assert not {prompt_key(r) for r in train} & {prompt_key(r) for r in test}
    for record in train + test:
        assert set(record["aux"]["chosen"]) == set(record["aux"]["rejected"]) == {"brevity", "sentiment"}
        assert record["oracle"] == {"chosen": 1.0, "rejected": 0.0}
    first = next(r for r in train + test if r["id"] == "r0")
    assert first["aux"]["chosen"]["brevity"] == 0.123  # existing score reused
    assert report["aux_scores_computed"] == 18 * 4 - 1
    assert {r["name"] for r in report["rewards"]} == {"brevity", "sentiment"}
    # deterministic: a second run writes the same files
    snapshot = (out / "train.jsonl").read_text()
    assert main_prepare(argv) == 0 and (out / "train.jsonl").read_text() == snapshot
    # --test-from: prompts of the test source are removed from train
    test_path = write_rows(tmp_path / "test.jsonl", rows[:2])
    argv2 = ["--loader", "jsonl", "--source", str(path), "--out-dir", str(tmp_path / "o2"),
             "--test-from", str(test_path)]  # fmt: skip
    assert main_prepare(argv2) == 0
    report2 = json.loads((tmp_path / "o2" / "report.json").read_text())
    assert report2["n_test"] == 2 and report2["n_train"] == 18 - 6  # topics 0 and 1: 3 rows each
