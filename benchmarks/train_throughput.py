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
``--quick`` also runs matmul-peak and one warm-up + one timed ours-dpo step of smollm2-135m for
``smollm2_mfu_bf16``.
Tokens/s = non-pad tokens (attention-mask sum over [chosen; rejected]) of the timed steps / their time;
warm-up steps are excluded. Peak memory: Linux ``VmHWM`` of the process, reset (``/proc/self/clear_refs``)
just before the training loop, so it covers training only (``ru_maxrss`` over the whole process is
reported beside it); on CUDA, ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO_ROOT))

OUT_DIR = REPO_ROOT / "results" / "benchmarks"
SMOLLM2_DIR = REPO_ROOT / "resources" / "models" / "smollm2-135m"
AUX_NAME = "readability"
LORA = {"r": 16, "alpha": 32}  # the default study's smollm2-135m adapters (config/config.yaml)
WORDS = (
    "the a cat dog sat on warm mat and we love sunny days but hate cold rain reading short clear words is easy "
    "long convoluted sentences are exhausting people often ask how to cook pasta fix a bike or write a letter "
    "please explain why sky blue answer simply kindly with examples because it helps you learn quickly today "
    "tomorrow garden river mountain city music story friend teacher computer water bread coffee morning night"
).split()


# ----------------------------------------------------------------------------------------------- assets


def synthetic_records(n: int, seed: int = 0) -> list[dict]:
    """Deterministic pairs in the record schema, lengths varied so that batches carry real padding.

    Aux scores are seeded random numbers: they are data the step reads, not something it computes.
    """
    rng = random.Random(seed)

    def text(low: int, high: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))

    return [
        {
            "id": f"bench-{i}",
            "prompt": [{"role": "user", "content": text(4, 16)}],
            "chosen": text(8, 40),
            "rejected": text(8, 40),
            "source": "synthetic",
            "aux": {"chosen": {AUX_NAME: rng.random()}, "rejected": {AUX_NAME: rng.random()}},
        }
        for i in range(n)
    ]


