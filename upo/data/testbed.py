"""The shipped default testbed: SmolLM2 samples on project prompts, a gold sentiment oracle, aux scores.

Modelled on the DPO paper's controlled-sentiment task (see ``upo-method.md``, "The embedded default
testbed"). For every prompt of :func:`upo.data.testbed_prompts.build_prompts`, ``samples`` responses are sampled from
SmolLM2-135M-Instruct (chat template, pure ancestral sampling: temperature 1, top_p 1, top_k off) by the
shared sampler ``upo.models.sampling``; ``provenance.json`` names the generator version that drew the
samples (:data:`GENERATOR_VERSIONS`: the shipped data is version 1, drawn before the sampler was shared).
The gold user preference is VADER's compound sentiment: chosen = the response with the higher compound,
rejected = the lower one; pairs with equal scores are dropped and counted. Every response also carries
the scores of every registered auxiliary reward (``upo.rewards.scorers``), so the designer objectives are ready.

Outputs in ``--out-dir``: ``train.jsonl``, ``test.jsonl`` (record schema, ``source: "default"``),
``provenance.json`` (command, seed, model hash, versions, counts, settings, timings, and the measured
facts that the data poses the paper's problem) and ``README.md`` (both from ``upo.data.testbed_report``).
The project tokenizer (``resources/tokenizer``) is retrained on the train split, so one rule reproduces both.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from upo.data.testbed_prompts import build_prompts, slug
from upo.data.testbed_report import package_versions, problem_facts, testbed_readme
from upo.io import read_jsonl, sha256_file, write_json, write_jsonl, write_text

DEFAULT_MODEL = "smollm2-135m"
CACHED_MODEL_DIR = Path(__file__).resolve().parents[2] / "resources" / "models" / DEFAULT_MODEL


def vader_compound(texts: list[str]) -> list[float]:
    """Gold preference oracle: VADER compound sentiment in [-1, 1] (higher = preferred)."""
    import vader

    return [float(vader.polarity_scores(text)["compound"]) for text in texts]


# ------------------------------------------------------------------------------------- sampling

# How the responses were sampled, by generator version. The provenance names the version that made a
# dataset (a --reuse-samples rerun keeps the version of the cached samples). Same version, seed and
# settings: same samples (up to float rounding on another machine or thread count).
GENERATOR_VERSIONS = {
    "1": "transformers generate() over batches of batch_size // samples prompts in prompt order "
    "(num_return_sequences=samples, left padding), torch.manual_seed(seed) once before the first batch, "
    "stop at the tokenizer's EOS; made the shipped resources/default",
    "2": "upo.models.sampling.sample_token_ids (the sampler evaluation and PPO use): each response seeded "
    "from (seed, prompt index, sample index, attempt), stop at the model's and the tokenizer's EOS",
}
GENERATOR_VERSION = "2"


def sample_responses(
    model,
    tokenizer,
    prompt_texts: list[str],
    samples: int = 2,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    batch_size: int = 32,
    seed: int = 0,
    max_resample_rounds: int = 3,
) -> tuple[list[list[str]], dict]:
    """Sample ``samples`` responses per prompt (chat template, the shared sampler); resample empty ones.

    Row keys for ``upo.models.sampling``: ``(prompt index, sample index, attempt)``, attempt 0 first, so
    every response depends on (seed, its key) only. ``batch_size`` counts sequences decoded together.
    Empty responses (after stripping) are resampled with attempt 1, 2, ... up to ``max_resample_rounds``
    times; any still empty stay "".

    Returns:
        (responses[i][j] for prompt i, sample j; stats with tokens, timings and resampling counts)
    """
    from upo.models.sampling import decode_responses, encode_prompts, sample_token_ids, stop_token_ids

    prompt_ids = encode_prompts(tokenizer, [[{"role": "user", "content": t}] for t in prompt_texts])
    stops = stop_token_ids(model, tokenizer)
    settings = dict(
        seed=seed,
        stop_ids=stops,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        batch_size=batch_size,
    )
    tokens = capped = 0

    def draw(keys: list[tuple[int, int, int]]) -> list[str]:
        nonlocal tokens, capped
        ids = sample_token_ids(model, [prompt_ids[i] for i, _, _ in keys], keys=keys, **settings)
        tokens += sum(len(row) for row in ids)
        capped += sum(1 for row in ids if row[-1] not in stops)
        return decode_responses(tokenizer, ids)

    start = time.perf_counter()
    keys = [(i, j, 0) for i in range(len(prompt_ids)) for j in range(samples)]
    texts = draw(keys)
    responses = [texts[k : k + samples] for k in range(0, len(texts), samples)]
    resampled = 0
    for attempt in range(1, max_resample_rounds + 1):
        empty = [(i, j, attempt) for i, row in enumerate(responses) for j, text in enumerate(row) if not text]
        if not empty:
            break
        resampled += len(empty)
        for (i, j, _), text in zip(empty, draw(empty), strict=True):
            responses[i][j] = text
    wall = time.perf_counter() - start
    stats = {
        "generated_tokens": tokens,
        "sampling_wall_s": round(wall, 2),
        "torch_threads": torch.get_num_threads(),
        "tokens_per_s": round(tokens / wall, 1) if wall > 0 else None,
        "responses_hitting_cap": capped,
        "resampled_empty": resampled,
        "empty_after_resampling": sum(1 for row in responses for text in row if not text),
    }
    return responses, stats


# ------------------------------------------------------------------------------------- records


def build_records(prompts: list[dict], responses: list[list[str]], reward_names: list[str]) -> tuple[dict, dict]:
    """Turn sampled responses into preference records split by the prompts' ``split``.

    Returns:
        ({"train": [...], "test": [...]}, counts of dropped pairs)
    """
    from upo.rewards.scorers import score_texts

    flat = [(p, text) for p, row in zip(prompts, responses, strict=True) for text in row]
    oracle = vader_compound([text for _, text in flat])
    aux = {
        name: score_texts(name, [t for _, t in flat], prompts=[p["text"] for p, _ in flat]) for name in reward_names
    }
    splits: dict[str, list[dict]] = {"train": [], "test": []}
    dropped = {"equal_oracle": 0, "empty_response": 0}
    k = 0
    for prompt, row in zip(prompts, responses, strict=True):
        idx = list(range(k, k + len(row)))
        k += len(row)
        if any(not flat[i][1] for i in idx):
            dropped["empty_response"] += 1
            continue
        best = max(idx, key=lambda i: oracle[i])  # first of equal maxima: deterministic
        worst = min(idx, key=lambda i: oracle[i])
        if oracle[best] == oracle[worst]:
            dropped["equal_oracle"] += 1
            continue
        splits[prompt["split"]].append(
            {
                "id": prompt["id"],
                "prompt": [{"role": "user", "content": prompt["text"]}],
                "chosen": flat[best][1],
                "rejected": flat[worst][1],
                "source": "default",
                "cluster": slug(prompt["topic"]),  # prompts of one topic are not independent (bootstrap unit)
                "aux": {
                    side: {name: aux[name][i] for name in reward_names}
                    for side, i in (("chosen", best), ("rejected", worst))
                },
                "oracle": {"chosen": oracle[best], "rejected": oracle[worst]},
            }
        )
    return splits, dropped


def read_shipped(out_dir: str | Path) -> dict[str, list[dict]]:
    """Read ``train.jsonl`` and ``test.jsonl`` of a generated default dataset."""
    return {split: read_jsonl(Path(out_dir) / f"{split}.jsonl") for split in ("train", "test")}


# ----------------------------------------------------------------------------------------- driver


def generate_default_data(
    out_dir: str | Path,
    seed: int = 0,
    n_prompts: int = 1000,
    samples: int = 2,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    batch_size: int = 32,
    tokenizer_out: str | Path | None = None,
    vocab_size: int = 3072,
    model=None,
    tokenizer=None,
    command: str = "",
    samples_cache: str | Path | None = None,
    reuse_samples: bool = False,
) -> dict:
    """Generate the default dataset into ``out_dir``; return its provenance dict.

    Args:
        model, tokenizer: injected generator (tests); default: SmolLM2-135M-Instruct (cached folder
            ``resources/models/smollm2-135m`` if present, else converted from the packaged GGUF).
        tokenizer_out: where to (re)train the project tokenizer on the train split (None: skip).
        samples_cache: JSON file the raw samples (and sampling settings) are written to after sampling.
        reuse_samples: read the raw samples from ``samples_cache`` instead of sampling, if its settings
            match exactly (to redo the scoring/splitting steps without 15 minutes of sampling).
        Other arguments: see ``python -m upo generate-default-data --help``.
    """
    from upo.models import loading as models
    from upo.rewards.scorers import available_rewards

    prompts = build_prompts(seed, n_prompts)
    settings = {
        "seed": seed,
        "n_prompts": n_prompts,
        "samples": samples,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "batch_size": batch_size,
    }
    cached = None
    if reuse_samples:
        if samples_cache is None or not Path(samples_cache).is_file():
            raise FileNotFoundError(f"--reuse-samples: no samples cache at {samples_cache}")
        cached = json.loads(Path(samples_cache).read_text())
        if cached["settings"] != settings or cached["prompt_ids"] != [p["id"] for p in prompts]:
            raise ValueError(f"{samples_cache}: settings {cached['settings']} differ from {settings}")
    model_info = {"name": "injected", "gguf_sha256": None}
    if model is None:
        gguf = models.smollm2_gguf_path()
        model_info = {"name": DEFAULT_MODEL, "gguf_file": gguf.name, "gguf_sha256": sha256_file(gguf)}
        if cached is None and (CACHED_MODEL_DIR / "config.json").is_file():
            model, tokenizer = models.load_model(CACHED_MODEL_DIR), models.load_tokenizer(CACHED_MODEL_DIR)
        elif cached is None:
            model, tokenizer = models.build_model(DEFAULT_MODEL)
    elif tokenizer is None:
        raise ValueError("an injected model needs its tokenizer")
    if cached is not None:
        responses, stats = cached["responses"], cached["stats"]
        # caches written before the version was recorded hold version-1 samples
        generator_version = cached.get("generator_version", "1")
    else:
        generator_version = GENERATOR_VERSION
        responses, stats = sample_responses(
            model,
            tokenizer,
            [p["text"] for p in prompts],
            samples,
            max_new_tokens,
            temperature,
            top_p,
            top_k,
            batch_size,
            seed,
        )
        if samples_cache is not None:
            write_json(
                samples_cache,
                {
                    "settings": settings,
                    "prompt_ids": [p["id"] for p in prompts],
                    "responses": responses,
                    "stats": stats,
                    "model": model_info,
                    "generator_version": generator_version,
                },
            )
    post_start = time.perf_counter()
    reward_names = available_rewards()
    splits, dropped = build_records(prompts, responses, reward_names)
    out_dir = Path(out_dir)
    for split, records in splits.items():
        write_jsonl(out_dir / f"{split}.jsonl", records)
    tokenizer_info = None
    if tokenizer_out is not None:
        corpus = [t for r in splits["train"] for t in (r["prompt"][-1]["content"], r["chosen"], r["rejected"])]
        models.train_project_tokenizer(corpus, tokenizer_out, vocab_size)
        tokenizer_info = {
            "vocab_size": vocab_size,
            "tokenizer_json_sha256": sha256_file(Path(tokenizer_out) / "tokenizer.json"),
        }
    provenance = {
        "command": command or "python -m upo generate-default-data",
        "seed": seed,
        "generator_version": generator_version,  # how the samples were drawn: see GENERATOR_VERSIONS
        "model": model_info,
        "sampling": {
            "samples": samples,
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "batch_size": batch_size,
            "padding": "left",
            "chat_template": True,
            "torch_threads": stats.get("torch_threads", torch.get_num_threads()),
        },
        "oracle": "vader compound sentiment (nltk-vader-sentiment), raw in [-1, 1]",
        "aux_rewards": reward_names,
        "versions": package_versions(),
        "counts": {
            "prompts": len(prompts),
            "prompts_train": sum(p["split"] == "train" for p in prompts),
            "prompts_test": sum(p["split"] == "test" for p in prompts),
            "responses": sum(len(row) for row in responses),
            "pairs_train": len(splits["train"]),
            "pairs_test": len(splits["test"]),
            "dropped_equal_oracle": dropped["equal_oracle"],
            "dropped_empty_response": dropped["empty_response"],
            "resampled_empty": stats["resampled_empty"],
            "responses_hitting_cap": stats["responses_hitting_cap"],
            "generated_tokens": stats["generated_tokens"],
        },
        "timing": {
            "sampling_wall_s": stats["sampling_wall_s"],
            "tokens_per_s": stats["tokens_per_s"],
            # scoring, splitting, tokenizer and writing (sampling excluded, so a --reuse-samples rerun
            # reports the same sampling cost)
            "post_sampling_wall_s": round(time.perf_counter() - post_start, 2),
        },
        "tokenizer": tokenizer_info,
        "samples_reused_from_cache": bool(reuse_samples),  # scoring redone on cached raw samples
        "facts": problem_facts(splits["train"] + splits["test"]),
    }
    write_json(out_dir / "provenance.json", provenance)
    write_text(out_dir / "README.md", testbed_readme(provenance))
    return provenance


def main(argv: list[str]) -> int:
    """CLI: ``python -m upo generate-default-data --out-dir resources/default [options]``."""
    parser = argparse.ArgumentParser(prog="python -m upo generate-default-data", description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", required=True, help="folder for train/test.jsonl, provenance.json, README.md")
    parser.add_argument("--seed", type=int, default=0, help="topic shuffle and sampling seed")
    parser.add_argument("--n-prompts", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=2, help="responses per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0, help="0 disables top-k (pure ancestral sampling)")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per generate call")
    parser.add_argument(
        "--tokenizer-out",
        default="resources/tokenizer",
        help="retrain the project tokenizer here on the train split ('' to skip)",
    )
    parser.add_argument("--vocab-size", type=int, default=3072)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads; fixed so the sampled numerics do not depend on the machine",
    )
    parser.add_argument(
        "--samples-cache",
        default="resources/cache/default_samples.json",
        help="raw samples written here after sampling ('' to skip)",
    )
    parser.add_argument(
        "--reuse-samples",
        action="store_true",
        help="take the raw samples from --samples-cache (settings must match) instead of sampling",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    provenance = generate_default_data(
        args.out_dir,
        args.seed,
        args.n_prompts,
        args.samples,
        args.max_new_tokens,
        args.temperature,
        args.top_p,
        args.top_k,
        args.batch_size,
        args.tokenizer_out or None,
        args.vocab_size,
        command=" ".join(["python -m upo generate-default-data", *(a for a in argv if a != "--reuse-samples")]),
        samples_cache=args.samples_cache or None,
        reuse_samples=args.reuse_samples,
    )
    c = provenance["counts"]
    print(
        f"wrote {c['pairs_train']} train / {c['pairs_test']} test pairs to {args.out_dir}; "
        f"facts: {provenance['facts']}"
    )
    return 0
