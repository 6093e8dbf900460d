"""Training throughput of our DPO/UPO step against TRL's ``DPOTrainer``: same model, pairs, batch, precision.

``python benchmarks/train_throughput.py --quick`` (tiny model, < 3 min on 2 cores) or without ``--quick``
(tiny model and smollm2-135m; writes ``results/benchmarks/train_throughput.{csv,md}``). The last stdout
line is one JSON object (``ours_tokens_per_s``, ``trl_tokens_per_s``, ``speedup_vs_trl``,
``upo_over_dpo_step_time``, ``step0_loss_abs_diff_vs_trl``, ...). See ``benchmarks/README.md``.

Every configuration runs in a fresh Python process so that its peak memory is its own:
    ours-dpo / ours-upo   our trainer's own ``upo.train.step.train_step`` on the session the trainer builds
                          (``upo.train.session.open_session``): PairForward over [chosen; rejected], the
                          registry loss, backward, grad clip (trainer default), AdamW, scheduler; cached
                          reference log-probs
    trl-default           ``DPOTrainer`` at its defaults (reference forward every step, gradient checkpointing)
    trl-precomputed       the same with ``precompute_ref_log_probs=True``
    trl-precomputed-nogc  also ``gradient_checkpointing=False``: the compute our step does (full mode only)
    ours-paired           DPO and UPO steps interleaved in one process: the UPO/DPO step-time ratio
    loss-check            step-0 DPO loss of ours and TRL on one batch with a reference != the policy
    ours-dpo-lora         our DPO step with LoRA (r 16, alpha 32, all linear layers: the study's setting;
                          smollm2-135m, full mode)
    matmul-peak           bf16 and fp32 2048 x 2048 matmul GFLOP/s with the same threads: the peak that
                          model FLOP utilisation (MFU, ``upo.train.flops``) is measured against
``--quick`` also runs matmul-peak and two warm-up + three timed ours-dpo steps of smollm2-135m for
``smollm2_mfu_bf16``.
Tokens/s = non-pad tokens (attention-mask sum over [chosen; rejected]) of the timed steps / their time;
warm-up steps are excluded. Peak memory: Linux ``VmHWM`` of the process, reset (``/proc/self/clear_refs``)
just before the training loop, so it covers training only (``ru_maxrss`` over the whole process is
reported beside it); on CUDA, ``torch.cuda.max_memory_allocated``.

This file runs the configurations and writes the tables; beside it, ``our_dpo_step.py`` is our side,
``trl_dpo_step.py`` TRL's, ``timing.py`` the measuring and ``benchmark_assets.py`` the pairs and models
(imported with this folder on ``sys.path``, as when the script runs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
for folder in (REPO_ROOT, BENCH_DIR):  # run as a script from anywhere, or loaded by a test
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from benchmark_assets import prepare_assets  # noqa: E402
from our_dpo_step import child_ours, child_paired  # noqa: E402
from timing import timed, torch_device  # noqa: E402
from trl_dpo_step import child_loss_check, child_trl  # noqa: E402

OUT_DIR = REPO_ROOT / "results" / "benchmarks"


def child_matmul_peak(spec: dict) -> dict:
    """The machine's matmul peak in bf16 and fp32 with the benchmark's threads (``upo.train.flops``)."""
    import torch

    from upo.train.flops import matmul_peak_gflops

    torch.set_num_threads(spec["threads"])
    size = 8192 if torch_device() == "cuda" else 2048  # 2048 is far from a GPU's peak
    return {
        f"{name}_peak_gflops": matmul_peak_gflops(dtype, size, device=torch_device())
        for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32))
    }


CHILDREN = {
    "ours-dpo": lambda spec: child_ours(spec, "dpo"),
    "ours-dpo-lora": lambda spec: child_ours({**spec, "lora": True}, "dpo"),
    "matmul-peak": child_matmul_peak,
    "ours-upo": lambda spec: child_ours(spec, "upo"),
    "trl-default": lambda spec: child_trl(spec, precompute=False, gradient_checkpointing=None),
    "trl-precomputed": lambda spec: child_trl(spec, precompute=True, gradient_checkpointing=None),
    "trl-precomputed-nogc": lambda spec: child_trl(spec, precompute=True, gradient_checkpointing=False),
    "ours-paired": child_paired,
    "loss-check": child_loss_check,
}
# (warm-up, timed) steps per model. SmolLM2 needs two warm-up steps: the second step of a process took
# 5.7 s against 2.5-3.7 s for the steps after it (idle machine, 1 thread); a second trainer session in the
# same process did not have the slow step, so it is process warm-up (kernels, allocator), paid once.
DEFAULT_STEPS = {"tiny": (3, 20), "smollm2-135m": (2, 3)}
QUICK_CONFIGS = ["ours-dpo", "ours-upo", "trl-default", "trl-precomputed", "ours-paired", "loss-check"]
FULL_CONFIGS = QUICK_CONFIGS[:4] + ["trl-precomputed-nogc"] + QUICK_CONFIGS[4:]
MFU_CONFIGS = ["matmul-peak", "ours-dpo", "ours-dpo-lora"]  # full mode adds these (once) on smollm2-135m
QUICK_MFU = (["matmul-peak", "ours-dpo"], (2, 3))  # --quick's smollm2-135m part: configs, (warm-up, timed)
NOT_TIMED = ("ours-paired", "loss-check", "matmul-peak")  # configurations without a tokens/s row


# -------------------------------------------------------------------------------------------- orchestration


def run_config(name: str, spec: dict, work: Path, in_process: bool) -> dict:
    """Run one configuration in a fresh interpreter (or here, for tests: then peaks are not its own)."""
    if in_process:
        result = CHILDREN[name](spec)
        return {k: v for k, v in result.items() if not k.endswith("rss_mb")}  # not this config's alone
    spec_path = work / f"spec-{name}.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "TQDM_DISABLE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", name, "--spec", str(spec_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark configuration {name!r} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def bench_spec(model: str, path: Path, data: Path, args, work: Path, warmup: int, steps: int) -> dict:
    return {
        "model": str(path),
        "data": str(data),
        "batch_size": args.batch_size,
        "warmup": warmup,
        "steps": steps,
        "max_length": args.max_length,
        "max_prompt_length": args.max_length - 1,  # prompts never cut on their own (config needs < max_length)
        "bf16": model != "tiny" and not args.fp32,
        "threads": args.threads,
        "lr": 1e-5,
        "beta": 0.1,
        "aux_weight": 1.0,
        "perturb": 2.0 if model == "tiny" else 0.05,
        "work": str(work),
    }


def add_mfu(row: dict, params: dict, peak_gflops: float) -> None:
    """Model FLOPs per token, achieved GFLOP/s and MFU of a row (``upo.train.flops`` conventions)."""
    from upo.train.flops import mfu, step_flops

    lora = row["config"].endswith("-lora")
    for suffix, total in (("", params["total"]), ("_nonembedding", params["total"] - params["embedding"])):
        per_token = step_flops(total, params["trainable"] if lora else total, 1, lora)
        if not suffix:
            row["model_flops_per_token"] = per_token
            row["achieved_gflops"] = per_token * row["tokens_per_s"] / 1e9
        row[f"mfu{suffix}"] = mfu(per_token * row["tokens_per_s"], 1.0, peak_gflops)
    row["peak_gflops"] = peak_gflops


def bench_model(
    model: str, path: Path, data: Path, args, work: Path, configs: list[str], steps: tuple[int, int] | None = None
) -> tuple[list[dict], dict]:
    """All configurations on one model: table rows and the summary numbers.

    ``steps`` (warm-up, timed) overrides :data:`DEFAULT_STEPS`; ``--warmup``/``--steps`` override both.
    """
    default_warmup, default_steps = steps or DEFAULT_STEPS[model]
    warmup = default_warmup if args.warmup is None else args.warmup
    steps = default_steps if args.steps is None else args.steps
    spec = bench_spec(model, path, data, args, work, warmup, steps)
    results = {}
    for name in configs:
        started = time.perf_counter()
        results[name] = run_config(name, spec, work, args.in_process)
        print(f"[{model}] {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    precision = "bf16" if spec["bf16"] else "fp32"
    peak = results["matmul-peak"][f"{precision}_peak_gflops"] if "matmul-peak" in results else None
    rows, ours = [], timed(results["ours-dpo"], warmup)
    for name in configs:
        if name in NOT_TIMED:
            continue
        row = {
            "model": model,
            "config": name,
            "precision": "bf16 autocast" if spec["bf16"] else "fp32",
            "batch_pairs": args.batch_size,
            "max_length": args.max_length,
            "threads": args.threads,
            "device": torch_device(),
            "warmup_steps": warmup,
            **timed(results[name], warmup),
        }
        row["ours_dpo_speedup"] = ours["tokens_per_s"] / row["tokens_per_s"]
        if peak is not None:  # TRL trains the same model in full: ours-dpo's parameter counts
            add_mfu(row, results[name].get("params") or results["ours-dpo"]["params"], peak)
        row.update(
            {
                k: results[name].get(k)
                for k in ("setup_s", "train_peak_rss_mb", "process_peak_rss_mb", "cuda_peak_mb", "pairs_same_tokens")
            }
        )
        rows.append(row)
    by_name = {row["config"]: row for row in rows}
    summary = {
        "model": model,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "ours_tokens_per_s": ours["tokens_per_s"],
        "ours_median_step_s": ours["median_step_s"],
    }
    if peak is not None:
        summary.update(results["matmul-peak"])
        summary[f"mfu_{precision}_full_ft_dpo"] = by_name["ours-dpo"]["mfu"]
        summary[f"mfu_{precision}_full_ft_dpo_nonembedding"] = by_name["ours-dpo"]["mfu_nonembedding"]
        if "ours-dpo-lora" in by_name:
            summary[f"mfu_{precision}_lora_dpo"] = by_name["ours-dpo-lora"]["mfu"]
            summary["lora_tokens_per_s"] = by_name["ours-dpo-lora"]["tokens_per_s"]
        summary["params"] = results["ours-dpo"]["params"]["total"]
    if "trl-default" in results:
        summary.update(compare_with_trl(results, by_name, warmup))
    return rows, summary


def compare_with_trl(results: dict, by_name: dict, warmup: int) -> dict:
    """The summary's TRL comparison, UPO/DPO ratio and step-0 loss check."""
    paired, check = results["ours-paired"], results["loss-check"]
    summary = {
        "trl_tokens_per_s": by_name["trl-default"]["tokens_per_s"],
        "trl_precomputed_tokens_per_s": by_name["trl-precomputed"]["tokens_per_s"],
        "speedup_vs_trl": by_name["trl-default"]["ours_dpo_speedup"],
        "speedup_vs_trl_precomputed": by_name["trl-precomputed"]["ours_dpo_speedup"],
        "upo_over_dpo_step_time": statistics.median(paired["upo_times"][warmup:])
        / statistics.median(paired["dpo_times"][warmup:]),
        "upo_over_dpo_separate_runs": by_name["ours-upo"]["median_step_s"] / by_name["ours-dpo"]["median_step_s"],
        "step0_loss_abs_diff_vs_trl": check["abs_diff"],
        "step0_loss_ours": check["ours_loss"],
        "step0_loss_trl": check["trl_loss"],
        "pairs_tokenised_identically": "{pairs_same_tokens}/{pairs}".format(**results["trl-default"]),
        "ours_train_peak_rss_mb": by_name["ours-dpo"].get("train_peak_rss_mb"),
        "trl_train_peak_rss_mb": by_name["trl-default"].get("train_peak_rss_mb"),
    }
    if "trl-precomputed-nogc" in by_name:
        summary["speedup_vs_trl_precomputed_nogc"] = by_name["trl-precomputed-nogc"]["ours_dpo_speedup"]
    return summary


