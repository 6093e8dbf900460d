"""What the trainer feeds a loss: for each need a loss declares, per-pair tensors of a split.

One provider per data need (``reference``, ``aux_rewards``, ``preference_scores``, the reference side of
``kl_logps``); the forward pass provides the rest (policy log-probs, ``value`` from the loss's side module,
``sequence_scores``, the policy side of ``kl_logps``). A loss's ``data_transform`` (CSFT's control tokens)
rewrites the records before any of this.
Statistics (auxiliary normalisation, preference z-scores) are always fitted on the training pairs
and applied unchanged to the held-out pairs, so held-out numbers use the training run's scale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from upo.config import RunConfig
from upo.data.batching import TokenizedPair, tokenize_pair
from upo.io import read_jsonl
from upo.models.pair_forward import cache_settings, compute_pair_logps, load_reference_cache, tokenize_records
from upo.rewards.normalise import AuxNormaliser
from upo.train.preference_scores import preference_score_tensors

FORWARD_NEEDS = frozenset({"rejected", "value", "sequence_scores"})  # provided by the forward pass


@dataclass
class PairData:
    """One split as the trainer uses it.

    ``tensors``: LossInputs field name -> (N,) tensor, row i belonging to ``records[i]``;
    ``prompt_states`` (N, H): the reference model's last-prompt-token states (side-module warm start),
    present when the loss needs ``value``.
    """

    records: list[dict]
    pairs: list[TokenizedPair]
    tensors: dict[str, torch.Tensor]
    prompt_states: torch.Tensor | None = None
    source_records: list[dict] | None = None  # the records before a loss's data transform (fit statistics)


def aux_reward_tensors(cfg: RunConfig, fit_records: list[dict], records: list[dict]) -> dict[str, torch.Tensor]:
    """r_aux of both responses, normalised with statistics fitted on the training responses."""
    normaliser = AuxNormaliser.fit(fit_records, cfg.data.aux_rewards, cfg.data.aux_normalisation)
    chosen, rejected = normaliser.pair_tensors(records)
    return {"aux_chosen_rewards": chosen, "aux_rejected_rewards": rejected}


def cache_rows(cache: dict, split: str, records: list[dict], path: str) -> torch.Tensor:
    """Row index of every record in the cache's ``split``; a missing pair names the cache file."""
    position = {rid: i for i, rid in enumerate(cache[split]["ids"])}
    missing = [r["id"] for r in records if r["id"] not in position]
    if missing:
        raise ValueError(f"{path}: no cached log-probs for pair {missing[0]!r}")
    return torch.tensor([position[r["id"]] for r in records], dtype=torch.long)


def reference_tensors(cache: dict, split: str, records: list[dict], path: str) -> dict[str, torch.Tensor]:
    rows = cache_rows(cache, split, records, path)
    return {
        "reference_chosen_logps": cache[split]["chosen"][rows],
        "reference_rejected_logps": cache[split]["rejected"][rows],
    }


def mismatched_response(records: list[dict], index: int) -> str:
    """y'_i of KTO's reference point: the response of the next pair in file order (wrapping), its chosen one
    for even i and its rejected one for odd i, so the y' are distributed like the data's responses."""
    other = records[(index + 1) % len(records)]
    return other["chosen"] if index % 2 == 0 else other["rejected"]


def attach_mismatched(cfg: RunConfig, tokenizer, records: list[dict], pairs: list[TokenizedPair]) -> None:
    """Tokenise each pair's mismatched sequence (x_i, y'_i) into ``kl_prompt_ids`` / ``kl_ids``, truncated
    by the pair rule on its own."""
    if len(records) < 2:
        raise ValueError(
            f"{cfg.data.train}: KTO's kl_logps pair each prompt with another pair's response; "
            f"need >= 2 pairs, got {len(records)}"
        )
    for index, (record, pair) in enumerate(zip(records, pairs, strict=True)):
        response = mismatched_response(records, index)
        mismatched = tokenize_pair(
            tokenizer,
            record["prompt"],
            response,
            response,
            cfg.data.max_length,
            cfg.data.max_prompt_length,
            record.get("response_prefix", ""),
        )
        pair.kl_prompt_ids, pair.kl_ids = mismatched.prompt_ids, mismatched.chosen_ids


