"""The model-size table: each name's kind, source, architecture and rough parameter count.

Kept apart from ``upo.models.loading`` (which builds and loads the folders, and imports torch) so
that the workflow and the config checks can read it cheaply. ``loading`` re-exports every name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from upo.registry import Registry

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ModelSpec:
    """One entry of :data:`MODEL_TABLE`.

    Attributes:
        kind: ``gguf`` (packaged GGUF file), ``scratch`` (random init, project tokenizer) or ``hub``.
        source: GGUF file name (gguf), hub id (hub) or "" (scratch).
        description: one line for docs and ``--help``.
        arch: LlamaConfig keyword arguments for scratch sizes.
        approx_params: rough parameter count, for tables and sanity checks.
    """

    kind: Literal["gguf", "scratch", "hub"]
    source: str
    description: str
    arch: dict[str, Any] = field(default_factory=dict)
    approx_params: int = 0


def _llama(hidden: int, layers: int, heads: int, intermediate: int) -> dict[str, Any]:
    return dict(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=512,
        tie_word_embeddings=True,  # halves the embedding cost, which dominates at these sizes
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
    )


MODEL_TABLE: dict[str, ModelSpec] = {
    "pico": ModelSpec("scratch", "", "Llama 4x128, ~1M params, project BPE", _llama(128, 4, 4, 344), 1_200_000),
    "micro": ModelSpec("scratch", "", "Llama 6x192, ~3M params, project BPE", _llama(192, 6, 6, 512), 3_200_000),
    "nano": ModelSpec("scratch", "", "Llama 8x320, ~10M params, project BPE", _llama(320, 8, 8, 864), 11_000_000),
    "smollm2-135m": ModelSpec(
        "gguf", SMOLLM2_FILE, "SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI, dequantised)", approx_params=135_000_000
    ),
    "pythia-1.4b": ModelSpec("hub", "EleutherAI/pythia-1.4b", "Pythia 1.4B (paper size)", approx_params=1_400_000_000),
    "pythia-2.8b": ModelSpec("hub", "EleutherAI/pythia-2.8b", "Pythia 2.8B (paper size)", approx_params=2_800_000_000),
    "pythia-6.9b": ModelSpec("hub", "EleutherAI/pythia-6.9b", "Pythia 6.9B (paper size)", approx_params=6_900_000_000),
    "llama-7b": ModelSpec("hub", "huggyllama/llama-7b", "Llama-1 7B (paper size)", approx_params=6_700_000_000),
    "llama-13b": ModelSpec("hub", "huggyllama/llama-13b", "Llama-1 13B (paper size)", approx_params=13_000_000_000),
}

MODELS: Registry[ModelSpec] = Registry("model")
for _name, _spec in MODEL_TABLE.items():
    MODELS.register(_name, _spec)


GATE_PRIORITY = 100  # above any size's priority: jobs that many others wait for run first


def scheduling_priority(name: str, gate: bool = False) -> int:
    """Job priority of a model size: the order of magnitude of its parameter count (0 when unknown),
    plus :data:`GATE_PRIORITY` for a ``gate`` job (SFT, reference log-probs, reward models).

    Gates first: every preference run of a size waits for its SFT model, so a small model's SFT left
    behind a large model's runs idles half the machine (measured: the pico SFT started 11 minutes into
    the default run). Then larger sizes first among the other jobs (longest processing time first):
    a larger model's runs are several times a small model's, and left for the end they alone decide the
    wall time (measured: SmolLM2's last training started 19 minutes in, behind pico's short jobs).
    """
    spec = MODEL_TABLE.get(name)
    size = int(math.log10(spec.approx_params)) if spec is not None and spec.approx_params > 0 else 0
    return size + (GATE_PRIORITY if gate else 0)


def get_spec(name: str) -> ModelSpec:
    """The table entry for ``name``; unknown names raise KeyError listing the known ones."""
    return MODELS.get(name)
