"""The offline trainer: SFT, DPO, UPO, relabelled DPO, the reward model (any loss in the registry).

``python -m upo train RUN.yaml [key=value ...]``. The loop never names a loss: the loss spec says what
it ``needs`` and which side module it owns, ``upo.train.session`` builds exactly that, and every step
is :func:`upo.train.step.train_step`. Built on ``accelerate``: the same code runs in one CPU process,
or DDP/FSDP under ``accelerate launch`` (each process takes an equal share of every global batch, so
the gradient equals the single-process one). Batching and ``max_steps`` rules: ``upo.train.session``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from tqdm import tqdm

from upo.config import RunConfig, check_training_inputs, save_run_config
from upo.config.overrides import overridden_run
from upo.io import atomic_path, write_json
from upo.models.heads import autocast
from upo.train.checkpoint import load_matching_checkpoint, remove_checkpoint, save_checkpoint
from upo.train.folds import write_fold_manifest
from upo.train.inputs import PairData
from upo.train.optim import peak_memory_mb
from upo.train.session import TrainingSession, batch_order, open_session
from upo.train.step import NonFiniteLossError, make_inputs, micro_batch, train_step
from upo.train.trainlog import MetricsLogger

__all__ = ["NonFiniteLossError", "batch_order", "heldout_metrics", "main", "train"]


def resume(session: TrainingSession, checkpoint_dir: Path) -> dict:
    """Load this run's checkpoint if there is one; returns its step, wall time and token count (zeros if none)."""
    core, print_ = session.core, session.accelerator.print
    state = load_matching_checkpoint(
        checkpoint_dir, session.cfg, session.unwrapped, core.optimizer, core.side_optimizer, core.scheduler, print_
    )  # None when absent, or written by another run (then removed, and the log says so)
    return state or {"step": 0, "wall_s": 0.0, "tokens": 0}


def log_row(session: TrainingSession, step: int, result, tokens: int, wall_s: float) -> dict:
    """The step's row of train_log.csv: loss and metrics averaged over processes."""
    accelerator = session.accelerator
    values = torch.tensor([result.loss, *result.metrics.values()], device=accelerator.device)
    reduced = accelerator.reduce(values, "mean").tolist()
    row = {
        "step": step + 1,
        "epoch": step // session.steps_per_epoch,
        "loss": reduced[0],
        "lr": session.core.scheduler.get_last_lr()[0],
        "grad_norm": result.grad_norm,
        "tokens": tokens,
        "wall_s": wall_s,
    }
    row.update({f"train/{k}": v for k, v in zip(result.metrics, reduced[1:], strict=True)})
    return row


def save_outputs(session: TrainingSession, out_dir: Path, summary: dict) -> None:
    """Final model (LoRA merged), the loss's side module, train_summary.json (main process only)."""
    from safetensors.torch import save_file

    from upo.models.loading import merge_and_save

    unwrapped = session.unwrapped
    merge_and_save(unwrapped.model, session.tokenizer, out_dir / "model")
    if session.side_module is not None:
        state = {k: v.detach().cpu().contiguous() for k, v in session.side_module.state_dict().items()}
        with atomic_path(out_dir / session.spec.side_module.file_name) as tmp:
            save_file(state, str(tmp))
    write_json(out_dir / "train_summary.json", summary)


