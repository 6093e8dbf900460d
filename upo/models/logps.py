"""Pure log-probability helpers shared by every trainer and the evaluator.

Conventions (the DPO repository's): ``labels`` equal ``input_ids`` with prompt and padding positions
set to ``IGNORE_INDEX``; logits at position t predict token t+1, so both are shifted by one.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits)[..., index] without materialising the full log-softmax in float32 copies.

    Args:
        logits: (N, V) or (B, T, V) scores.
        index: (N,) or (B, T) token ids to gather.
    Returns:
        Tensor shaped like ``index``.
    """
    gathered = torch.gather(logits, -1, index.unsqueeze(-1)).squeeze(-1)
    return gathered - torch.logsumexp(logits, dim=-1)


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probabilities of ``labels`` under ``logits``.

    Args:
        logits: (B, T, V) model outputs for the full sequence.
        labels: (B, T) target ids, ``IGNORE_INDEX`` on prompt/padding.
    Returns:
        (token_logps, mask), both (B, T-1); masked positions hold 0.
    """
    shifted_labels = labels[:, 1:]
    mask = shifted_labels != IGNORE_INDEX
    safe_labels = shifted_labels.masked_fill(~mask, 0)
    shifted_logits = logits[:, :-1, :]
    # Only response positions need a softmax: gather them first (the vocabulary dominates cost).
    out = torch.zeros(shifted_labels.shape, dtype=torch.float32, device=logits.device)
    if mask.any():
        selected = selective_log_softmax(shifted_logits[mask].float(), safe_labels[mask])
        out = out.masked_scatter(mask, selected)
    return out, mask


def pad_right(sequences: list[list[int]], pad_value: int) -> torch.Tensor:
    """Pad id lists on the right into a (B, T_max) long tensor."""
    width = max(len(s) for s in sequences)
    return torch.tensor([s + [pad_value] * (width - len(s)) for s in sequences], dtype=torch.long)
