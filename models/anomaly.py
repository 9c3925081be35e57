"""The real-data next-step model (SSR-DFD §4's anomaly proxy), as the runtime runs it.

A small causal transformer predicts each L2-normalised feature from the ones before it;
the per-step score is the squared error of that prediction. Trained on real clips only
(`research/anomaly.py`), it never saw a manipulation, so it flags steps that are unlike
real footage whatever made them. A probe may carry one beside its linear head
(`models/probes.py`); this module imports torch at the top and is imported only where a
probe needs it.

The network's `max_steps` is its context: training cuts clips into windows of that many
steps, and clips longer than that are scored in blocks of half as many steps, each
predicted with the block before it as context. So every clip, of any length, is scored
with positions that training filled (an untrained position embedding gave prediction
errors 30 times the real clips' own on a clip repeated ten times).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class NextStepConfig:
    layers: int = 4
    heads: int = 4
    width: int = 512
    max_steps: int = 4096  # the context: longer clips are trained on and scored in windows


class NextStepPredictor(nn.Module):
    def __init__(self, dim: int, config: NextStepConfig = NextStepConfig()):
        super().__init__()
        self.config = config
        self.inp = nn.Linear(dim, config.width)
        self.position = nn.Embedding(config.max_steps, config.width)
        layer = nn.TransformerEncoderLayer(config.width, config.heads, 4 * config.width, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.out = nn.Linear(config.width, dim)

    def windows(self, features: torch.Tensor) -> list[torch.Tensor]:
        """A training clip cut into windows of the context's length, overlapping by half
        (the clip itself when it fits), so every position is trained."""
        size = self.config.max_steps
        if len(features) <= size:
            return [features]
        starts = list(range(0, len(features) - size + 1, size // 2))
        if starts[-1] != len(features) - size:
            starts.append(len(features) - size)
        return [features[start: start + size] for start in starts]

    def step_errors(self, features: torch.Tensor) -> torch.Tensor:
        """Squared error of predicting step t from steps < t, for t = 1..T-1 (T-1 values), in one pass."""
        x = F.normalize(features[: self.config.max_steps], dim=-1)
        steps = len(x)
        hidden = self.inp(x[:-1]) + self.position(torch.arange(steps - 1))
        mask = torch.triu(torch.full((steps - 1, steps - 1), float("-inf")), diagonal=1)
        predicted = self.out(self.blocks(hidden[None], mask=mask, is_causal=True)[0])
        return ((predicted - x[1:]) ** 2).mean(-1)

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """Per-step anomaly scores (T), the first step taking the second's; long clips in
        blocks with the previous block as context (see the module docstring)."""
        steps = len(features)
        if steps < 2:
            return torch.zeros(steps, dtype=features.dtype)
        if steps <= self.config.max_steps:
            errors = self.step_errors(features)
        else:
            block = self.config.max_steps // 2
            parts = [self.step_errors(features[:block])]
            for start in range(block, steps, block):
                window = features[start - block: start + block]
                parts.append(self.step_errors(window)[block - 1:])
            errors = torch.cat(parts)
        return torch.cat([errors[:1], errors])
