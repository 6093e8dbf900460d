"""What a PPO sample is worth: the sequence reward of ``upo.train.ppo`` (docs/method.md, RLHF-PPO).

reward(x, y) = rm_weight * z(RM(x, y)) + r_aux(y): the Bradley-Terry reward model's score z-scored on
the training responses, plus UPO's weighted, normalised auxiliary rewards (M1), both in standard
deviations of the training responses so that ``aux_weight`` is on UPO's lambda scale.
"""

from __future__ import annotations

import torch

from upo.config import PPOConfig, RunConfig
from upo.rewards.normalise import AuxNormaliser, zscore_stats
from upo.strict import ConfigError
from upo.train.reward_model import load_reward_model, score


class SampleReward:
    """reward(x, y) = rm_weight * (RM(x, y) - mu) / sigma + sum_k c_k (r_k(y) - shift_k) / scale_k.

    mu, sigma: ``zscore_stats`` of the reward model's scores of every training response (chosen and
    rejected of each training pair), fitted once (``ppo.rm_normalisation: none``: 0 and 1), so the RM
    part and each auxiliary reward are in standard deviations of the training responses.
    Returns a dict of (B,) tensors: ``score`` (the total), its parts ``rm`` and ``aux``, and ``rm_raw``.
    """

    def __init__(self, run: RunConfig, config: PPOConfig, train_records: list[dict], device):
        self.rm_weight, self.run = config.rm_weight, run
        self.reward_model = self.rm_tokenizer = None
        self.rm_stats: dict | None = None  # the z-scoring statistics, for train_summary.json
        if config.rm_weight:
            if not run.reward_model:
                raise ConfigError("reward_model: required when ppo.rm_weight != 0 (train it with train-rm)")
            self.reward_model, self.rm_tokenizer = load_reward_model(run.reward_model, run.model.dtype, device)
            mean, std = 0.0, 1.0
            if config.rm_normalisation == "zscore":
                sides = [(r["prompt"], r[side]) for r in train_records for side in ("chosen", "rejected")]
                raw = self.raw_rm([p for p, _ in sides], [t for _, t in sides])
                mean, std = zscore_stats(raw.tolist())
            self.rm_stats = {"method": config.rm_normalisation, "mean": mean, "std": std}
        self.normaliser = None
        if run.data.aux_rewards:
            self.normaliser = AuxNormaliser.fit(train_records, run.data.aux_rewards, run.data.aux_normalisation)

    def raw_rm(self, prompts: list[list[dict]], texts: list[str]) -> torch.Tensor:
        """(B,) reward-model scores before normalisation."""
        return score(
            self.reward_model,
            self.rm_tokenizer,
            prompts,
            texts,
            max_length=self.run.data.max_length,
            max_prompt_length=self.run.data.max_prompt_length,
            batch_size=32,
            autocast_bf16=self.run.model.autocast_bf16,
        )

    def __call__(self, prompts: list[list[dict]], texts: list[str]) -> dict[str, torch.Tensor]:
        total = torch.zeros(len(texts))
        parts = {}
        if self.reward_model is not None:
            parts["rm_raw"] = self.raw_rm(prompts, texts)
            parts["rm"] = (parts["rm_raw"] - self.rm_stats["mean"]) / self.rm_stats["std"]
            total = total + self.rm_weight * parts["rm"]
        if self.normaliser is not None:
            from upo.rewards.scorers import score_texts  # imported here: loads scorers only for aux runs

            aux = torch.zeros(len(texts))
            for name, weight in self.normaliser.weights.items():
                unit = torch.tensor(score_texts(name, texts), dtype=torch.float32)
                aux += weight * (unit - self.normaliser.shift[name]) / self.normaliser.scale[name]
            parts["aux"] = aux
            total = total + aux
        return {"score": total, **parts}
