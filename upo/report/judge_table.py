"""The judges of a study: ``judges.csv`` from the judge cards, its ``summary.md`` section and its bar plot.

Formatting only: every number comes from the cards ``python -m upo judge-card`` wrote
(``upo.evaluate.judge_card``). A card joins the tidy table by its judge hash (the ``judge`` column of
``metrics.csv``) and dataset; a (dataset, judge) of the table without a card is an error, so a win rate
is never shown without what its judge is worth.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

STATISTICS = ("agreement", "position_bias", "length_bias")
COLUMNS = [
    "dataset", "judge_name", "judge", "pairs", "clusters",
    *(f"{s}{suffix}" for s in STATISTICS for suffix in ("", "_lo", "_hi", "_n")),
    "order_flip", "agreement_when_chosen_longer", "ci_level",
    "seconds_per_1000", "tokens_per_1000", "usd_per_1000", "price_table", "device", "in_table", "note",
]  # fmt: skip


class JudgeCardError(ValueError):
    """A card that cannot be read or does not cover the table; the message names the file."""


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def card_row(card: dict, where: str) -> dict[str, Any]:
    """One ``judges.csv`` row from one card."""
    try:
        row: dict[str, Any] = {
            "dataset": str(card["dataset"]),
            "judge_name": str(card["judge"]["name"]),
            "judge": str(card["judge_hash"]),
            "pairs": int(card["pairs"]),
            "clusters": int(card["clusters"]),
        }
        for stat in STATISTICS:
            part = card[stat]
            row[stat], row[f"{stat}_lo"], row[f"{stat}_hi"] = (_num(part[k]) for k in ("value", "ci_low", "ci_high"))
            row[f"{stat}_n"] = int(part["n"])
        row["order_flip"] = _num(card["order_flip"]["value"])
        row["agreement_when_chosen_longer"] = _num(card["agreement_when_chosen_longer"]["value"])
        row["ci_level"] = float(card["card_config"]["level"])
        cost = card["cost"]
        row["seconds_per_1000"] = _num(cost["seconds_per_1000"])
        row["tokens_per_1000"] = _num(cost.get("tokens_per_1000"))
        row["usd_per_1000"] = _num(cost.get("usd_per_1000"))
        table = cost.get("price_table")
        row["price_table"] = json.dumps(table, sort_keys=True) if table else ""
        row["device"] = str(cost.get("device", ""))
        row["note"] = str(card.get("note", ""))
    except (KeyError, TypeError, ValueError) as error:
        raise JudgeCardError(f"{where}: not a judge card ({type(error).__name__}: {error})") from None
    return row


def judges_table(card_paths: list[str | Path], table: pd.DataFrame | None = None) -> pd.DataFrame:
    """``judges.csv``: one row per card; with the tidy ``table``, every (dataset, judge) of it needs a card.

    ``in_table`` says whether the card's judge and dataset judged runs of the table.
    """
    rows = []
    for path in card_paths:
        try:
            card = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise JudgeCardError(f"{path}: cannot read the judge card: {error}") from None
        rows.append(card_row(card, str(path)))
    judges = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "in_table"])
    duplicated = judges[judges.duplicated(["dataset", "judge"], keep=False)]
    if len(duplicated):
        first = duplicated.iloc[0]
        raise JudgeCardError(f"two cards for dataset {first['dataset']!r} and judge {first['judge_name']!r}")
    used: set[tuple[str, str]] = set()
    if table is not None:
        used = {(str(d), str(j)) for d, j in table[["dataset", "judge"]].drop_duplicates().itertuples(index=False)}
        names = dict(zip(table["judge"], table["judge_name"], strict=False))
        have = set(zip(judges["dataset"], judges["judge"], strict=True))
        missing = sorted(used - have)
        if missing:
            dataset, judge = missing[0]
            raise JudgeCardError(
                f"no judge card for dataset {dataset!r} and judge {names[judge]!r} (hash {judge}) of the table; "
                f"cards given: {', '.join(map(str, card_paths)) or 'none'} (run `python -m upo judge-card`)"
            )
    judges["in_table"] = [(d, j) in used for d, j in zip(judges["dataset"], judges["judge"], strict=True)]
    return judges[COLUMNS].sort_values(["dataset", "judge_name"], kind="stable").reset_index(drop=True)


def _share(row: pd.Series, stat: str) -> str:
    if math.isnan(row[stat]):
        return f"– (n={row[f'{stat}_n']})"
    return f"{row[stat]:.3f} [{row[f'{stat}_lo']:.3f}, {row[f'{stat}_hi']:.3f}] (n={row[f'{stat}_n']})"


def _cost(row: pd.Series) -> str:
    parts = [f"{row['seconds_per_1000']:.3g} s"]
    if not math.isnan(row["tokens_per_1000"]):
        parts.append(f"{row['tokens_per_1000']:.0f} tokens")
    if not math.isnan(row["usd_per_1000"]):
        parts.append(f"${row['usd_per_1000']:.2f}")
    return ", ".join(parts) + f" ({row['device']})"


def judges_section(judges: pd.DataFrame) -> list[str]:
    """``## Judges`` of ``summary.md``: what the judge of the win rates is worth, with the cards' notes."""
    lines = ["", "## Judges", ""]
    if judges.empty:
        return lines + ["No judge cards."]
    level = judges["ci_level"].iloc[0]
    lines += [
        "What the judge behind the win rates is worth, measured on held-out labelled pairs shown in both orders "
        "(`judges.csv`, from `python -m upo judge-card`). Agreement: share of pairs where it prefers the "
        "dataset's chosen response. Position bias: share of verdicts for the response shown first (0.5 = none). "
        "Length bias: among pairs whose chosen response is the shorter, share where it prefers the longer. "
        f"{level:.0%} cluster-bootstrap CIs. Cost per 1,000 verdicts.",
        "",
    ]
    header = ["dataset", "judge", "pairs", "agreement", "position bias", "length bias", "cost / 1,000", "in table"]
    rows = [
        [r["dataset"], f"`{r['judge_name']}` ({r['judge']})", r["pairs"], *(_share(r, s) for s in STATISTICS),
         _cost(r), "yes" if r["in_table"] else "no"]
        for _, r in judges.iterrows()
    ]  # fmt: skip
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    lines += [""] + [f"- {r['dataset']} / `{r['judge_name']}`: {r['note']}" for _, r in judges.iterrows() if r["note"]]
    return lines