def make_tiny_model(out_dir: Path, tokenizer_dir: Path, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """A random-init Llama (tied embeddings) saved as an HF folder with the project chat template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from upo.models.loading import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def prepare_assets(work: Path, models: list[str], num_pairs: int) -> dict[str, Path]:
    """Data JSONL plus one HF folder per model name ("tiny" is built here; smollm2-135m is reused or prepared)."""
    from upo.io import write_jsonl
    from upo.models.loading import prepare_model, train_project_tokenizer

    records = synthetic_records(num_pairs)
    assets = {"data": work / "pairs.jsonl"}
    write_jsonl(assets["data"], records)
    for name in models:
        if name == "tiny":
            corpus = [r["prompt"][0]["content"] + " " + r["chosen"] + " " + r["rejected"] for r in records]
            tokenizer_dir = train_project_tokenizer(corpus, work / "tokenizer", vocab_size=512)
            assets["tiny"] = make_tiny_model(work / "tiny", tokenizer_dir)
        elif name == "smollm2-135m":
            if not (SMOLLM2_DIR / "config.json").exists():
                prepare_model("smollm2-135m", SMOLLM2_DIR)  # GGUF conversion, ~35 s, once
            # Hard links pin this version: the workflow may replace the shared folder while we run.
            private = work / "smollm2-135m"
            private.mkdir()
            for source in SMOLLM2_DIR.iterdir():
                os.link(source, private / source.name)
            assets["smollm2-135m"] = private
        else:
            raise KeyError(f"benchmark model {name!r} unknown; known: tiny, smollm2-135m")
    return assets


# --------------------------------------------------------------------------------------------- measuring


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _reset_peak() -> None:
    """Start the training-only peak: reset VmHWM (Linux) or the CUDA allocator's peak."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # 5 = reset the peak resident set size to the current one


def _peaks() -> dict:
    import torch

    with open("/proc/self/status") as handle:
        status = dict(line.split(":", 1) for line in handle if ":" in line)
    peaks = {
        "train_peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024,
        "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
    }
    if torch.cuda.is_available():
        peaks["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peaks


def _load(spec: dict):
    import torch

    from upo.io import read_jsonl
    from upo.models.loading import load_tokenizer
    from upo.models.pair_forward import tokenize_records

    torch.set_num_threads(spec["threads"])
    tokenizer = load_tokenizer(spec["model"])
    records = read_jsonl(spec["data"])[: spec["batch_size"] * (spec["warmup"] + spec["steps"])]
    pairs = tokenize_records(records, tokenizer, spec["max_length"], spec["max_prompt_length"])
    return tokenizer, records, pairs


def trainer_config(spec: dict, loss_name: str, out_dir: Path, cache: Path):
    """The run config our trainer would get for this benchmark point (trainer defaults elsewhere:
    ``optim.max_grad_norm``, ``optim.value_lr``, UPO's tau/eta/weight_clip...)."""
    from upo.config import RunConfig
    from upo.strict import from_dict

    kwargs = {"beta": spec["beta"]}
    if loss_name == "upo":
        kwargs["aux_weight"] = spec["aux_weight"]
    return from_dict(
        RunConfig,
        {
            "method": f"bench-{loss_name}",
            "seed": 0,
            "output_dir": str(out_dir),
            "model": {
                "name": "bench",
                "path": spec["model"],
                "autocast_bf16": spec["bf16"],
                **({"lora": LORA} if spec.get("lora") else {}),
            },
            "reference": {"path": spec["model"], "logps_cache": str(cache)},
            "data": {
                "train": spec["data"],
                "max_length": spec["max_length"],
                "max_prompt_length": spec["max_prompt_length"],
                "aux_rewards": {AUX_NAME: 1.0},
                "aux_normalisation": "zscore",
                "max_train_pairs": spec["batch_size"] * (spec["warmup"] + spec["steps"]),
            },
            "loss": {"name": loss_name, "kwargs": kwargs},
            "optim": {"lr": spec["lr"], "weight_decay": 0.0},
            "train": {"batch_size": spec["batch_size"], "threads": spec["threads"], "eval_pairs": 0},
        },
    )


def reference_cache(spec: dict, out: Path) -> Path:
    """The trainer's reference log-prob cache (``python -m upo ref-logps``) of the benchmark pairs."""
    from upo.models.pair_forward import main_ref_logps

    pairs = spec["batch_size"] * (spec["warmup"] + spec["steps"])
    argv = ["--model", spec["model"], "--train", spec["data"], "--test", spec["data"], "--out", str(out)]
    argv += ["--max-length", str(spec["max_length"]), "--max-prompt-length", str(spec["max_prompt_length"])]
    argv += ["--train-pairs", str(pairs), "--test-pairs", "1", "--batch-size", str(spec["batch_size"])]
    argv += ["--autocast-bf16"] if spec["bf16"] else []
    main_ref_logps(argv)
    return out


def our_step(spec: dict, loss_name: str, work: Path | None = None):
    """Our trainer's own step for ``loss_name``: ``upo.train.session.open_session`` on the run config
    the trainer would get, then ``upo.train.step.train_step`` (the function ``upo.train.offline`` calls).

    Returns ``(step, setup_s, session)``: ``step(ids, index) -> StepResult`` runs one optimizer step
    on those pairs (collation included, as in the trainer's loop).
    """
    from upo.train.session import open_session
    from upo.train.step import train_step

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f"ours-{loss_name}-", dir=work or spec.get("work")))
    # The trainer reads reference log-probs from this cache; computing it is setup, not step time.
    cache = reference_cache(spec, work / "ref.pt")
    session = open_session(trainer_config(spec, loss_name, work / "run", cache))

    def step(ids: list[int], index: int = 0):
        return train_step(session.core, session.micro_batches(ids), index)

    return step, time.perf_counter() - started, session


def _batches(spec: dict) -> list[list[int]]:
    size = spec["batch_size"]
    return [list(range(i * size, (i + 1) * size)) for i in range(spec["warmup"] + spec["steps"])]