def reference_kl_tensors(
    cfg: RunConfig, pairs: list[TokenizedPair], pad_token_id: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """log pi_ref(y'_i | x_i) of every pair's mismatched sequence, computed once with the reference model.

    The mismatch is fixed per split (``mismatched_response``), so, as TRL precomputes its reference KL
    log-probs, the reference is run once here and freed; the reference cache of the pair stays as it is.
    """
    from upo.models.loading import load_model

    reference = load_model(cfg.reference.path or cfg.model.path, cfg.model.dtype, None, cfg.model.trust_remote_code)
    reference.to(device)
    sequences = [TokenizedPair(p.kl_prompt_ids, p.kl_ids, [], p.truncated) for p in pairs]
    logps = compute_pair_logps(
        reference, sequences, pad_token_id, 16, cfg.model.autocast_bf16, "reference KL log-probs", False
    )
    del reference
    return {"reference_kl_logps": logps["chosen"].to(torch.float32)}


@dataclass
class ProviderContext:
    """What a provider may read: the run, the reference cache, the split and its (fit) records and pairs."""

    cfg: RunConfig
    cache: dict | None
    split: str
    fit_records: list[dict]
    records: list[dict]
    pairs: list[TokenizedPair]
    pad_token_id: int
    device: torch.device


# need -> provider(context) -> LossInputs fields
Provider = Callable[[ProviderContext], dict[str, torch.Tensor]]
PROVIDERS: dict[str, Provider] = {
    "reference": lambda c: reference_tensors(c.cache, c.split, c.records, c.cfg.reference.logps_cache),
    "aux_rewards": lambda c: aux_reward_tensors(c.cfg, c.fit_records, c.records),
    # p(y) by data.preference_source: cross-fitted reward model | binary | oracle (upo.train.preference_scores)
    "preference_scores": lambda c: preference_score_tensors(c.cfg.data, c.split, c.fit_records, c.records),
    "kl_logps": lambda c: reference_kl_tensors(c.cfg, c.pairs, c.pad_token_id, c.device),
}


def check_needs(needs: frozenset[str]) -> None:
    unknown = set(needs) - set(PROVIDERS) - FORWARD_NEEDS
    if unknown:
        raise ValueError(f"the trainer cannot provide loss needs {sorted(unknown)}; add a provider in {__name__}")


def needs_cache(needs: frozenset[str]) -> bool:
    return bool(needs & {"reference", "value"})


def load_cache(cfg: RunConfig) -> dict:
    """The reference log-prob cache, checked against this run's model and tokenisation settings."""
    settings = cache_settings(
        cfg.reference.path or cfg.model.path, cfg.data.max_length, cfg.data.max_prompt_length, cfg.model.autocast_bf16
    )
    return load_reference_cache(cfg.reference.logps_cache, settings)


def build_pair_data(
    cfg: RunConfig,
    needs: frozenset[str],
    tokenizer,
    split: str,
    records: list[dict],
    fit_records: list[dict],
    cache: dict | None,
    transform: Callable[[list[dict], list[dict], dict[str, float]], list[dict]] | None = None,
    device: torch.device | None = None,
) -> PairData:
    """Tokenised pairs of ``records`` and every tensor ``needs`` asks for (``split``: cache split name).

    ``transform`` is the loss's ``data_transform`` (fitted on ``fit_records``, the raw train split);
    ``device`` is where a provider that runs a model (the reference of ``kl_logps``) runs it.
    """
    check_needs(needs)
    source_records = records
    if transform is not None:
        records = transform(records, fit_records, dict(cfg.data.aux_rewards))
    pairs = tokenize_records(records, tokenizer, cfg.data.max_length, cfg.data.max_prompt_length)
    if "kl_logps" in needs:  # the forward's side of the need: the mismatched sequences to forward
        attach_mismatched(cfg, tokenizer, records, pairs)
    device = device or torch.device("cpu")
    context = ProviderContext(cfg, cache, split, fit_records, records, pairs, tokenizer.pad_token_id, device)
    tensors: dict[str, torch.Tensor] = {}
    for need in sorted(needs & set(PROVIDERS)):
        tensors.update(PROVIDERS[need](context))
    states = None
    if "value" in needs:
        states = cache[split]["prompt_states"][cache_rows(cache, split, records, cfg.reference.logps_cache)]
    return PairData(records, pairs, tensors, states, source_records)


def forward_sides(needs: frozenset[str]) -> dict[str, bool]:
    """Which rows the pair forward stacks after the chosen ones: ``collate_pairs`` keywords."""
    return {"include_rejected": "rejected" in needs, "include_kl": "kl_logps" in needs}


def heldout_records(cfg: RunConfig, cache: dict | None) -> list[dict]:
    """The first ``train.eval_pairs`` test pairs (with cached reference log-probs when a cache is used)."""
    records = read_jsonl(cfg.data.test)
    if cache is not None:
        cached = set(cache["test"]["ids"])
        records = [r for r in records if r["id"] in cached]
    return records[: cfg.train.eval_pairs]
