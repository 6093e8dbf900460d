"""Tokenisation of preference pairs and the collator that stacks [chosen; rejected] for one forward.

Truncation follows the DPO repository's convention: if prompt + longest response exceeds
``max_length``, first keep only the last ``max_prompt_length`` prompt tokens, then cut responses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from upo.models.logps import IGNORE_INDEX, pad_right


def format_prompt(tokenizer, messages: list[dict], response_prefix: str = "") -> str:
    """Render chat ``messages`` with the tokenizer's chat template, ready for the assistant turn.

    ``response_prefix`` is text placed after the assistant header, part of the prompt (never a target):
    a loss's control tokens (CSFT), used identically in training and sampling.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat_template; "
            "every model in upo.models.loading ships one"
        )
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + response_prefix


@dataclass
class TokenizedPair:
    prompt_ids: list[int]
    chosen_ids: list[int]  # response tokens only, ending with EOS
    rejected_ids: list[int]
    truncated: bool
    # A mismatched sequence (x_i, y'_i), y' another pair's response (KTO's reference point): its own
    # prompt ids (truncated on their own) and response ids. Empty unless a loss needs ``kl_logps``.
    kl_prompt_ids: list[int] = field(default_factory=list)
    kl_ids: list[int] = field(default_factory=list)


def encode_response(tokenizer, text: str) -> list[int]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids + [tokenizer.eos_token_id]


def tokenize_pair(
    tokenizer,
    messages: list[dict],
    chosen: str,
    rejected: str,
    max_length: int,
    max_prompt_length: int,
    response_prefix: str = "",
) -> TokenizedPair:
    """Tokenise one pair under the DPO truncation rule (prompt first, then responses)."""
    prompt_ids = tokenizer(format_prompt(tokenizer, messages, response_prefix), add_special_tokens=False)["input_ids"]
    chosen_ids = encode_response(tokenizer, chosen)
    rejected_ids = encode_response(tokenizer, rejected)
    truncated = False
    longest = max(len(chosen_ids), len(rejected_ids))
    if len(prompt_ids) + longest > max_length:
        truncated = True
        prompt_ids = prompt_ids[-max_prompt_length:]
    budget = max_length - len(prompt_ids)
    if longest > budget:
        truncated = True
        chosen_ids, rejected_ids = chosen_ids[:budget], rejected_ids[:budget]
    return TokenizedPair(prompt_ids, chosen_ids, rejected_ids, truncated)


def sequence_and_labels(prompt_ids: list[int], response_ids: list[int]) -> tuple[list[int], list[int]]:
    """Full sequence and its labels (prompt positions masked)."""
    return prompt_ids + response_ids, [IGNORE_INDEX] * len(prompt_ids) + response_ids


def collate_pairs(
    pairs: list[TokenizedPair], pad_token_id: int, include_rejected: bool = True, include_kl: bool = False
) -> dict[str, torch.Tensor]:
    """Stack chosen, then rejected, then mismatched sequences into one batch (chosen only for SFT).

    Returns:
        ``input_ids``, ``attention_mask``, ``labels``: (kB, T), rows [0, B) chosen, [B, 2B) rejected,
        [2B, 3B) the mismatched (x_i, y'_i) with ``include_kl``; ``prompt_last_index``: (kB,) position of
        the last prompt token (for the value head).
    """
    sides = [("prompt_ids", "chosen_ids")]
    sides += [("prompt_ids", "rejected_ids")] if include_rejected else []
    sides += [("kl_prompt_ids", "kl_ids")] if include_kl else []
    sequences, labels, prompt_last = [], [], []
    for prompt_field, response_field in sides:
        for pair in pairs:
            prompt_ids = getattr(pair, prompt_field)
            ids, lab = sequence_and_labels(prompt_ids, getattr(pair, response_field))
            sequences.append(ids)
            labels.append(lab)
            prompt_last.append(len(prompt_ids) - 1)
    input_ids = pad_right(sequences, pad_token_id)
    attention_mask = pad_right([[1] * len(s) for s in sequences], 0)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": pad_right(labels, IGNORE_INDEX),
        "prompt_last_index": torch.tensor(prompt_last, dtype=torch.long),
    }