def child_ours(spec: dict, loss_name: str) -> dict:
    import gc

    from upo.train.flops import parameter_counts

    step, setup_s, session = our_step(spec, loss_name)
    params = parameter_counts(session.unwrapped.model)
    gc.collect()
    _reset_peak()
    times, tokens = [], []
    for index, ids in enumerate(_batches(spec)):
        _sync()
        started = time.perf_counter()
        tokens.append(step(ids, index).tokens)
        _sync()
        times.append(time.perf_counter() - started)
    return {"times": times, "tokens": tokens, "setup_s": setup_s, "params": params, **_peaks()}


def child_paired(spec: dict) -> dict:
    """DPO and UPO steps alternating in one process (order flipped every pair): load drift cancels."""
    steps = {name: our_step(spec, name)[0] for name in ("dpo", "upo")}
    times = {"dpo": [], "upo": []}
    for index, ids in enumerate(_batches(spec)):
        for name in ("dpo", "upo") if index % 2 == 0 else ("upo", "dpo"):
            _sync()
            started = time.perf_counter()
            steps[name](ids, index)
            _sync()
            times[name].append(time.perf_counter() - started)
    return {"dpo_times": times["dpo"], "upo_times": times["upo"]}


def _trl_dataset(tokenizer, records):
    """Text-format rows: the prompt rendered by the same chat template; TRL appends EOS to responses."""
    from datasets import Dataset

    from upo.data.batching import format_prompt

    return Dataset.from_list(
        [
            {"prompt": format_prompt(tokenizer, r["prompt"]), "chosen": r["chosen"], "rejected": r["rejected"]}
            for r in records
        ]
    )


def _trl_args(spec: dict, out: str, **overrides):
    from trl import DPOConfig

    from upo.config import OptimConfig

    return DPOConfig(
        output_dir=out,
        per_device_train_batch_size=spec["batch_size"],
        max_steps=spec["warmup"] + spec["steps"],
        learning_rate=spec["lr"],
        beta=spec["beta"],
        max_length=spec["max_length"],
        bf16=spec["bf16"],
        max_grad_norm=OptimConfig().max_grad_norm,  # the same clipping as our trainer's default
        train_sampling_strategy="sequential",  # the same batches as ours, in order
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
        seed=0,
        use_cpu=_device() == "cpu",  # transformers refuses bf16 on CPU without it
        **overrides,
    )


def _same_tokens(trl_rows, pairs) -> int:
    return sum(
        row["prompt_ids"] == p.prompt_ids
        and row["chosen_ids"] == p.chosen_ids
        and row["rejected_ids"] == p.rejected_ids
        for row, p in zip(trl_rows, pairs, strict=True)
    )


def child_trl(spec: dict, precompute: bool, gradient_checkpointing: bool | None) -> dict:
    import gc

    from transformers import TrainerCallback
    from trl import DPOTrainer

    from upo.models.loading import load_model

    tokenizer, records, pairs = _load(spec)

    class StepTimer(TrainerCallback):  # on_step_begin .. on_step_end = forward, backward, clip, optimizer step
        def __init__(self):
            self.times: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            _sync()
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            _sync()
            self.times.append(time.perf_counter() - self.started)

    overrides = {"precompute_ref_log_probs": precompute}
    if gradient_checkpointing is not None:
        overrides["gradient_checkpointing"] = gradient_checkpointing
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        trainer = DPOTrainer(
            model=load_model(spec["model"]),
            args=_trl_args(spec, out, **overrides),
            train_dataset=_trl_dataset(tokenizer, records),
            processing_class=tokenizer,
            callbacks=[timer],
        )
        setup_s = time.perf_counter() - started
        rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
        length = spec["max_length"]
        tokens = [
            sum(
                min(len(rows[i]["prompt_ids"]) + len(rows[i][side]), length)
                for i in ids
                for side in ("chosen_ids", "rejected_ids")
            )
            for ids in _batches(spec)
        ]
        gc.collect()
        _reset_peak()
        trainer.train()
    return {
        "times": timer.times,
        "tokens": tokens,
        "setup_s": setup_s,
        "pairs_same_tokens": _same_tokens(rows, pairs),
        "pairs": len(pairs),
        **_peaks(),
    }


