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

Sources: a local ``.jsonl`` / ``.jsonl.gz`` / ``.json`` file (read line by line here), or a hub
dataset id or local dataset folder, read with ``datasets.load_dataset(source, data_dir, split)``.
``python -m upo data-report`` prints the report; ``python -m upo prepare-data`` also scores the
auxiliary rewards (``upo.rewards``) and writes a train/test split by prompt.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from upo.registry import Registry

MALFORMED = frozenset(
    {"invalid_json", "missing_field", "bad_field", "unparseable_dialogue", "prompt_mismatch",
     "empty_response", "identical_responses", "too_long"}
)  # fmt: skip


@dataclass
class RawRow:
    where: str  # "path:line" or "hub_id[split]#index"
    row: dict | None  # None when the line could not be decoded
    error: str = ""


@dataclass
class Outcome:
    where: str
    record: dict | None = None
    reason: str = ""  # set when record is None
    detail: str = ""


class DataError(ValueError):
    """A malformed row under ``on_error="fail"``; the message names file/line and reason."""


@dataclass
class DataReport:
    """Counts of one load: every row read is either parsed or skipped for exactly one reason."""

    rows: int = 0
    parsed: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    truncated: int | None = None  # pairs kept after DPO truncation (None: no tokenizer given)
    first_where: dict[str, str] = field(default_factory=dict)  # reason -> first row with it

    def skip(self, outcome: Outcome) -> None:
        self.skipped_by_reason[outcome.reason] = self.skipped_by_reason.get(outcome.reason, 0) + 1
        self.first_where.setdefault(outcome.reason, f"{outcome.where}: {outcome.detail}")

    def to_dict(self) -> dict:
        out = {
            "rows": self.rows,
            "parsed": self.parsed,
            "skipped_by_reason": dict(self.skipped_by_reason),
        }
        if self.truncated is not None:
            out["truncated"] = self.truncated
        return out


@dataclass(frozen=True)
class Loader:
    """A dataset: how to read it from the hub and how to turn its rows into outcomes."""

    name: str
    parse: Callable[[Iterable[RawRow], str, int], Iterator[Outcome]]  # (rows, split, seed)
    hub_id: str | None = None
    hub_split: Callable[[str], str] = staticmethod(lambda split: split)


LOADERS: Registry[Loader] = Registry("preference loader")


def _fail(where: str, reason: str, detail: str) -> Outcome:
    return Outcome(where, None, reason, detail)


def _record_id(source: str, prompt: list[dict], chosen: str, rejected: str) -> str:
    text = json.dumps([prompt, chosen, rejected], ensure_ascii=False, sort_keys=True)
    return f"{source}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}"


def _record(source: str, prompt: list[dict], chosen: str, rejected: str, **extra) -> dict:
    record = {"id": _record_id(source, prompt, chosen, rejected), "prompt": prompt}
    record.update(chosen=chosen, rejected=rejected, source=source, **extra)
    return record


def _collapse_spaces(text: str) -> str:
    """HALOs' ``Example.remove_extra_spaces``: runs of spaces/tabs become one space."""
    return re.sub(r"[ \t]{2,}", " ", text)


def _strings(row: dict, where: str, *keys: str) -> Outcome | None:
    for key in keys:
        if key not in row or row[key] is None:
            return _fail(where, "missing_field", f"no {key!r}")
        if not isinstance(row[key], str):
            return _fail(where, "bad_field", f"{key!r} is {type(row[key]).__name__}, not a string")
    return None


# --------------------------------------------------------------------------- hh
HH_MARKER = re.compile(r"(\n\nHuman:|\n\nAssistant:)")
HH_ROLES = {"\n\nHuman:": "user", "\n\nAssistant:": "assistant"}
HH_LABELS = {"user": "Human", "assistant": "Assistant"}


