"""The forward passes over a pair batch (policy log-probs, or a reward model's scores) and the
reference log-prob cache.

``PairForward`` and ``ScoreForward`` are ``nn.Module``s so that DDP/FSDP (``accelerate launch``) wrap
the whole computation. ``PairForward``: one decoder pass over [chosen; rejected], then the LM head and
the log-softmax only at response positions (the 49k-token vocabulary dominates the cost of small
models), plus a loss's side module (UPO's V(x)) on the detached last prompt state. ``ScoreForward``:
a scalar head's score at each sequence's last attended token (the reward model).
"""

from __future__ import annotations

import argparse
import os

import torch
from torch import nn
from tqdm import tqdm

from upo.data.batching import TokenizedPair, collate_pairs, tokenize_pair
from upo.io import read_jsonl, sha256_dir
from upo.models.heads import autocast, pick_device
from upo.models.logps import IGNORE_INDEX, selective_log_softmax


def _base_lm(model: nn.Module) -> nn.Module:
    """The transformers CausalLM inside a peft wrapper (LoRA layers stay injected in it)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def response_token_logps(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token log-probs of the response tokens, the LM head and log-softmax applied at those positions only.

    Args: (N, T) ids, mask and labels (``IGNORE_INDEX`` on prompt and padding).
    Returns: ``token_logps`` (N, T-1) float32 (0 where masked), ``mask`` (N, T-1) and the decoder's
    ``hidden`` states (N, T, H). Row for row the same numbers as ``upo.models.logps.token_logps`` of the
    full logits (tested bit for bit in float32), without the (N, T, V) logits.
    """
    lm = _base_lm(model)
    hidden = lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    mask = labels[:, 1:] != IGNORE_INDEX  # (N, T-1): positions that predict a response token
    logits = lm.get_output_embeddings()(hidden[:, :-1][mask]).float()  # (M, V)
    selected = selective_log_softmax(logits, labels[:, 1:][mask])  # (M,)
    token_logps = torch.zeros(mask.shape, dtype=selected.dtype, device=selected.device)
    return token_logps.masked_scatter(mask, selected), mask, hidden