def train(cfg: RunConfig, stop_after: int | None = None) -> dict:
    """Train one run described by ``cfg``; returns the summary written to train_summary.json.

    ``stop_after`` ends the process's loop early after that many steps (tests of resumption).
    """
    session = open_session(cfg)
    accelerator, core, steps = session.accelerator, session.core, session.total_steps
    out_dir, checkpoint_dir = Path(cfg.output_dir), Path(cfg.output_dir) / "checkpoint"
    state = resume(session, checkpoint_dir)
    start_step, wall_before, tokens = state["step"], state["wall_s"], state["tokens"]
    if accelerator.is_main_process and not (out_dir / "run.yaml").exists():
        save_run_config(cfg, out_dir / "run.yaml")  # the resolved config beside every output
    logger = MetricsLogger(out_dir / "train_log.csv", keep_until_step=start_step, enabled=accelerator.is_main_process)
    # Held-out eval in the main process only (cheap: at most train.eval_pairs pairs).
    heldout = session.heldout() if accelerator.is_main_process else None
    started, final_eval = time.time(), {}
    progress = tqdm(
        range(start_step, steps),
        desc=f"train {cfg.method}",
        initial=start_step,
        total=steps,
        disable=not accelerator.is_main_process,
    )
    for step in progress:
        epoch, position = divmod(step, session.steps_per_epoch)
        global_batch = batch_order(len(session.train.records), cfg.train.batch_size, cfg.seed, epoch)[position]
        try:
            result = train_step(core, session.micro_batches(global_batch), step)
        except NonFiniteLossError as error:
            last = checkpoint_dir if checkpoint_dir.exists() else "none (checkpoint_every=0)"
            raise NonFiniteLossError(f"{cfg.output_dir}: {error}; last good checkpoint: {last}") from None
        tokens += result.tokens * accelerator.num_processes
        row = log_row(session, step, result, tokens, wall_before + time.time() - started)
        progress.set_postfix(loss=f"{row['loss']:.4f}")
        done = step + 1
        periodic = cfg.train.eval_every and done % cfg.train.eval_every == 0
        if heldout is not None and (done == steps or periodic):
            final_eval = heldout_metrics(session, heldout)
            row.update(final_eval)
            accelerator.print(" ".join(f"{k}={v:.4f}" for k, v in row.items() if k.startswith("eval/")))
        logger.log(row)
        if cfg.train.log_to != ["csv"]:
            accelerator.log(row, step=done)
        if cfg.train.checkpoint_every and done % cfg.train.checkpoint_every == 0 and done < steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                checkpoint_state = {"step": done, "wall_s": row["wall_s"], "tokens": tokens}
                save_checkpoint(
                    checkpoint_dir,
                    session.unwrapped,
                    core.optimizer,
                    core.side_optimizer,
                    core.scheduler,
                    checkpoint_state,
                    session.tokenizer,
                    cfg=cfg,
                )
        if stop_after is not None and done >= stop_after:
            return {"stopped_at": done}

    accelerator.wait_for_everyone()
    summary = {
        "steps": steps,
        "wall_s": wall_before + time.time() - started,
        "tokens": tokens,
        "peak_mem_mb": peak_memory_mb(),
        "processes": accelerator.num_processes,
        "loss": cfg.loss.name,
    }
    if "eval/accuracy" in final_eval:  # reward models: pairwise accuracy on the held-out pairs
        summary["heldout_accuracy"] = final_eval["eval/accuracy"]
        summary["heldout_pairs"] = len(heldout.pairs)
    if accelerator.is_main_process:
        save_outputs(session, out_dir, summary)
        if cfg.data.fold is not None:  # cross-fitting: the pair ids this model trained on
            write_fold_manifest(out_dir, cfg.data.fold, session.train.records)
        remove_checkpoint(checkpoint_dir)  # finished: nothing resumable may outlive the run
    accelerator.end_training()
    return summary


@torch.no_grad()
def heldout_metrics(session: TrainingSession, heldout: PairData, batch_size: int = 16) -> dict[str, float]:
    """The bound loss and its metrics on the held-out pairs (``eval/loss``, ``eval/<metric>``: means
    over pairs), plus ``eval/nll_chosen`` (token-mean NLL of the chosen responses) for LM runs.

    Same forward, same inputs (statistics fitted on the training split) and same hyperparameters as a
    training step, in eval mode and without gradients; the module's mode is restored afterwards.
    """
    forward, device = session.unwrapped, session.accelerator.device
    was_training = forward.training
    forward.eval()
    sums: dict[str, float] = {}
    for start in range(0, len(heldout.pairs), batch_size):
        ids = list(range(start, min(start + batch_size, len(heldout.pairs))))
        micro = micro_batch(
            heldout.pairs, heldout.tensors, ids, session.tokenizer.pad_token_id, device=device, **session.sides
        )
        with autocast(session.cfg.model.autocast_bf16, device):
            inputs = make_inputs(forward(**micro.batch), micro.tensors, micro.size)
            result = session.loss_fn(inputs)
        values = {"loss": result.loss, **result.metrics}
        if inputs.policy_chosen_logps is not None:
            values["nll_chosen"] = -inputs.policy_chosen_logps / inputs.chosen_lengths.clamp(min=1)
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach().float().sum())
    forward.train(was_training)
    return {f"eval/{name}": total / len(heldout.pairs) for name, total in sums.items()}


def main(argv: list[str]) -> int:
    """``python -m upo train RUN.yaml [key=value ... --out DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m upo train", description=__doc__.splitlines()[0])
    parser.add_argument("run_yaml", help="resolved run config (run.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.lr=1.0e-5 (need --out)")
    parser.add_argument("--out", help="new run folder for an overridden run; its run.yaml records the overrides")
    args = parser.parse_args(argv)
    cfg = overridden_run(args.run_yaml, args.overrides, args.out)
    check_training_inputs(cfg, args.run_yaml)
    if not cfg.output_dir:
        cfg.output_dir = str(Path(args.run_yaml).parent)
    summary = train(cfg)
    print(f"trained {cfg.method} ({cfg.loss.name}): {summary['steps']} steps in {summary['wall_s']:.1f} s")
    return 0