def parse_hh_dialogue(text: str) -> tuple[list[dict], str]:
    """Split an HH transcript into prompt messages and the final assistant reply.

    Each turn is ``"\\n\\n{Human|Assistant}: " + content``; content is kept verbatim (no strip,
    unlike HALOs' ``get_hh``) so that ``render_hh_dialogue(*parse_hh_dialogue(t)) == t``.

    Raises:
        ValueError: text before the first turn, a marker without the following space, turns
            that do not alternate from Human, or a transcript not ending with an Assistant turn.
    """
    pieces = HH_MARKER.split(text)
    if pieces[0] != "":
        raise ValueError(f"text before the first turn: {pieces[0][:40]!r}")
    turns = []
    for marker, body in zip(pieces[1::2], pieces[2::2], strict=True):
        if body and not body.startswith(" "):
            raise ValueError(f"no space after {marker.strip()!r}")
        turns.append({"role": HH_ROLES[marker], "content": body[1:]})
    if not turns or turns[-1]["role"] != "assistant":
        raise ValueError("does not end with an Assistant turn")
    for i, turn in enumerate(turns):
        if turn["role"] != ("user" if i % 2 == 0 else "assistant"):
            raise ValueError(f"turn {i + 1} is {turn['role']!r}: turns do not alternate")
    return turns[:-1], turns[-1]["content"]


def render_hh_dialogue(prompt: list[dict], response: str) -> str:
    """Inverse of :func:`parse_hh_dialogue`."""
    turns = [*prompt, {"role": "assistant", "content": response}]
    return "".join(f"\n\n{HH_LABELS[t['role']]}: {t['content']}" for t in turns)


def parse_hh(rows: Iterable[RawRow], split: str, seed: int) -> Iterator[Outcome]:
    """Anthropic HH-RLHF rows ``{"chosen": transcript, "rejected": transcript}``.

    The two transcripts share the dialogue up to the last ``\\n\\nAssistant:``; that shared part
    becomes the prompt (as in HALOs ``get_hh`` and the DPO repository), and must be identical.
    """
    for raw in rows:
        where, row = raw.where, raw.row
        if (bad := _strings(row, where, "chosen", "rejected")) is not None:
            yield bad
            continue
        try:
            prompt, chosen = parse_hh_dialogue(row["chosen"])
            prompt_r, rejected = parse_hh_dialogue(row["rejected"])
        except ValueError as error:
            yield _fail(where, "unparseable_dialogue", str(error))
            continue
        if prompt != prompt_r:
            yield _fail(
                where, "prompt_mismatch", "chosen and rejected dialogues differ before the reply"
            )
            continue
        yield Outcome(where, _record("hh", prompt, chosen, rejected))


LOADERS.register("hh", Loader("hh", parse_hh, hub_id="Anthropic/hh-rlhf"))


# --------------------------------------------------------------------------- shp
SHP_MIN_SCORE_RATIO = 2.0
SHP_MAX_PAIRS_PER_POST = 5


