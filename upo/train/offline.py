"""The offline trainer: SFT, DPO, UPO, relabelled DPO (any loss in the registry), one readable loop.

``python -m upo train RUN.yaml [key=value ...]``. The loop never names a loss: it asks the loss spec
what it ``needs`` and feeds exactly that. Built on ``accelerate``: the same code runs in one CPU
process, or DDP/FSDP under ``accelerate launch`` (each process takes an equal share of every global
batch, so the gradient equals the single-process one).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import time
from pathlib import Path

import torch
from tqdm import tqdm

from upo.config import RunConfig, load_run_config, save_run_config
from upo.data.batching import collate_pairs
from upo.io import read_jsonl, write_json
from upo.losses import LossInputs, get_loss
from upo.models.pair_forward import (
    PairForward,
    ValueHead,
    _autocast,
    cache_settings,
    compute_pair_logps,
    load_reference_cache,
    tokenize_records,
)
from upo.rewards.normalise import AuxNormaliser
from upo.strict import ConfigError, from_dict, to_dict
from upo.train.checkpoint import load_checkpoint, save_checkpoint
from upo.train.optim import build_optimizer, lr_lambda, peak_memory_mb, set_seed
from upo.train.trainlog import MetricsLogger


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


def preference_scores(records: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-response preference scores for relabelling: the z-scored gold oracle, else +-0.5."""
    if all("oracle" in r for r in records):
        values = [r["oracle"][side] for r in records for side in ("chosen", "rejected")]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)) or 1.0
        chosen = [(r["oracle"]["chosen"] - mean) / std for r in records]
        rejected = [(r["oracle"]["rejected"] - mean) / std for r in records]
        return torch.tensor(chosen), torch.tensor(rejected)
    return torch.full((len(records),), 0.5), torch.full((len(records),), -0.5)


def batch_order(num_pairs: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Full global batches of one epoch, shuffled by (seed, epoch) so a resumed run sees the same."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(num_pairs, generator=generator).tolist()
    return [order[i : i + batch_size] for i in range(0, num_pairs - batch_size + 1, batch_size)]


def warm_start_value_head(
    head: ValueHead, states: torch.Tensor, targets: torch.Tensor, tau: float, steps: int = 50
) -> None:
    """A few dozen full-batch expectile steps on the reference model's prompt states (note, step 2)."""
    from upo.losses.upo import expectile_loss

    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        expectile_loss(targets - head(states), tau).mean().backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)  # no warm-start gradient may leak into training step 0