def length_order(lengths: list[int]) -> list[int]:
    """Indices sorted by length (longest first, stable): batches of similar lengths carry little padding."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


class PairForward(nn.Module):
    """Sequence log-probs (and a side module's V(x)) of a collated batch in one forward."""

    def __init__(self, model: nn.Module, side_module: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.side_module = side_module

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        prompt_last_index: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Args: (N, T) ids/mask/labels, (N,) prompt end positions.

        Returns: ``logps`` (N,) response log-prob sums, ``lengths`` (N,) response token counts,
        ``values`` (N,) V(x) on the detached prompt state when a side module is attached,
        ``prompt_states`` (N, H) detached.
        """
        token_logps, mask, hidden = response_token_logps(self.model, input_ids, attention_mask, labels)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        prompt_states = hidden[rows, prompt_last_index].detach()
        out = {
            "logps": token_logps.sum(-1),
            "lengths": mask.sum(-1).to(token_logps.dtype),
            "prompt_states": prompt_states,
        }
        if self.side_module is not None:
            out["values"] = self.side_module(prompt_states)
        return out


def sequence_scores(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """A scalar-head model's score at each row's last attended token.

    We pool by the attention mask rather than by ``pad_token_id`` (transformers' default), because many
    chat tokenizers use EOS as padding and the EOS closing every response would be taken for padding.

    Args:
        model: a ``*ForSequenceClassification`` with ``num_labels=1`` (or its LoRA-wrapped form).
        input_ids, attention_mask: (B, T), left or right padded.
    Returns:
        (B,) float32 scores.
    """
    model = _base_lm(model)
    head = getattr(model, "score", None)
    if head is None:
        raise TypeError(f"{type(model).__name__} has no 'score' head; expected a *ForSequenceClassification")
    trunk = getattr(model, model.base_model_prefix)
    hidden = trunk(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    last = (positions * attention_mask.long()).argmax(-1)  # (B,) rightmost attended position
    pooled = hidden[torch.arange(input_ids.shape[0], device=input_ids.device), last]  # (B, H)
    return head(pooled).squeeze(-1).float()


class ScoreForward(nn.Module):
    """Scores of a collated [chosen; rejected] batch under a scalar-head model (the reward model)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, labels=None, prompt_last_index=None) -> dict[str, torch.Tensor]:
        """Args: (N, T) ids and mask (labels and prompt positions are not used). Returns ``scores`` (N,)."""
        return {"scores": sequence_scores(self.model, input_ids, attention_mask)}


def tokenize_records(records: list[dict], tokenizer, max_length: int, max_prompt_length: int):
    return [
        tokenize_pair(
            tokenizer,
            r["prompt"],
            r["chosen"],
            r["rejected"],
            max_length,
            max_prompt_length,
            r.get("response_prefix", ""),
        )
        for r in records
    ]


@torch.no_grad()
def compute_pair_logps(
    model: nn.Module,
    pairs: list[TokenizedPair],
    pad_token_id: int,
    batch_size: int = 16,
    autocast_bf16: bool = False,
    desc: str = "reference log-probs",
    include_rejected: bool = True,
) -> dict[str, torch.Tensor]:
    """Sequence log-probs of every pair under ``model`` (eval mode, no grad; the caller restores
    training mode if it needs it). Pairs are batched by length (longest first) and returned in their
    order: less padding, and in float32 the same numbers bit for bit as batches in file order (tested).

    Returns: ``chosen``/``rejected`` (N,) float32 sums (``rejected`` only with ``include_rejected``),
    ``chosen_lengths`` (N,) response token counts and ``prompt_states`` (N, H) float32, all on the CPU.
    """
    forward = PairForward(model).eval()
    device = next(model.parameters()).device
    chosen, rejected, lengths, states = [], [], [], []
    order = length_order([len(p.prompt_ids) + max(len(p.chosen_ids), len(p.rejected_ids)) for p in pairs])
    for start in tqdm(range(0, len(pairs), batch_size), desc=desc, leave=False):
        chunk = [pairs[i] for i in order[start : start + batch_size]]
        batch = {k: v.to(device) for k, v in collate_pairs(chunk, pad_token_id, include_rejected).items()}
        with autocast(autocast_bf16, device):
            out = forward(**batch)
        half = len(chunk)
        chosen.append(out["logps"][:half].float().cpu())
        rejected.append(out["logps"][half:].float().cpu())
        lengths.append(out["lengths"][:half].float().cpu())
        states.append(out["prompt_states"][:half].float().cpu())
    back = torch.empty(len(order), dtype=torch.long)
    back[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))  # sorted position of each pair
    return {
        "chosen": torch.cat(chosen)[back],
        **({"rejected": torch.cat(rejected)[back]} if include_rejected else {}),
        "chosen_lengths": torch.cat(lengths)[back],
        "prompt_states": torch.cat(states)[back],
    }


def cache_settings(model_path: str, max_length: int, max_prompt_length: int, autocast_bf16: bool) -> dict:
    """What a cache depends on; the trainer refuses a cache whose settings differ from its run."""
    return {
        "model_sha256": sha256_dir(model_path),
        "max_length": max_length,
        "max_prompt_length": max_prompt_length,
        "autocast_bf16": autocast_bf16,
    }


def main_ref_logps(argv: list[str]) -> int:
    """``python -m upo ref-logps``: cache reference log-probs of the train and test pairs."""
    from upo.models.loading import load_model, load_tokenizer

    parser = argparse.ArgumentParser(prog="python -m upo ref-logps", description=main_ref_logps.__doc__)
    parser.add_argument("--model", required=True, help="reference model folder (the SFT model)")
    parser.add_argument("--train", required=True, help="prepared train split (JSONL)")
    parser.add_argument("--test", required=True, help="prepared test split (JSONL)")
    parser.add_argument("--out", required=True, help="output .pt file")
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--max-prompt-length", type=int, default=128)
    parser.add_argument("--train-pairs", type=int, default=None, help="first N train pairs only (default all)")
    parser.add_argument("--test-pairs", type=int, default=64, help="test pairs cached for periodic eval")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--autocast-bf16", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for path in (args.model, args.train, args.test):
        if not os.path.exists(path):
            parser.error(f"not found: {path}")
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model).to(pick_device())  # the GPU when there is one
    cache = {"settings": cache_settings(args.model, args.max_length, args.max_prompt_length, args.autocast_bf16)}
    for split, path, limit in (("train", args.train, args.train_pairs), ("test", args.test, args.test_pairs)):
        records = read_jsonl(path)[:limit]
        pairs = tokenize_records(records, tokenizer, args.max_length, args.max_prompt_length)
        logps = compute_pair_logps(
            model, pairs, tokenizer.pad_token_id, args.batch_size, args.autocast_bf16, f"ref logps {split}"
        )
        cache[split] = {"ids": [r["id"] for r in records], **logps}
    from upo.io import atomic_path

    with atomic_path(args.out) as tmp:
        torch.save(cache, tmp)
    print(
        f"cached reference log-probs of {len(cache['train']['ids'])} train and "
        f"{len(cache['test']['ids'])} test pairs to {args.out}"
    )
    return 0


def load_reference_cache(path: str, expected_settings: dict) -> dict:
    """Load a cache and check it was made for this model and tokenisation."""
    if not path or not os.path.exists(path):
        raise FileNotFoundError(
            f"reference log-prob cache {path!r} not found; create it with `python -m upo ref-logps`"
        )
    cache = torch.load(path, weights_only=True)
    for key, value in expected_settings.items():
        if cache["settings"].get(key) != value:
            raise ValueError(
                f"{path}: cache was made with {key}={cache['settings'].get(key)!r}, run needs {value!r}; "
                "recompute it with `python -m upo ref-logps`"
            )
    return cache