def write_tables(rows: list[dict], summaries: list[dict], out_dir: Path, meta: dict) -> None:
    import pandas as pd

    from upo.io import write_text

    table = pd.DataFrame(rows)
    write_text(out_dir / "train_throughput.csv", table.to_csv(index=False, float_format="%.4g"))
    shown = table[
        [
            "model",
            "config",
            "precision",
            "tokens_per_s",
            "median_step_s",
            "ours_dpo_speedup",
            "train_peak_rss_mb",
            "setup_s",
        ]
        + [column for column in ("achieved_gflops", "mfu") if column in table]
    ]
    lines = [
        "# Training throughput: our DPO/UPO step vs TRL DPOTrainer",
        "",
        f"Generated by `python benchmarks/train_throughput.py` ({meta}).",
        "",
        shown.to_markdown(index=False, floatfmt=".4g"),
        "",
        "| model | metric | value | target |",
        "|---|---|---|---|",
    ]
    targets = {
        "speedup_vs_trl": ">= 1.5",
        "upo_over_dpo_step_time": "<= 1.10",
        "step0_loss_abs_diff_vs_trl": "<= 1e-4",
        "mfu_bf16_full_ft_dpo": ">= 0.5",
    }
    for summary in summaries:
        for key, value in summary.items():
            if key != "model":
                shown_value = f"{value:.4g}" if isinstance(value, float) else value
                lines.append(f"| {summary['model']} | {key} | {shown_value} | {targets.get(key, '')} |")
    write_text(out_dir / "train_throughput.md", "\n".join(lines) + "\n")