def plot_judges(judges_csv: str | Path, out_dir: str | Path) -> list[Path]:
    """``judges.png``/``.pdf``: agreement, position and length bias per (dataset, judge) with their CIs."""
    import numpy as np

    from upo.report.figures import _save, plt

    judges = pd.read_csv(judges_csv)
    if judges.empty:
        raise JudgeCardError(f"{judges_csv}: no judge cards to plot")
    labels = [f"{d}\n{j}" for d, j in zip(judges["dataset"], judges["judge_name"], strict=True)]
    x = np.arange(len(judges))
    width = 0.8 / len(STATISTICS)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(judges) + 2.0), 3.6))
    for index, stat in enumerate(STATISTICS):
        values = judges[stat].to_numpy(dtype=float)
        low = values - judges[f"{stat}_lo"].to_numpy(dtype=float)
        high = judges[f"{stat}_hi"].to_numpy(dtype=float) - values
        at, ok = x + (index - 1) * width, np.isfinite(values)  # no pairs for a statistic: no bar, an "n/a"
        bars = ax.bar(at[ok], values[ok], width, yerr=[low[ok], high[ok]], capsize=3, label=stat.replace("_", " "),
                      color=f"C{index}")  # fmt: skip
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        for position in at[~ok]:
            ax.text(position, 0.02, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="0.5 (no preference)")
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("dataset / judge")
    ax.set_ylabel("share of held-out verdicts")
    ax.set_title(f"Judge cards ({judges['ci_level'].iloc[0]:.0%} cluster-bootstrap CIs)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    paths = _save(fig, Path(out_dir), "judges")
    plt.close(fig)
    return paths