def parse_shp(rows: Iterable[RawRow], split: str, seed: int) -> Iterator[Outcome]:
    """stanfordnlp/SHP rows (``post_id, history, human_ref_A, human_ref_B, labels, score_A, ...``).

    Follows HALOs ``get_shp`` (the KTO data mix): on the train split keep pairs with score ratio
    >= 2 and at most 5 pairs per post, sampled with ``random.Random(seed)`` per post;
    ``labels == 1`` means A is preferred; runs of spaces are collapsed. Dropped rows count as
    ``low_score_ratio`` and ``over_pair_cap``.
    """
    import random

    outcomes: list[Outcome] = []
    by_post: dict[str, list[int]] = defaultdict(list)
    for raw in rows:
        where, row = raw.where, raw.row
        bad = _strings(row, where, "history", "human_ref_A", "human_ref_B")
        if bad is None and row.get("labels") not in (0, 1):
            bad = _fail(
                where, "bad_field" if "labels" in row else "missing_field", "labels must be 0 or 1"
            )
        if bad is not None:
            outcomes.append(bad)
            continue
        ratio = row.get("score_ratio")
        if ratio is None and "score_A" in row and "score_B" in row:
            a, b = float(row["score_A"]), float(row["score_B"])
            ratio = max(a / b, b / a) if a > 0 and b > 0 else float("inf")
        if split == "train" and (ratio is None or float(ratio) < SHP_MIN_SCORE_RATIO):
            outcomes.append(
                _fail(where, "low_score_ratio", f"score_ratio {ratio} < {SHP_MIN_SCORE_RATIO}")
            )
            continue
        a, b = _collapse_spaces(row["human_ref_A"]), _collapse_spaces(row["human_ref_B"])
        chosen, rejected = (a, b) if row["labels"] == 1 else (b, a)
        prompt = [{"role": "user", "content": _collapse_spaces(row["history"])}]
        by_post[str(row.get("post_id", row["history"]))].append(len(outcomes))
        outcomes.append(Outcome(where, _record("shp", prompt, chosen, rejected)))
    if split == "train":
        for indices in by_post.values():
            keep = set(
                random.Random(seed).sample(indices, min(SHP_MAX_PAIRS_PER_POST, len(indices)))
            )
            for i in set(indices) - keep:
                outcomes[i] = _fail(
                    outcomes[i].where, "over_pair_cap", f"> {SHP_MAX_PAIRS_PER_POST} pairs"
                )
    yield from outcomes


LOADERS.register("shp", Loader("shp", parse_shp, hub_id="stanfordnlp/SHP"))


# --------------------------------------------------------------------------- oasst
def parse_oasst(rows: Iterable[RawRow], split: str, seed: int) -> Iterator[Outcome]:
    """OpenAssistant/oasst1 message rows -> pairs of ranked sibling assistant replies.

    Follows HALOs ``get_oasst``: keep English messages; each reply of rank r > 0 is the rejected
    response of a pair whose chosen response is its sibling of rank r - 1 (same parent); the
    prompt is the conversation from the root to the parent. Deviation: only assistant replies
    form pairs (HALOs also pairs ranked prompter turns, whose prompt would end with an assistant
    turn); text keeps HALOs' space collapsing. Every other row is counted by reason.
    """
    table: list[RawRow] = []
    outcomes: dict[int, Outcome] = {}
    for raw in rows:
        bad = _strings(raw.row, raw.where, "message_id", "role", "text")
        if bad is not None:
            outcomes[len(table)] = bad
        elif raw.row.get("lang") != "en":
            outcomes[len(table)] = _fail(raw.where, "not_english", f"lang {raw.row.get('lang')!r}")
        elif raw.row.get("deleted"):
            outcomes[len(table)] = _fail(raw.where, "deleted", "message marked deleted")
        table.append(raw)
    messages = {r.row["message_id"]: r.row for i, r in enumerate(table) if i not in outcomes}
    children: dict[str | None, list[dict]] = defaultdict(list)
    for message in messages.values():
        children[message.get("parent_id")].append(message)

    def conversation(message_id: str) -> list[dict]:
        if message_id not in messages:
            raise KeyError(message_id)
        path, node, seen = [], messages[message_id], set()
        while node is not None:
            if node["message_id"] in seen:
                raise ValueError("cycle in parent_id links")
            seen.add(node["message_id"])
            path.append({"role": "user" if node["role"] == "prompter" else "assistant",
                         "content": _collapse_spaces(node["text"])})  # fmt: skip
            parent = node.get("parent_id")
            if parent is not None and parent not in messages:
                raise KeyError(parent)
            node = messages.get(parent) if parent is not None else None
        return path[::-1]

    for i, raw in enumerate(table):
        if i in outcomes:
            continue
        row, where = raw.row, raw.where
        rank = row.get("rank")
        if row["role"] != "assistant":
            outcomes[i] = _fail(where, "prompter_turn", "prompter message (context only)")
        elif rank is None:
            outcomes[i] = _fail(where, "unranked", "assistant reply without rank")
        elif rank == 0:
            outcomes[i] = _fail(
                where, "top_ranked", "rank 0 (appears as the chosen reply of rank 1)"
            )
        else:
            siblings = [m for m in children[row.get("parent_id")] if m["role"] == "assistant"]
            better = [m for m in siblings if m.get("rank") == rank - 1]
            try:
                prompt = conversation(row["parent_id"]) if row.get("parent_id") else []
            except (KeyError, ValueError) as error:
                outcomes[i] = _fail(where, "missing_parent", f"broken thread: {error}")
                continue
            if not better:
                outcomes[i] = _fail(where, "no_better_sibling", f"no sibling of rank {rank - 1}")
            elif not prompt or prompt[-1]["role"] != "user":
                outcomes[i] = _fail(where, "unparseable_dialogue", "parent is not a prompter turn")
            else:
                chosen, rejected = (
                    _collapse_spaces(better[0]["text"]),
                    _collapse_spaces(row["text"]),
                )
                outcomes[i] = Outcome(where, _record("oasst", prompt, chosen, rejected))
    yield from (outcomes[i] for i in range(len(table)))