def train(cfg: RunConfig, stop_after: int | None = None) -> dict:
    """Train one run described by ``cfg``; returns the summary written to train_summary.json.

    ``stop_after`` ends the process's loop early after that many steps (tests of resumption).
    """
    from accelerate import Accelerator

    from upo.models.loading import load_model, load_tokenizer, merge_and_save

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    spec, loss_fn = get_loss(cfg.loss.name, **cfg.loss.kwargs)
    needs = spec.needs
    for tracker in set(cfg.train.log_to) - {"csv"}:
        if importlib.util.find_spec(tracker) is None:
            raise ConfigError(f"train.log_to: {tracker!r} needs the {tracker} package (pip install {tracker})")
    accelerator = Accelerator(
        mixed_precision="bf16" if cfg.model.autocast_bf16 else "no",
        log_with=[t for t in cfg.train.log_to if t != "csv"] or None,
        project_dir=cfg.output_dir,
    )
    world, rank = accelerator.num_processes, accelerator.process_index
    per_process = cfg.train.batch_size // world
    if per_process * world != cfg.train.batch_size or per_process % cfg.train.grad_accum:
        raise ConfigError(
            f"train.batch_size {cfg.train.batch_size} must divide by processes ({world}) x "
            f"train.grad_accum ({cfg.train.grad_accum})"
        )
    set_seed(cfg.seed)
    out_dir = Path(cfg.output_dir)
    tokenizer = load_tokenizer(cfg.model.path, cfg.model.trust_remote_code)
    model = load_model(cfg.model.path, cfg.model.dtype, cfg.model.lora, cfg.model.trust_remote_code)
    records = read_jsonl(cfg.data.train)[: cfg.data.max_train_pairs]
    if len(records) < cfg.train.batch_size:
        raise ConfigError(f"{cfg.data.train}: {len(records)} pairs < train.batch_size {cfg.train.batch_size}")
    pairs = tokenize_records(records, tokenizer, cfg.data.max_length, cfg.data.max_prompt_length)

    tensors: dict[str, torch.Tensor] = {}
    cache = None
    if needs & {"reference", "value"}:
        settings = cache_settings(
            cfg.reference.path or cfg.model.path,
            cfg.data.max_length,
            cfg.data.max_prompt_length,
            cfg.model.autocast_bf16,
        )
        cache = load_reference_cache(cfg.reference.logps_cache, settings)
        position = {rid: i for i, rid in enumerate(cache["train"]["ids"])}
        missing = [r["id"] for r in records if r["id"] not in position]
        if missing:
            raise ValueError(f"{cfg.reference.logps_cache}: no cached log-probs for pair {missing[0]!r}")
        index = torch.tensor([position[r["id"]] for r in records])
        tensors["reference_chosen_logps"] = cache["train"]["chosen"][index]
        tensors["reference_rejected_logps"] = cache["train"]["rejected"][index]
    if "aux_rewards" in needs:
        normaliser = AuxNormaliser.fit(records, cfg.data.aux_rewards, cfg.data.aux_normalisation)
        tensors["aux_chosen_rewards"], tensors["aux_rejected_rewards"] = normaliser.pair_tensors(records)
    if "rewards" in needs:
        tensors["chosen_rewards"], tensors["rejected_rewards"] = preference_scores(records)

    value_head = None
    if "value" in needs:
        value_head = ValueHead(model.config.hidden_size)
        states = cache["train"]["prompt_states"][index]
        targets = torch.stack([tensors["aux_chosen_rewards"], tensors["aux_rejected_rewards"]], 1)
        tau = cfg.loss.kwargs.get("tau", spec.hyperparameters().get("tau", 0.7))
        warm_start_value_head(value_head, states.repeat_interleave(2, 0), targets.reshape(-1), tau)

    forward = PairForward(model, value_head)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    value_optimizer = torch.optim.AdamW(value_head.parameters(), lr=cfg.optim.value_lr) if value_head else None
    steps_per_epoch = len(records) // cfg.train.batch_size
    total_steps = cfg.train.max_steps if cfg.train.max_steps is not None else cfg.train.epochs * steps_per_epoch
    schedule = lr_lambda(cfg.optim.warmup_steps, total_steps, cfg.optim.schedule)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    forward, optimizer = accelerator.prepare(forward, optimizer)

    start_step, wall_before, tokens_seen = 0, 0.0, 0
    checkpoint_dir = out_dir / "checkpoint"
    if (checkpoint_dir / "state.json").exists():
        state = load_checkpoint(
            checkpoint_dir, accelerator.unwrap_model(forward), optimizer, value_optimizer, scheduler
        )
        start_step, wall_before, tokens_seen = state["step"], state["wall_s"], state["tokens"]
        accelerator.print(f"resumed from {checkpoint_dir} at step {start_step}")
    if accelerator.is_main_process and not (out_dir / "run.yaml").exists():
        save_run_config(cfg, out_dir / "run.yaml")  # the resolved config beside every output
    logger = MetricsLogger(out_dir / "train_log.csv", keep_until_step=start_step, enabled=accelerator.is_main_process)
    if cfg.train.log_to != ["csv"]:
        accelerator.init_trackers("upo", config=to_dict(cfg))

    include_rejected = "rejected" in needs
    # Held-out eval in the main process only (cheap: at most train.eval_pairs pairs).
    heldout = None
    if cfg.train.eval_pairs and cfg.data.test and accelerator.is_main_process:
        heldout = heldout_set(cfg, tokenizer, cache if "reference" in needs else None)
    started = time.time()
    progress = tqdm(
        range(start_step, total_steps),
        desc=f"train {cfg.method}",
        initial=start_step,
        total=total_steps,
        disable=not accelerator.is_main_process,
    )
    for step in progress:
        epoch, position_in_epoch = divmod(step, steps_per_epoch)
        global_batch = batch_order(len(records), cfg.train.batch_size, cfg.seed, epoch)[position_in_epoch]
        mine = global_batch[rank * per_process : (rank + 1) * per_process]
        micro_size = per_process // cfg.train.grad_accum
        step_metrics: dict[str, float] = {}
        step_loss = torch.zeros(())
        for micro in range(cfg.train.grad_accum):
            ids = mine[micro * micro_size : (micro + 1) * micro_size]
            batch = collate_pairs([pairs[i] for i in ids], tokenizer.pad_token_id, include_rejected)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            tokens_seen += int(batch["attention_mask"].sum()) * world
            sync = micro == cfg.train.grad_accum - 1
            context = accelerator.no_sync(forward) if not sync else contextlib.nullcontext()
            with context, _autocast(cfg.model.autocast_bf16):
                out = forward(**batch)
                inputs = make_inputs(out, tensors, ids, len(ids), include_rejected, accelerator.device)
                result = loss_fn(inputs)
                loss = result.loss.mean() + sum(v.mean() for v in result.side_losses.values())
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"{cfg.output_dir}: loss is {loss.item()} at step {step}; last good checkpoint: "
                        f"{checkpoint_dir if checkpoint_dir.exists() else 'none (checkpoint_every=0)'}"
                    )
                accelerator.backward(loss / cfg.train.grad_accum)
            step_loss += result.loss.mean().detach().float().cpu() / cfg.train.grad_accum
            for name, value in result.metrics.items():
                step_metrics[name] = step_metrics.get(name, 0.0) + value.float().mean().item() / cfg.train.grad_accum
        grad_norm = accelerator.clip_grad_norm_(
            [p for p in accelerator.unwrap_model(forward).model.parameters() if p.requires_grad],
            cfg.optim.max_grad_norm,
        )
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if value_optimizer is not None:
            value_optimizer.step()
            value_optimizer.zero_grad(set_to_none=True)
        reduced = accelerator.reduce(
            torch.tensor([step_loss.item(), *step_metrics.values()], device=accelerator.device), "mean"
        ).tolist()
        row = {
            "step": step + 1,
            "epoch": epoch,
            "loss": reduced[0],
            "lr": scheduler.get_last_lr()[0],
            "grad_norm": float(grad_norm),
            "tokens": tokens_seen,
            "wall_s": wall_before + time.time() - started,
        }
        row.update({f"train/{k}": v for k, v in zip(step_metrics, reduced[1:], strict=True)})
        progress.set_postfix(loss=f"{row['loss']:.4f}")
        done = step + 1
        periodic = cfg.train.eval_every and done % cfg.train.eval_every == 0
        if heldout is not None and (done == total_steps or periodic):
            row.update(
                heldout_metrics(
                    accelerator.unwrap_model(forward),
                    heldout,
                    tokenizer.pad_token_id,
                    float(cfg.loss.kwargs.get("beta", 0.1)),
                    cfg.model.autocast_bf16,
                )
            )
            accelerator.print(" ".join(f"{k}={v:.4f}" for k, v in row.items() if k.startswith("eval/")))
        logger.log(row)
        if cfg.train.log_to != ["csv"]:
            accelerator.log(row, step=done)
        if cfg.train.checkpoint_every and done % cfg.train.checkpoint_every == 0 and done < total_steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(
                    checkpoint_dir,
                    accelerator.unwrap_model(forward),
                    optimizer,
                    value_optimizer,
                    scheduler,
                    {"step": done, "wall_s": row["wall_s"], "tokens": tokens_seen},
                    tokenizer,
                )
        if stop_after is not None and done >= stop_after:
            return {"stopped_at": done}

    accelerator.wait_for_everyone()
    wall = wall_before + time.time() - started
    summary = {
        "steps": total_steps,
        "wall_s": wall,
        "tokens": tokens_seen,
        "peak_mem_mb": peak_memory_mb(),
        "processes": world,
        "loss": cfg.loss.name,
    }
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(forward)
        merge_and_save(unwrapped.model, tokenizer, out_dir / "model")
        if value_head is not None:
            from safetensors.torch import save_file

            save_file(unwrapped.value_head.state_dict(), str(out_dir / "value_head.safetensors"))
        write_json(out_dir / "train_summary.json", summary)
    accelerator.end_training()
    return summary


