"""Preference-data loaders: raw rows of a named dataset -> records of the shared schema.

Record: ``{"id", "prompt": [messages ending with a user turn], "chosen", "rejected", "source",
"aux"?, "oracle"?}``. Each loader in ``LOADERS`` turns an iterable of raw rows (each with a
``where``: ``file:line`` or ``hub_id[split]#index``) into one *outcome* per row: a record, or a
reason the row was not used. :func:`load_preferences` adds the checks common to every dataset
(empty or identical responses, duplicates, token length) and counts every row in a
:class:`DataReport`, so ``parsed + sum(skipped_by_reason) == rows`` always holds.

Reasons come in two kinds. *Malformed* rows (``MALFORMED``: a missing field, an unparseable
dialogue, an empty or identical response, a pair too long for ``max_length``...) raise under
``on_error="fail"`` with file, line and reason, and are skipped and counted under ``"skip"``.
*Filtered* rows are removed by a dataset's documented policy (SHP's score-ratio filter, OASST
prompter turns...) and are always counted, never raised.

Sources (local JSONL/JSON files, gzip or not, hub datasets) are read by ``upo.data.sources``.
``python -m upo data-report`` prints the report; ``python -m upo prepare-data`` also scores the
auxiliary rewards (``upo.rewards.scorers``) and writes a train/test split by prompt.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

from upo.data.loaders import LOADERS, MALFORMED, DataError, DataReport, Outcome, RawRow, _fail
from upo.data.sources import read_rows


# --------------------------------------------------------------------------- driver
def _check_common(record: dict, where: str, tokenizer, max_length, max_prompt_length, truncation):
    """Checks every dataset shares; returns a failing Outcome, or (None, truncated?)."""
    for side in ("chosen", "rejected"):
        if not record[side].strip():
            return _fail(where, "empty_response", f"{side} response is empty"), False
    if record["chosen"] == record["rejected"]:
        return _fail(where, "identical_responses", "chosen == rejected"), False
    if tokenizer is None or max_length is None:
        return None, False
    from upo.data.batching import format_prompt, tokenize_pair

    prompt_len = len(tokenizer(format_prompt(tokenizer, record["prompt"]), add_special_tokens=False)["input_ids"])
    if prompt_len >= max_length:
        return _fail(where, "too_long", f"prompt alone is {prompt_len} >= max_length {max_length} tokens"), False
    pair = tokenize_pair(tokenizer, record["prompt"], record["chosen"], record["rejected"],
                         max_length, max_prompt_length)  # fmt: skip
    if pair.truncated and (truncation == "drop" or min(len(pair.chosen_ids), len(pair.rejected_ids)) == 0):
        return _fail(where, "too_long", f"needs truncation to {max_length} tokens ({truncation=})"), False
    return None, pair.truncated


def load_preferences(
    loader: str,
    source: str,
    *,
    split: str = "train",
    on_error: str = "skip",
    tokenizer=None,
    max_length: int | None = None,
    max_prompt_length: int | None = None,
    limit: int | None = None,
    data_dir: str | None = None,
    seed: int = 0,
    truncation: str = "dpo",
) -> tuple[list[dict], DataReport]:
    """Load a preference dataset as records of the shared schema, counting every row.

    Args:
        loader: a name in ``LOADERS`` (``hh``, ``shp``, ``oasst``, ``jsonl``).
        source: local file, local dataset folder, or hub id (default: the loader's hub id if "").
        split: dataset split (also selects SHP's train-only filters).
        on_error: ``"skip"`` counts malformed rows; ``"fail"`` raises :class:`DataError`.
        tokenizer, max_length, max_prompt_length: when given, pairs are tokenised with
            :func:`upo.batching.tokenize_pair`; a pair whose prompt alone reaches ``max_length`` is
            ``too_long``, one that fits after DPO truncation is kept and counted in ``truncated``.
        limit: stop once this many records are parsed (rows after that are not read or counted).
        data_dir: hub sub-folder, e.g. ``harmless-base`` for Anthropic/hh-rlhf.
        seed: seed of loader-side sampling (SHP's per-post cap).
        truncation: ``"dpo"`` keeps truncated pairs; ``"drop"`` counts them as ``too_long``.

    Returns:
        (records, report); ``parsed + sum(skipped_by_reason.values()) == rows`` always.
    """
    if on_error not in ("skip", "fail"):
        raise ValueError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    if truncation not in ("dpo", "drop"):
        raise ValueError(f"truncation must be 'dpo' or 'drop', got {truncation!r}")
    if (tokenizer is None) != (max_length is None) or (max_length is not None and max_prompt_length is None):
        raise ValueError("give tokenizer, max_length and max_prompt_length together")
    spec = LOADERS.get(loader)
    source = source or spec.hub_id or ""
    report = DataReport(truncated=0 if tokenizer is not None else None)
    undecodable: list[Outcome] = []

    def decodable(rows: Iterable[RawRow]) -> Iterator[RawRow]:
        for raw in rows:
            if raw.row is None:
                undecodable.append(_fail(raw.where, raw.reason, raw.error))
            else:
                yield raw

    records: list[dict] = []
    seen: set[str] = set()

    def account(outcome: Outcome) -> None:
        report.rows += 1
        if outcome.record is not None:
            failed, truncated = _check_common(outcome.record, outcome.where, tokenizer, max_length,
                                              max_prompt_length, truncation)  # fmt: skip
            if failed is None and outcome.record["id"] in seen:
                failed = _fail(outcome.where, "duplicate", f"id {outcome.record['id']} seen before")
            if failed is None:
                seen.add(outcome.record["id"])
                records.append(outcome.record)
                report.parsed += 1
                if truncated:
                    report.truncated += 1
                return
            outcome = failed
        if on_error == "fail" and outcome.reason in MALFORMED:
            raise DataError(f"{outcome.where}: {outcome.reason}: {outcome.detail}")
        report.skip(outcome)

    outcomes = spec.parse(decodable(read_rows(spec, source, split, data_dir)), split, seed)
    for outcome in outcomes:
        while undecodable:
            account(undecodable.pop(0))
        account(outcome)
        if limit is not None and report.parsed >= limit:
            break
    while undecodable:  # rows already read are counted even when the limit stopped the load
        account(undecodable.pop(0))
    return records, report


def prompt_key(record: dict) -> str:
    """Identity of a record's prompt (the split unit: one prompt never lands in two splits)."""
    return json.dumps(record["prompt"], ensure_ascii=False, sort_keys=True)


# --------------------------------------------------------------------------- prepare
def split_by_prompt(records: list[dict], test_size: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Deterministic split by prompt: prompts are shuffled with ``seed`` and taken into the test
    split until it holds at least ``test_size`` records (so it may exceed it by the pairs of one
    prompt). Both splits keep the input order."""
    import random

    keys = list(dict.fromkeys(prompt_key(r) for r in records))
    random.Random(seed).shuffle(keys)
    sizes: dict[str, int] = defaultdict(int)
    for record in records:
        sizes[prompt_key(record)] += 1
    test_keys, count = set(), 0
    for key in keys:
        if count >= test_size:
            break
        test_keys.add(key)
        count += sizes[key]
    if test_size > 0 and len(test_keys) == len(keys):
        raise ValueError(f"--test-size {test_size} leaves no training prompts ({len(keys)} prompts in all)")
    train = [r for r in records if prompt_key(r) not in test_keys]
    test = [r for r in records if prompt_key(r) in test_keys]
    return train, test


def add_aux_scores(records: list[dict], names: list[str], cache=None) -> int:
    """Fill ``record["aux"][side][name]`` for every record, side and reward, in place; scores
    already present are kept. Returns the number of scores computed (the rest were reused)."""
    from upo.rewards.scorers import score_texts

    computed = 0
    for name in names:
        todo = [(r, side) for r in records for side in ("chosen", "rejected")
                if name not in r.get("aux", {}).get(side, {})]  # fmt: skip
        if not todo:
            continue
        prompts = [r["prompt"][-1]["content"] for r, _ in todo]
        values = score_texts(name, [r[side] for r, side in todo], prompts=prompts, cache=cache)
        for (record, side), value in zip(todo, values, strict=True):
            record.setdefault("aux", {}).setdefault(side, {})[name] = float(value)
        computed += len(todo)
    return computed


def prepare_cli_args(entry: dict) -> list[str]:
    """The ``prepare-data`` arguments of one ``datasets:`` entry of an experiment config.

    One list item per shell word, each value glued to its flag (``--source=VALUE``): the workflow
    quotes every item (``{params.args:q}``), so a value with spaces, ``$(...)`` or a leading dash
    reaches argparse as exactly one value and is never run by the shell.
    """
    args = [f"--loader={entry['loader']}", f"--source={entry['source']}"]
    if entry.get("test_from"):
        args.append(f"--test-from={entry['test_from']}")
        if entry.get("test_split"):
            args.append(f"--test-split={entry['test_split']}")
    else:
        args.append(f"--test-size={entry.get('test_size', 200)}")
    for key in ("split", "data_dir", "limit", "on_error"):
        if key in entry:
            args.append(f"--{key.replace('_', '-')}={entry[key]}")
    if entry.get("aux"):
        args.append(f"--aux={','.join(entry['aux'])}")
    return args


def _add_common_args(parser) -> None:
    parser.add_argument("--loader", required=True, help=f"one of: {', '.join(LOADERS.available())}")
    parser.add_argument("--on-error", choices=["skip", "fail"], default="skip")
    parser.add_argument("--split", default="train", help="dataset split (default train)")
    parser.add_argument("--data-dir", default=None, help="hub sub-folder, e.g. harmless-base")
    parser.add_argument("--limit", type=int, default=None, help="stop after N parsed records")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling and of the split")
    parser.add_argument("--tokenizer", default=None, help="HF tokenizer folder for length checks")
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--max-prompt-length", type=int, default=None)
    parser.add_argument("--truncation", choices=["dpo", "drop"], default="dpo")


def _load_from_args(args, source: str, split: str):
    tokenizer = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    return load_preferences(
        args.loader, source, split=split, on_error=args.on_error, tokenizer=tokenizer,
        max_length=args.max_length, max_prompt_length=args.max_prompt_length, limit=args.limit,
        data_dir=args.data_dir, seed=args.seed, truncation=args.truncation,
    )  # fmt: skip


def _one_line(error: Exception) -> str:
    """The message of an error (a KeyError's own ``str`` would add quotes)."""
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


def main_data_report(argv: list[str]) -> int:
    """``python -m upo data-report --loader NAME PATH``: print one JSON object of counts."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m upo data-report", description=main_data_report.__doc__)
    parser.add_argument("source", help="local file, dataset folder or hub id")
    _add_common_args(parser)
    args = parser.parse_args(argv)
    try:
        _, report = _load_from_args(args, args.source, args.split)
    except (DataError, FileNotFoundError, ValueError, KeyError) as error:
        print(f"data-report: {_one_line(error)}", file=sys.stderr)
        return 1
    for reason, where in sorted(report.first_where.items()):
        print(f"first {reason}: {where}", file=sys.stderr)
    print(json.dumps(report.to_dict(), sort_keys=True))
    return 0


def main_prepare(argv: list[str]) -> int:
    """``python -m upo prepare-data``: load, check, score auxiliary rewards, split by prompt, write
    ``DIR/train.jsonl``, ``DIR/test.jsonl`` and ``DIR/report.json``."""
    import argparse
    import sys

    from upo.io import write_json, write_jsonl
    from upo.rewards.cache import RewardCache
    from upo.rewards.scorers import describe_rewards

    parser = argparse.ArgumentParser(prog="python -m upo prepare-data", description=main_prepare.__doc__)
    parser.add_argument("--source", default="", help="local file, dataset folder or hub id")
    parser.add_argument("--out-dir", required=True)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--test-size", type=int, help="records (whole prompts) held out for test")
    group.add_argument("--test-from", help="separate test source (read with --test-split)")
    parser.add_argument("--test-split", default="test", help="split of --test-from (default test)")
    parser.add_argument("--aux", default="", help="comma-separated reward names to score")
    parser.add_argument("--reward-cache", default=None, help="sqlite score cache shared across runs")
    _add_common_args(parser)
    args = parser.parse_args(argv)
    aux = [name for name in args.aux.split(",") if name]
    try:
        records, report = _load_from_args(args, args.source, args.split)
        reports = {"train": report.to_dict()}
        if args.test_from:
            test, test_report = _load_from_args(args, args.test_from, args.test_split)
            reports["test"] = test_report.to_dict()
            test_keys = {prompt_key(r) for r in test}
            train = [r for r in records if prompt_key(r) not in test_keys]
            reports["train"]["removed_prompt_in_test"] = len(records) - len(train)
        else:
            train, test = split_by_prompt(records, args.test_size, args.seed)
        if not train or not test:
            raise ValueError(f"empty split: {len(train)} train and {len(test)} test records")
        cache = RewardCache(args.reward_cache) if args.reward_cache else None
        computed = add_aux_scores(train + test, aux, cache=cache)
    except (DataError, FileNotFoundError, ValueError, KeyError) as error:
        print(f"prepare-data: {_one_line(error)}", file=sys.stderr)
        return 1
    out = Path(args.out_dir)
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "test.jsonl", test)
    rewards_info = [r for r in describe_rewards() if r["name"] in aux]
    write_json(out / "report.json", {
        "loader": args.loader, "source": args.source or LOADERS.get(args.loader).hub_id,
        "split": args.split, "data_dir": args.data_dir, "test_from": args.test_from,
        "seed": args.seed,
        "n_train": len(train), "n_test": len(test), "aux": aux, "rewards": rewards_info,
        "aux_scores_computed": computed, "load": reports,
    })  # fmt: skip
    print(json.dumps({"train": len(train), "test": len(test), **reports["train"]}, sort_keys=True))
    return 0
