"""Our side of ``benchmarks/train_throughput.py``: the trainer's own step (``upo.train.step.train_step``) on the
session the trainer builds (``upo.train.session.open_session``) for the run config it would get, timed per step;
and DPO and UPO steps interleaved in one process for their step-time ratio.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmark_assets import AUX_NAME
from timing import peak_memory, reset_peak_memory, step_batches, sync_device

LORA = {"r": 16, "alpha": 32}  # the default study's smollm2-135m adapters (config/config.yaml)


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


def child_ours(spec: dict, loss_name: str) -> dict:
    """Step times, tokens, setup time, parameter counts and peaks of our step for ``loss_name``."""
    import gc

    from upo.train.flops import parameter_counts

    step, setup_s, session = our_step(spec, loss_name)
    params = parameter_counts(session.unwrapped.model)
    gc.collect()
    reset_peak_memory()
    times, tokens = [], []
    for index, ids in enumerate(step_batches(spec)):
        sync_device()
        started = time.perf_counter()
        tokens.append(step(ids, index).tokens)
        sync_device()
        times.append(time.perf_counter() - started)
    return {"times": times, "tokens": tokens, "setup_s": setup_s, "params": params, **peak_memory()}


def child_paired(spec: dict) -> dict:
    """DPO and UPO steps alternating in one process (order flipped every pair): load drift cancels."""
    steps = {name: our_step(spec, name)[0] for name in ("dpo", "upo")}
    times = {"dpo": [], "upo": []}
    for index, ids in enumerate(step_batches(spec)):
        for name in ("dpo", "upo") if index % 2 == 0 else ("upo", "dpo"):
            sync_device()
            started = time.perf_counter()
            steps[name](ids, index)
            sync_device()
            times[name].append(time.perf_counter() - started)
    return {"dpo_times": times["dpo"], "upo_times": times["upo"]}
