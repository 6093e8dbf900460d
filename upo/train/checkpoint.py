"""Resumable checkpoints: trainable weights (safetensors), optimizer, scheduler and RNG state.

``checkpoint/`` holds ``model/`` (the policy in HF folder layout, safetensors: a full model, or a peft
adapter folder for LoRA runs, loadable with ``from_pretrained`` / ``PeftModel.from_pretrained``),
``trainable.safetensors`` (every trainable tensor by name, value head included: what resuming
loads), ``optimizer.pt`` (optimizer, scheduler and RNG states) and ``state.json`` (step, wall time,
tokens, and the fingerprint of the run that wrote it). The final model is always a plain merged HF
folder (``<run>/model/``).

A checkpoint is resumed only by the run that wrote it: :func:`load_matching_checkpoint` compares the
stored fingerprint (hash of the resolved config, and of the size and modification time of its input
files) with the current run's and discards the checkpoint on any difference, saying so. A finished
run removes its checkpoint (:func:`remove_checkpoint`), so nothing resumable outlives it.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from upo.io import atomic_dir
from upo.strict import to_dict

# Settings that do not change what training computes: where the run is written, how often it
# checkpoints, where it logs, torch's thread count, and the evaluation that runs after training.
# Changing only these keeps a checkpoint usable; any other difference discards it.
RESULT_NEUTRAL_KEYS = ("output_dir", "eval", "train.checkpoint_every", "train.log_to", "train.threads")


def config_hash(cfg) -> str:
    """sha256 of the resolved run config (a ``RunConfig``) without :data:`RESULT_NEUTRAL_KEYS`."""
    data = to_dict(cfg)
    for key in RESULT_NEUTRAL_KEYS:
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.get(part, {})
        node.pop(leaf, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def inputs_hash(cfg) -> str:
    """sha256 of the name, size and modification time of every input file of the run.

    A retrained SFT model or re-prepared data at the same path changes it (Snakemake reruns the job
    because an input changed; the old run's checkpoint must not be resumed then). Paths that are not
    local files or folders (a hub id) count by name only.
    """
    digest = hashlib.sha256()
    for path in (cfg.model.path, cfg.reference.path, cfg.reference.logps_cache, cfg.data.train, cfg.data.test):
        digest.update(f"{path}\0".encode())
        root = Path(path)
        if not path or not root.exists():
            continue
        files = sorted(f for f in root.rglob("*") if f.is_file()) if root.is_dir() else [root]
        for file in files:
            stat = file.stat()
            digest.update(f"{file.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def run_fingerprint(cfg) -> dict[str, str]:
    return {"config_hash": config_hash(cfg), "inputs_hash": inputs_hash(cfg)}


def save_checkpoint(
    directory, forward, optimizer, value_optimizer, scheduler, state: dict, tokenizer=None, cfg=None
) -> None:
    """Write a checkpoint atomically (a temporary folder renamed over the previous checkpoint).

    ``cfg`` (the run's ``RunConfig``) stores the run's fingerprint; without it the checkpoint can
    never be resumed by :func:`load_matching_checkpoint`.
    """
    if cfg is not None:
        state = {**state, **run_fingerprint(cfg)}
    with atomic_dir(directory) as tmp:
        forward.model.save_pretrained(tmp / "model", safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp / "model")
        trainable = {n: p.detach().cpu().contiguous() for n, p in forward.named_parameters() if p.requires_grad}
        save_file(trainable, str(tmp / "trainable.safetensors"))
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "value_optimizer": value_optimizer.state_dict() if value_optimizer else None,
                "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "python_rng": list(random.getstate()[1]),
            },
            tmp / "optimizer.pt",
        )
        (tmp / "state.json").write_text(json.dumps(state))


def load_checkpoint(directory, forward, optimizer, value_optimizer, scheduler) -> dict:
    directory = Path(directory)
    weights = load_file(str(directory / "trainable.safetensors"))
    missing = [n for n, p in forward.named_parameters() if p.requires_grad and n not in weights]
    if missing:
        raise ValueError(f"{directory}: checkpoint lacks trainable tensor {missing[0]!r}")
    with torch.no_grad():
        for name, parameter in forward.named_parameters():
            if name in weights:
                parameter.copy_(weights[name])
    extra = torch.load(directory / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(extra["optimizer"])
    if value_optimizer is not None and extra["value_optimizer"] is not None:
        value_optimizer.load_state_dict(extra["value_optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["torch_rng"])
    random.setstate((3, tuple(extra["python_rng"]), None))
    return json.loads((directory / "state.json").read_text())


def load_matching_checkpoint(
    directory, cfg, forward, optimizer, value_optimizer, scheduler, log: Callable[[str], None] = print
) -> dict | None:
    """Resume from ``directory`` if it holds a checkpoint written by this very run, else ``None``.

    A checkpoint whose fingerprint differs from ``cfg``'s (another config, or changed input files)
    is removed and ``log`` says why; the run then starts from step 0.
    """
    directory = Path(directory)
    state_file = directory / "state.json"
    if not state_file.exists():
        return None
    stored = json.loads(state_file.read_text())
    current = run_fingerprint(cfg)
    changed = [key for key in ("config_hash", "inputs_hash") if stored.get(key) != current[key]]
    if changed:
        what = {"config_hash": "run config", "inputs_hash": "input files"}
        log(
            f"discarded checkpoint {directory} (step {stored.get('step')}): written by another run "
            f"(changed: {', '.join(what[k] for k in changed)}); training starts from step 0"
        )
        remove_checkpoint(directory)
        return None
    state = load_checkpoint(directory, forward, optimizer, value_optimizer, scheduler)
    log(f"resumed from {directory} at step {state['step']}")
    return state


def remove_checkpoint(directory) -> None:
    """Delete a checkpoint folder (a finished run leaves nothing resumable behind)."""
    shutil.rmtree(directory, ignore_errors=True)
