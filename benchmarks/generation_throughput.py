"""Sampling throughput: the shared sampler (``upo.models.sampling``) against plain ``model.generate``, side by side.

``python benchmarks/generation_throughput.py --quick`` (SmolLM2-135M, 32 held-out prompts, < 3 min on 2 cores)
or without ``--quick`` (64 prompts, more configurations; writes
``results/benchmarks/generation_throughput.{csv,md}``).
The last stdout line is one JSON object (``ours_tokens_per_s``, ``hf_generate_tokens_per_s``,
``speedup_vs_hf_generate``, ``greedy_tokens_identical``, ...). See ``benchmarks/README.md``.

Both sides get the same model object, prompts (the shipped testbed's held-out prompts, chat template
applied, token ids encoded once), ``max_new_tokens``, temperature (top-p 1, top-k off), stop tokens,
torch threads, dtype (fp32 weights; ``bf16`` rows run both under ``torch.autocast``) and rows per forward
pass (``--batch-size``, the evaluation's ``eval.batch_size``; ``model.generate`` gets the prompts in that
many per call, in file order and left-padded, as the evaluation called it before the shared sampler).
Tokens/s = generated tokens (through the first stop token; what each side returns) / wall seconds of the
call; CPU seconds of the process are reported beside it because this machine is shared.

Configurations (each runs ``model.generate`` first, then ours, in the same process):
    greedy-fp32   temperature 0: the token ids must be identical (``greedy_tokens_identical``)
    sample-fp32   the evaluation's temperature (default 1.0): the headline speed
    greedy-bf16   bf16 autocast, temperature 0: the share of identical tokens (bf16 rounding may flip near-ties)
    full mode adds: greedy/sample-fp32-unpacked (ours with ``packed_linears=False``: ``nn.Linear``'s own GEMM,
    to separate the packed weights' share of the speedup from the rest), sample-fp32-one-batch (ours takes
    every prompt in one batch) and sample-bf16
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO_ROOT))

OUT_DIR = REPO_ROOT / "results" / "benchmarks"
MODELS_DIR = REPO_ROOT / "resources" / "models"
PROMPT_FILES = [REPO_ROOT / "resources" / "default" / f"{split}.jsonl" for split in ("test", "train")]


def model_folder(name: str) -> Path:
    """``resources/models/<name>``, prepared with ``upo.models.loading`` if missing (SmolLM2: GGUF, ~35 s once)."""
    from upo.models.loading import prepare_model

    folder = MODELS_DIR / name
    if not (folder / "config.json").is_file():
        print(f"preparing {name} in {folder}", file=sys.stderr)
        prepare_model(name, folder)
    return folder


def load_prompts(n: int) -> list[list[dict]]:
    """The first ``n`` prompts of the shipped testbed, held-out split first (the evaluation's prompts)."""
    from upo.io import read_jsonl

    records = [r for path in PROMPT_FILES for r in read_jsonl(path)]
    if n > len(records):
        raise ValueError(f"--prompts {n}: the shipped testbed has {len(records)} prompts")
    return [r["prompt"] for r in records[:n]]


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _cut(rows: list[list[int]], stops: set[int]) -> list[list[int]]:
    out = []
    for row in rows:
        ids = []
        for token in row:
            ids.append(token)
            if token in stops:
                break
        out.append(ids)
    return out


def hf_generate(model, prompt_ids, stops, *, temperature, max_new_tokens, batch_size, pad_id, seed, device):
    """Plain ``model.generate`` over fixed batches in file order (left padding), rows cut after the first stop."""
    import torch

    torch.manual_seed(seed)
    sampling = {"do_sample": False}
    if temperature > 0:
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
    rows = []
    with torch.no_grad():
        for start in range(0, len(prompt_ids), batch_size):
            batch = prompt_ids[start : start + batch_size]
            width = max(len(p) for p in batch)
            input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in batch], device=device)
            attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
            out = model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=max_new_tokens,
                eos_token_id=sorted(stops),
                pad_token_id=pad_id,
                **sampling,
            )
            rows += out[:, width:].tolist()
    return _cut(rows, stops)