def child_loss_check(spec: dict) -> dict:
    """Step-0 DPO loss of ours and TRL on the first batch, fp32, with the policy perturbed off the reference."""
    import torch
    from trl import DPOTrainer

    from upo.data.batching import collate_pairs
    from upo.losses import LossInputs, get_loss
    from upo.models.loading import load_model
    from upo.models.pair_forward import PairForward, compute_pair_logps

    tokenizer, records, pairs = _load(spec)
    size = spec["batch_size"]
    records, pairs = records[:size], pairs[:size]
    reference, policy = load_model(spec["model"]), load_model(spec["model"])
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # so the loss is not trivially log 2
        for parameter in policy.parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.add_(spec["perturb"] * parameter.abs().mean() * noise)
    ref = compute_pair_logps(reference, pairs, tokenizer.pad_token_id, size)
    with torch.no_grad():
        out = PairForward(policy.eval())(**collate_pairs(pairs, tokenizer.pad_token_id))
    _, dpo = get_loss("dpo", beta=spec["beta"])
    ours = dpo(
        LossInputs(
            policy_chosen_logps=out["logps"][:size],
            policy_rejected_logps=out["logps"][size:],
            reference_chosen_logps=ref["chosen"],
            reference_rejected_logps=ref["rejected"],
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        spec_fp32 = {**spec, "bf16": False}
        trainer = DPOTrainer(
            model=policy,
            ref_model=reference,
            args=_trl_args(spec_fp32, tmp),
            train_dataset=_trl_dataset(tokenizer, records),
            processing_class=tokenizer,
        )
        rows = [trainer.train_dataset[i] for i in range(size)]
        batch = {k: v.to(_device()) for k, v in trainer.data_collator(rows).items()}
        with torch.no_grad():
            trl_loss = float(trainer.compute_loss(trainer.model.eval(), batch))
    ours_loss = float(ours.loss.mean())
    return {
        "ours_loss": ours_loss,
        "trl_loss": trl_loss,
        "abs_diff": abs(ours_loss - trl_loss),
        "pairs_same_tokens": _same_tokens(rows, pairs),
        "pairs": size,
    }


def child_matmul_peak(spec: dict) -> dict:
    """The machine's matmul peak in bf16 and fp32 with the benchmark's threads (``upo.train.flops``)."""
    import torch

    from upo.train.flops import matmul_peak_gflops

    torch.set_num_threads(spec["threads"])
    size = 8192 if _device() == "cuda" else 2048  # 2048 is far from a GPU's peak
    return {
        f"{name}_peak_gflops": matmul_peak_gflops(dtype, size, device=_device())
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
DEFAULT_STEPS = {"tiny": (3, 20), "smollm2-135m": (1, 3)}  # (warm-up, timed) steps per model
QUICK_CONFIGS = ["ours-dpo", "ours-upo", "trl-default", "trl-precomputed", "ours-paired", "loss-check"]
FULL_CONFIGS = QUICK_CONFIGS[:4] + ["trl-precomputed-nogc"] + QUICK_CONFIGS[4:]
MFU_CONFIGS = ["matmul-peak", "ours-dpo", "ours-dpo-lora"]  # full mode adds these (once) on smollm2-135m
QUICK_MFU = (["matmul-peak", "ours-dpo"], (1, 1))  # --quick's smollm2-135m part: configs, (warm-up, timed)
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


def timed(result: dict, warmup: int) -> dict:
    """Tokens/s and median step time over the steps after ``warmup``."""
    times, tokens = result["times"][warmup:], result["tokens"][warmup:]
    return {
        "tokens_per_s": sum(tokens) / sum(times),
        "median_step_s": statistics.median(times),
        "timed_steps": len(times),
        "tokens_per_step": sum(tokens) / len(tokens),
    }


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
            "device": _device(),
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
            f"device {_device()}, (warm-up, timed) steps {DEFAULT_STEPS if steps is None else (warmup, steps)}"
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
    final.update({"device": _device(), "threads": args.threads, "batch_pairs": args.batch_size, "quick": quick})
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