@torch.no_grad()
def heldout_metrics(forward, heldout: dict, pad_token_id: int, beta: float, autocast: bool) -> dict[str, float]:
    """Held-out preference accuracy and margin of DPO's implicit reward (or NLL for SFT).

    ``heldout``: ``pairs`` (tokenised test pairs) and, for preference runs, ``reference_chosen`` /
    ``reference_rejected`` (N,) cached reference log-probs.
    """
    logps = compute_pair_logps(forward.model, heldout["pairs"], pad_token_id, 16, autocast, "held-out eval")
    forward.train()
    chosen, rejected, lengths = logps["chosen"], logps["rejected"], logps["chosen_lengths"]
    metrics = {"eval/nll_chosen": float((-chosen / lengths.clamp(min=1)).mean())}
    if "reference_chosen" in heldout:
        margin = beta * ((chosen - heldout["reference_chosen"]) - (rejected - heldout["reference_rejected"]))
        metrics["eval/rewards/accuracy"] = float((margin > 0).float().mean())
        metrics["eval/rewards/margin"] = float(margin.mean())
    return metrics


def heldout_set(cfg: RunConfig, tokenizer, cache: dict | None) -> dict:
    """The first ``train.eval_pairs`` test pairs (those with cached reference log-probs if any)."""
    records = read_jsonl(cfg.data.test)
    if cache is not None:
        position = {rid: i for i, rid in enumerate(cache["test"]["ids"])}
        records = [r for r in records if r["id"] in position][: cfg.train.eval_pairs]
        index = torch.tensor([position[r["id"]] for r in records], dtype=torch.long)
        heldout = {
            "reference_chosen": cache["test"]["chosen"][index],
            "reference_rejected": cache["test"]["rejected"][index],
        }
    else:
        records, heldout = records[: cfg.train.eval_pairs], {}
    heldout["pairs"] = tokenize_records(records, tokenizer, cfg.data.max_length, cfg.data.max_prompt_length)
    return heldout


