"""Dataset loaders: raw rows of HH-RLHF, SHP, OASST or any JSONL file -> preference records.

Each loader turns raw rows (with a ``where``: ``file:line`` or ``hub_id[split]#index``) into one
outcome per row: a record or the reason the row was not used. ``upo.data.prepare`` adds the checks common to
every dataset and the report; this module holds only what differs between datasets.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from upo.registry import Registry

MALFORMED = frozenset(
    {"invalid_json", "invalid_utf8", "missing_field", "bad_field", "unparseable_dialogue", "prompt_mismatch",
     "empty_response", "identical_responses", "too_long"}
)  # fmt: skip


@dataclass
class RawRow:
    where: str  # "path:line" or "hub_id[split]#index"
    row: dict | None  # None when the line could not be decoded
    error: str = ""
    reason: str = "invalid_json"  # why ``row`` is None: invalid_json or invalid_utf8


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
    unlike HALOs' ``get_hh``) so that ``render_hh_dialogue(*parse_hh_dialogue(t)) == t``. Turns need
    not alternate: a few real HH transcripts hold two Assistant (or Human) turns in a row, and
    HALOs' ``get_hh`` keeps them, so they stay separate messages of the prompt.

    Raises:
        ValueError: text before the first turn, a marker without the following space, a transcript
            not ending with an Assistant turn, or a final reply that does not follow a Human turn
            (the record schema's prompt ends with a user turn).
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
    if len(turns) < 2 or turns[-2]["role"] != "user":
        raise ValueError("the final Assistant reply does not follow a Human turn")
    return turns[:-1], turns[-1]["content"]


def render_hh_dialogue(prompt: list[dict], response: str) -> str:
    """Inverse of :func:`parse_hh_dialogue`."""
    turns = [*prompt, {"role": "assistant", "content": response}]
    return "".join(f"\n\n{HH_LABELS[t['role']]}: {t['content']}" for t in turns)


def parse_hh(rows: Iterable[RawRow], split: str, seed: int) -> Iterator[Outcome]:
    """Anthropic HH-RLHF rows ``{"chosen": transcript, "rejected": transcript}``.

    The two transcripts share the dialogue up to the last ``\\n\\nAssistant:``; that shared part
    becomes the prompt (as in HALOs ``get_hh`` and the DPO repository). Only a pair whose two
    sides really have different prompts is skipped (``prompt_mismatch``).
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
            yield _fail(where, "prompt_mismatch", "chosen and rejected dialogues differ before the reply")
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
            bad = _fail(where, "bad_field" if "labels" in row else "missing_field", "labels must be 0 or 1")
        if bad is not None:
            outcomes.append(bad)
            continue
        ratio = row.get("score_ratio")
        if ratio is None and "score_A" in row and "score_B" in row:
            a, b = float(row["score_A"]), float(row["score_B"])
            ratio = max(a / b, b / a) if a > 0 and b > 0 else float("inf")
        if split == "train" and (ratio is None or float(ratio) < SHP_MIN_SCORE_RATIO):
            outcomes.append(_fail(where, "low_score_ratio", f"score_ratio {ratio} < {SHP_MIN_SCORE_RATIO}"))
            continue
        a, b = _collapse_spaces(row["human_ref_A"]), _collapse_spaces(row["human_ref_B"])
        chosen, rejected = (a, b) if row["labels"] == 1 else (b, a)
        prompt = [{"role": "user", "content": _collapse_spaces(row["history"])}]
        by_post[str(row.get("post_id", row["history"]))].append(len(outcomes))
        outcomes.append(Outcome(where, _record("shp", prompt, chosen, rejected)))
    if split == "train":
        for indices in by_post.values():
            keep = set(random.Random(seed).sample(indices, min(SHP_MAX_PAIRS_PER_POST, len(indices))))
            for i in set(indices) - keep:
                outcomes[i] = _fail(outcomes[i].where, "over_pair_cap", f"> {SHP_MAX_PAIRS_PER_POST} pairs")
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
            outcomes[i] = _fail(where, "top_ranked", "rank 0 (appears as the chosen reply of rank 1)")
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
    or a message list ending with a user turn; ``id``, ``source``, ``cluster`` (a group of related
    prompts, e.g. one topic: the unit of the report's bootstrap), ``aux`` and ``oracle`` are kept
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
            yield _fail(where, "unparseable_dialogue", "prompt must be messages ending with a user turn")
            continue
        source = row.get("source", "jsonl")
        record = _record(str(source), prompt, row["chosen"], row["rejected"])
        if "id" in row:
            record["id"] = str(row["id"])
        if "cluster" in row:  # prompts that are not independent (e.g. one topic): the bootstrap's unit
            if not isinstance(row["cluster"], str) or not row["cluster"]:
                yield _fail(where, "bad_field", "'cluster' must be a non-empty string")
                continue
            record["cluster"] = row["cluster"]
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
