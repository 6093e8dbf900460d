"""The sampling-throughput benchmark runs end to end (quick mode, fewest settings) and prints its JSON line.

Only the shape of the output and the greedy-equality check are asserted: speed depends on the machine.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "generation_throughput.py"
REQUIRED = (
    "ours_tokens_per_s",
    "hf_generate_tokens_per_s",
    "speedup_vs_hf_generate",
    "greedy_tokens_identical",
    "cpu_speedup_vs_hf_generate",
    "bf16_greedy_identical_token_share",
    "settings",
)


def test_quick_json_line_has_the_keys(tiny_model_dir, capsys):
    spec = importlib.util.spec_from_file_location("generation_throughput", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = [
        "--quick",
        "--model-dir",
        str(tiny_model_dir),
        "--prompts",
        "3",
        "--max-new-tokens",
        "3",
        "--batch-size",
        "2",
    ]
    bench.main(argv)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(REQUIRED) <= set(summary)
    assert summary["greedy_tokens_identical"] is True
    assert summary["ours_tokens_per_s"] > 0 and summary["hf_generate_tokens_per_s"] > 0
    assert 0.0 <= summary["bf16_greedy_identical_token_share"] <= 1.0
    assert summary["settings"]["prompts"] == 3 and summary["settings"]["max_new_tokens"] == 3