def make_inputs(out, tensors, ids, batch, include_rejected, device) -> LossInputs:
    """Split the concatenated forward into chosen/rejected and attach the cached per-pair tensors."""
    index = torch.tensor(ids)
    fields = {name: value[index].to(device) for name, value in tensors.items()}
    logps, lengths = out["logps"], out["lengths"]
    fields["policy_chosen_logps"], fields["chosen_lengths"] = logps[:batch], lengths[:batch]
    if include_rejected:
        fields["policy_rejected_logps"], fields["rejected_lengths"] = logps[batch:], lengths[batch:]
    if "values" in out:
        fields["prompt_values"] = out["values"][:batch]
    return LossInputs(**fields)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``a.b=value`` overrides (value parsed as YAML); the dataclasses then type-check them."""
    import yaml

    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return data


def main(argv: list[str]) -> int:
    """``python -m upo train RUN.yaml [key=value ...]``."""
    from upo.io import read_yaml

    parser = argparse.ArgumentParser(prog="python -m upo train", description=__doc__.splitlines()[0])
    parser.add_argument("run_yaml", help="resolved run config (run.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.lr=1.0e-5")
    args = parser.parse_args(argv)
    if not os.path.exists(args.run_yaml):
        parser.error(f"run config not found: {args.run_yaml}")
    if args.overrides:
        cfg = from_dict(RunConfig, apply_overrides(read_yaml(args.run_yaml), args.overrides))
    else:
        cfg = load_run_config(args.run_yaml)
    if not cfg.output_dir:
        cfg.output_dir = str(Path(args.run_yaml).parent)
    summary = train(cfg)
    print(f"trained {cfg.method}: {summary['steps']} steps in {summary['wall_s']:.1f} s")
    return 0