LOADERS.register(
    "oasst",
    Loader("oasst", parse_oasst, hub_id="OpenAssistant/oasst1",
           hub_split=lambda split: "validation" if split == "test" else split),
)  # fmt: skip


# --------------------------------------------------------------------------- jsonl
def parse_jsonl(rows: Iterable[RawRow], split: str, seed: int) -> Iterator[Outcome]:
    """Records already in (or close to) the shared schema: ``prompt`` is a string (one user turn)
    or a message list ending with a user turn; ``id``, ``source``, ``aux`` and ``oracle`` are kept
    when present."""
    for raw in rows:
        where, row = raw.where, raw.row
        if (bad := _strings(row, where, "chosen", "rejected")) is not None:
            yield bad
            continue
        prompt = row.get("prompt")
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        if prompt is None:
            yield _fail(where, "missing_field", "no 'prompt'")
            continue
        if not _valid_messages(prompt):
            yield _fail(
                where, "unparseable_dialogue", "prompt must be messages ending with a user turn"
            )
            continue
        source = row.get("source", "jsonl")
        record = _record(str(source), prompt, row["chosen"], row["rejected"])
        if "id" in row:
            record["id"] = str(row["id"])
        for key in ("aux", "oracle"):
            if key in row:
                if not isinstance(row[key], dict) or set(row[key]) - {"chosen", "rejected"}:
                    yield _fail(where, "bad_field", f"{key!r} must map chosen/rejected")
                    break
                record[key] = row[key]
        else:
            yield Outcome(where, record)


def _valid_messages(prompt) -> bool:
    roles = {"user", "assistant", "system"}
    return (
        isinstance(prompt, list)
        and len(prompt) > 0
        and all(isinstance(m, dict) and m.get("role") in roles and isinstance(m.get("content"), str)
                for m in prompt)
        and prompt[-1]["role"] == "user"
    )  # fmt: skip


LOADERS.register("jsonl", Loader("jsonl", parse_jsonl))


# --------------------------------------------------------------------------- reading
def read_rows(
    loader: Loader, source: str, split: str, data_dir: str | None = None
) -> Iterator[RawRow]:
    """Raw rows of a local JSONL/JSON file, or of a hub id / local dataset folder via datasets."""
    path = Path(source)
    if path.is_file():
        yield from _read_file(path)
        return
    if not path.exists() and not re.fullmatch(r"[\w.-]+/[\w.-]+", source):
        raise FileNotFoundError(f"{source}: no such file, and not a hub dataset id (owner/name)")
    import datasets

    hub_split = loader.hub_split(split)
    dataset = datasets.load_dataset(source, data_dir=data_dir, split=hub_split)
    label = f"{source}{'/' + data_dir if data_dir else ''}[{hub_split}]"
    for index, row in enumerate(dataset):
        yield RawRow(f"{label}#{index}", dict(row))