def ours(model, prompt_ids, stops, *, temperature, max_new_tokens, batch_size, seed, packed_linears=True, **_):
    from upo.models.sampling import sample_token_ids

    return sample_token_ids(
        model,
        prompt_ids,
        seed=seed,
        stop_ids=sorted(stops),
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        packed_linears=packed_linears,
    )


def timed(function, bf16: bool, **kwargs) -> tuple[list[list[int]], dict]:
    import torch

    device = kwargs["device"]
    autocast = torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    with autocast:
        ids = function(**kwargs)
    _sync(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    tokens = sum(len(row) for row in ids)
    return ids, {
        "tokens": tokens,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "tokens_per_s": round(tokens / wall, 1),
        "tokens_per_cpu_s": round(tokens / cpu, 1) if cpu > 0 else None,
    }


def identical_share(a: list[list[int]], b: list[list[int]]) -> float:
    """Share of positions (over the longer of each pair of rows) holding the same token in both."""
    same = sum(sum(x == y for x, y in zip(r, s, strict=False)) for r, s in zip(a, b, strict=True))
    total = sum(max(len(r), len(s)) for r, s in zip(a, b, strict=True))
    return round(same / total, 4) if total else 1.0


def run(args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from upo.models.sampling import encode_prompts, stop_token_ids

    torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    folder = Path(args.model_dir) if args.model_dir else model_folder(args.model)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt_ids = encode_prompts(tokenizer, load_prompts(args.prompts))
    stops = set(stop_token_ids(model, tokenizer))
    settings = dict(max_new_tokens=args.max_new_tokens, seed=args.seed, device=device, pad_id=tokenizer.pad_token_id)
    # warm-up: thread pools, allocator and kernels of both paths, untimed
    for function in (hf_generate, ours):
        function(model, prompt_ids[:2], stops, temperature=1.0, batch_size=2, **{**settings, "max_new_tokens": 2})

    # (name, temperature, bf16 autocast, our rows per forward, our packed linears)
    configurations = [
        ("greedy-fp32", 0.0, False, args.batch_size, True),
        ("sample-fp32", args.temperature, False, args.batch_size, True),
    ]
    if not args.skip_bf16:
        configurations.append(("greedy-bf16", 0.0, True, args.batch_size, True))
    if not args.quick:
        configurations += [
            ("greedy-fp32-unpacked", 0.0, False, args.batch_size, False),
            ("sample-fp32-unpacked", args.temperature, False, args.batch_size, False),
            ("sample-fp32-one-batch", args.temperature, False, len(prompt_ids), True),
            ("sample-bf16", args.temperature, True, args.batch_size, True),
        ]
    rows = []
    for name, temperature, bf16, ours_batch, packed in configurations:
        print(f"{name}: model.generate ...", file=sys.stderr, flush=True)
        hf_ids, hf = timed(
            hf_generate,
            bf16,
            model=model,
            prompt_ids=prompt_ids,
            stops=stops,
            temperature=temperature,
            batch_size=args.batch_size,
            **settings,
        )
        print(f"{name}: ours ...", file=sys.stderr, flush=True)
        our_ids, us = timed(
            ours,
            bf16,
            model=model,
            prompt_ids=prompt_ids,
            stops=stops,
            temperature=temperature,
            batch_size=ours_batch,
            packed_linears=packed,
            **settings,
        )
        common = {
            "configuration": name,
            "dtype": "bf16-autocast" if bf16 else "fp32",
            "packed_linears": packed and device == "cpu",
            "temperature": temperature,
            "prompts": len(prompt_ids),
            "max_new_tokens": args.max_new_tokens,
        }
        rows.append({**common, "side": "model.generate", "batch_size": args.batch_size, **hf})
        rows.append(
            {
                **common,
                "side": "ours",
                "batch_size": ours_batch,
                **us,
                "speedup": round(us["tokens_per_s"] / hf["tokens_per_s"], 3),
                "cpu_speedup": round(hf["cpu_s"] / us["cpu_s"] * us["tokens"] / hf["tokens"], 3),
                "identical_token_share": identical_share(our_ids, hf_ids) if temperature == 0 else None,
                "identical": our_ids == hf_ids if temperature == 0 else None,
            }
        )
        print(json.dumps(rows[-2:]), file=sys.stderr, flush=True)

    by = {(r["configuration"], r["side"]): r for r in rows}
    headline, greedy = by[("sample-fp32", "ours")], by[("greedy-fp32", "ours")]
    summary = {
        "ours_tokens_per_s": headline["tokens_per_s"],
        "hf_generate_tokens_per_s": by[("sample-fp32", "model.generate")]["tokens_per_s"],
        "speedup_vs_hf_generate": headline["speedup"],
        "cpu_speedup_vs_hf_generate": headline["cpu_speedup"],
        "greedy_tokens_identical": greedy["identical"],
        "greedy_speedup_vs_hf_generate": greedy["speedup"],
    }
    if ("greedy-bf16", "ours") in by:
        summary["bf16_greedy_identical_token_share"] = by[("greedy-bf16", "ours")]["identical_token_share"]
        summary["bf16_speedup_vs_hf_generate"] = by[("greedy-bf16", "ours")]["speedup"]
    for name in ("sample-fp32-one-batch", "sample-fp32-unpacked", "greedy-fp32-unpacked"):
        if (name, "ours") in by:
            summary[f"{name.replace('-', '_')}_speedup_vs_hf_generate"] = by[(name, "ours")]["speedup"]
    if ("greedy-fp32-unpacked", "ours") in by:
        summary["unpacked_greedy_tokens_identical"] = by[("greedy-fp32-unpacked", "ours")]["identical"]
    summary["settings"] = {
        "model": str(args.model_dir and "custom" or args.model),
        "prompts": len(prompt_ids),
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "device": device,
        "weights": "fp32",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    summary["rows"] = rows
    return summary


def write_tables(summary: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = summary["rows"]
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with open(out_dir / "generation_throughput.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    s = summary["settings"]
    lines = [
        "# Sampling throughput: `upo.models.sampling` vs `model.generate`",
        "",
        f"Model {s['model']}, {s['prompts']} held-out testbed prompts, {s['max_new_tokens']} new tokens, "
        f"{s['threads']} torch thread(s), device {s['device']} ({platform.processor() or platform.machine()}), "
        f"fp32 weights; load average at start {s['load_average_at_start']} (shared machine: timings are noisy). "
        "Written by `python benchmarks/generation_throughput.py`. With a load average above the core count, "
        "wall times measure the other jobs as much as these calls: read the CPU-seconds columns first.",
        "",
        "| configuration | side | dtype | packed | T | rows/forward | tokens | wall s | CPU s | tokens/s | speedup | "
        "CPU speedup | identical tokens |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        share = r.get("identical_token_share")
        packed = r["packed_linears"] if r["side"] == "ours" else ""
        lines.append(
            f"| {r['configuration']} | {r['side']} | {r['dtype']} | {packed} | "
            f"{r['temperature']} | {r['batch_size']} | "
            f"{r['tokens']} | {r['wall_s']} | {r['cpu_s']} | {r['tokens_per_s']} | {r.get('speedup', '')} | "
            f"{r.get('cpu_speedup', '')} | {'' if share is None else f'{share:.2%}'} |"
        )
    lines += ["", "```json", json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1), "```", ""]
    (out_dir / "generation_throughput.md").write_text("\n".join(lines))


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="32 prompts, three configurations, no files written")
    parser.add_argument("--model", default="smollm2-135m", help="upo.models.loading table name")
    parser.add_argument("--model-dir", default=None, help="an HF folder instead of --model (tests)")
    parser.add_argument("--prompts", type=int, default=None, help="default: 32 quick, 64 full")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="the evaluation's default")
    parser.add_argument("--temperature", type=float, default=1.0, help="the evaluation's default")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per forward, both sides (eval.batch_size)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (evaluation jobs use 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--skip-bf16", action="store_true", help="leave out the bf16 configuration(s)")
    parser.add_argument("--out-dir", default=str(OUT_DIR))
    args = parser.parse_args(argv)
    if args.prompts is None:
        args.prompts = 32 if args.quick else 64
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    summary = run(args)
    if not args.quick:
        write_tables(summary, Path(args.out_dir))
        print(f"wrote {Path(args.out_dir) / 'generation_throughput.md'}", file=sys.stderr)
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    return summary


if __name__ == "__main__":
    main()