def run_benchmark(
    quick: bool = True,
    steps: int | None = None,
    warmup: int | None = None,
    batch_size: int | None = None,
    max_length: int = 128,
    threads: int = 1,
    fp32: bool = False,
    in_process: bool = False,
    out_dir: Path | None = OUT_DIR,
) -> dict:
    """Run the benchmark; returns the summary (the JSON line). Full mode writes tables to ``out_dir``.

    ``steps``/``warmup`` of None take :data:`DEFAULT_STEPS` per model.
    """
    args = argparse.Namespace(
        steps=steps,
        warmup=warmup,
        threads=threads,
        fp32=fp32,
        batch_size=batch_size or 8,
        max_length=max_length,
        in_process=in_process,
    )
    if quick:  # the tiny model's comparison, then smollm2-135m's MFU from one timed step
        plan = [("tiny", QUICK_CONFIGS, None), ("smollm2-135m", *QUICK_MFU)]
    else:
        plan = [("tiny", FULL_CONFIGS, None), ("smollm2-135m", MFU_CONFIGS[:1] + FULL_CONFIGS + MFU_CONFIGS[2:], None)]
    most_steps = max(
        (warmup if warmup is not None else (fixed or DEFAULT_STEPS[m])[0])
        + (steps if steps is not None else (fixed or DEFAULT_STEPS[m])[1])
        for m, _, fixed in plan
    )
    all_rows, summaries = [], []
    with tempfile.TemporaryDirectory(prefix="upo-bench-") as tmp:
        work = Path(tmp)
        assets = prepare_assets(work, [m for m, _, _ in plan], args.batch_size * most_steps)
        for model, configs, fixed in plan:
            rows, summary = bench_model(model, assets[model], assets["data"], args, work, configs, fixed)
            all_rows += rows
            summaries.append(summary)
    if not quick and out_dir is not None:
        meta = (
            f"batch {args.batch_size} pairs, max_length {args.max_length}, {args.threads} thread(s), "
            f"device {torch_device()}, (warm-up, timed) steps {DEFAULT_STEPS if steps is None else (warmup, steps)}"
        )
        write_tables(all_rows, summaries, Path(out_dir), meta)
    per_model = {s["model"]: s for s in summaries}
    final = dict(per_model["tiny"] if quick else summaries[-1])
    smollm2 = per_model["smollm2-135m"]
    precision = "fp32" if fp32 else "bf16"
    final.update(
        {
            f"smollm2_mfu_{precision}": smollm2[f"mfu_{precision}_full_ft_dpo"],
            "smollm2_tokens_per_s": smollm2["ours_tokens_per_s"],
            "smollm2_step_s": smollm2["ours_median_step_s"],
            "bf16_peak_gflops": smollm2["bf16_peak_gflops"],
            "fp32_peak_gflops": smollm2["fp32_peak_gflops"],
        }
    )
    if not quick:
        final["per_model"] = per_model
    final.update({"device": torch_device(), "threads": args.threads, "batch_pairs": args.batch_size, "quick": quick})
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model + one smollm2 step for MFU (< 3 min)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default per model: DEFAULT_STEPS)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps (default per model)")
    parser.add_argument("--batch-size", type=int, default=None, help="pairs per step (8)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads in every configuration")
    parser.add_argument("--fp32", action="store_true", help="fp32 for smollm2 too (default: bf16 autocast)")
    parser.add_argument("--in-process", action="store_true", help="no subprocesses (peak memory not reported)")
    parser.add_argument("--out-dir", default=str(OUT_DIR), help="where full mode writes its tables")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](json.loads(Path(args.spec).read_text()))))
        return 0
    summary = run_benchmark(
        args.quick,
        args.steps,
        args.warmup,
        args.batch_size,
        args.max_length,
        args.threads,
        args.fp32,
        args.in_process,
        Path(args.out_dir),
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