def _read_file(path: Path) -> Iterator[RawRow]:
    if path.suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rows, list):
            raise ValueError(f"{path}: expected a JSON list of rows")
        for index, row in enumerate(rows):
            ok = isinstance(row, dict)
            yield RawRow(f"{path}#{index}", row if ok else None, "" if ok else "not a JSON object")
        return
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                yield RawRow(f"{path}:{line_number}", None, f"invalid JSON: {error}")
                continue
            ok = isinstance(row, dict)
            yield RawRow(
                f"{path}:{line_number}", row if ok else None, "" if ok else "not a JSON object"
            )


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
    from upo.batching import format_prompt, tokenize_pair

    prompt_len = len(
        tokenizer(format_prompt(tokenizer, record["prompt"]), add_special_tokens=False)["input_ids"]
    )
    if prompt_len >= max_length:
        return _fail(
            where, "too_long", f"prompt alone is {prompt_len} >= max_length {max_length} tokens"
        ), False
    pair = tokenize_pair(tokenizer, record["prompt"], record["chosen"], record["rejected"],
                         max_length, max_prompt_length)  # fmt: skip
    if pair.truncated and (
        truncation == "drop" or min(len(pair.chosen_ids), len(pair.rejected_ids)) == 0
    ):
        return _fail(
            where, "too_long", f"needs truncation to {max_length} tokens ({truncation=})"
        ), False
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
    if (tokenizer is None) != (max_length is None) or (
        max_length is not None and max_prompt_length is None
    ):
        raise ValueError("give tokenizer, max_length and max_prompt_length together")
    spec = LOADERS.get(loader)
    source = source or spec.hub_id or ""
    report = DataReport(truncated=0 if tokenizer is not None else None)
    undecodable: list[Outcome] = []

    def decodable(rows: Iterable[RawRow]) -> Iterator[RawRow]:
        for raw in rows:
            if raw.row is None:
                undecodable.append(_fail(raw.where, "invalid_json", raw.error))
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
def split_by_prompt(
    records: list[dict], test_size: int, seed: int
) -> tuple[list[dict], list[dict]]:
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
        raise ValueError(
            f"--test-size {test_size} leaves no training prompts ({len(keys)} prompts in all)"
        )
    train = [r for r in records if prompt_key(r) not in test_keys]
    test = [r for r in records if prompt_key(r) in test_keys]
    return train, test


def add_aux_scores(records: list[dict], names: list[str], cache=None) -> int:
    """Fill ``record["aux"][side][name]`` for every record, side and reward, in place; scores
    already present are kept. Returns the number of scores computed (the rest were reused)."""
    from upo.rewards import score_texts

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


def main_data_report(argv: list[str]) -> int:
    """``python -m upo data-report --loader NAME PATH``: print one JSON object of counts."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m upo data-report", description=main_data_report.__doc__
    )
    parser.add_argument("source", help="local file, dataset folder or hub id")
    _add_common_args(parser)
    args = parser.parse_args(argv)
    try:
        _, report = _load_from_args(args, args.source, args.split)
    except (DataError, FileNotFoundError, ValueError) as error:
        print(f"data-report: {error}", file=sys.stderr)
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
    from upo.rewards import RewardCache, describe_rewards

    parser = argparse.ArgumentParser(
        prog="python -m upo prepare-data", description=main_prepare.__doc__
    )
    parser.add_argument("--source", default="", help="local file, dataset folder or hub id")
    parser.add_argument("--out-dir", required=True)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--test-size", type=int, help="records (whole prompts) held out for test")
    group.add_argument("--test-from", help="separate test source (read with --test-split)")
    parser.add_argument("--test-split", default="test", help="split of --test-from (default test)")
    parser.add_argument("--aux", default="", help="comma-separated reward names to score")
    parser.add_argument(
        "--reward-cache", default=None, help="sqlite score cache shared across runs"
    )
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
        print(f"prepare-data: {error}", file=sys.stderr)
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
