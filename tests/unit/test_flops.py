"""Model FLOP counts and MFU (upo/train/flops.py): hand-computed values, not speeds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from upo.train.flops import matmul_peak_gflops, mfu, parameter_counts, step_flops


def test_full_fine_tuning_is_six_n_t():
    assert step_flops(total_params=100, trainable_params=100, tokens=7, lora=False) == 6 * 100 * 7


def test_lora_is_four_frozen_plus_six_adapter():
    # 1,000 frozen weights: forward 2 + backward through activations 2; 10 adapter weights: 6.
    assert step_flops(total_params=1010, trainable_params=10, tokens=3, lora=True) == 4 * 1000 * 3 + 6 * 10 * 3


def test_mfu_is_achieved_over_peak():
    assert mfu(flops=50e9, seconds=2.0, peak_gflops=100.0) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="positive"):
        mfu(1.0, 0.0, 100.0)


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)  # 40
        self.body = nn.Linear(4, 4)  # 20
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight  # tied: counted once

    def get_input_embeddings(self) -> nn.Module:
        return self.embed


def test_parameter_counts_count_tied_weights_once():
    model = TiedLM()
    model.body.weight.requires_grad_(False)  # 16 frozen
    assert parameter_counts(model) == {"total": 60, "trainable": 44, "embedding": 40}


def test_parameter_counts_of_a_lora_model(tiny_model_dir):
    from upo.config import LoraConfig
    from upo.models.loading import load_model

    full = parameter_counts(load_model(tiny_model_dir))
    lora = parameter_counts(load_model(tiny_model_dir, lora=LoraConfig(r=2, alpha=4)))
    assert full["trainable"] == full["total"]
    assert 0 < lora["trainable"] < full["total"] and lora["total"] == full["total"] + lora["trainable"]
    assert lora["embedding"] == full["embedding"] > 0


def test_matmul_peak_is_a_positive_rate():
    assert matmul_peak_gflops(torch.float32, size=64, repeats=2) > 0
