"""Training, the SSR-DFD protocol: L2-normalised steps, a per-step linear head,
logsumexp pooling, cross-entropy on [-S, S], Adam (lr 1e-3), one variable-length video
per optimisation step, up to 100 epochs, early stopping on validation loss (patience 10),
the best-validation weights kept, seed 43.

Option (Mylonas & Papadopoulos, FSFM + metric learning): a small projection head, trained
with the classification loss plus a batch-all triplet loss on pooled video embeddings;
the triplet classes can be attribution labels (manipulation type or source dataset).

`fit` is the one early-stopping loop; the anomaly proxies (research/anomaly.py) use it too.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.probes import LinearProbe


@dataclass
class TrainConfig:
    lr: float = 1e-3
    max_epochs: int = 100
    patience: int = 10
    seed: int = 43
    batch_size: int = 1  # videos per optimisation step (the paper: 1)
    triplet_weight: float = 0.0  # > 0: projection head + batch-all triplet loss
    triplet_margin: float = 0.2
    projection_dim: int = 128

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitResult:
    model: nn.Module  # with the best-validation weights loaded
    history: list[dict]  # per epoch: train_loss, val_loss
    best_epoch: int  # 1-based
    stopped_epoch: int


def fit(model: nn.Module, batch_loss: Callable[[nn.Module, list], torch.Tensor], val_loss: Callable[[nn.Module, list], float],
        train_items: Sequence, val_items: Sequence, config: TrainConfig,
        progress: Callable[[int, dict], None] | None = None) -> FitResult:
    """Adam over shuffled batches; stop after `patience` epochs without a lower validation
    loss and restore the best weights. Deterministic for a given seed."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    best_loss, best_state, best_epoch, history = float("inf"), copy.deepcopy(model.state_dict()), 0, []
    epoch = 0
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        order = torch.randperm(len(train_items), generator=generator).tolist()
        losses = []
        for start in range(0, len(order), config.batch_size):
            batch = [train_items[i] for i in order[start:start + config.batch_size]]
            optimiser.zero_grad()
            loss = batch_loss(model, batch)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        model.eval()
        with torch.no_grad():
            current = val_loss(model, list(val_items))
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": current})
        if progress:
            progress(epoch, history[-1])
        if current < best_loss:
            best_loss, best_state, best_epoch = current, copy.deepcopy(model.state_dict()), epoch
        elif epoch - best_epoch >= config.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(model, history, best_epoch, epoch)


class ProbeNet(nn.Module):
    """Trainable twin of LinearProbe: optional projection, then Linear(·, 1) per step."""

    def __init__(self, dim: int, projection_dim: int | None = None):
        super().__init__()
        self.proj = nn.Linear(dim, projection_dim) if projection_dim else None
        self.head = nn.Linear(projection_dim or dim, 1)

    def steps(self, features: torch.Tensor) -> torch.Tensor:
        x = F.normalize(features, dim=-1)
        return torch.relu(self.proj(x)) if self.proj is not None else x

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Per-step logits s_t of one video (T × D → T)."""
        return self.head(self.steps(features))[:, 0]

    def embedding(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled, L2-normalised video embedding for the triplet loss."""
        return F.normalize(self.steps(features).mean(0), dim=0)

    def to_probe(self, card: dict) -> LinearProbe:
        weight = self.head.weight.detach().numpy()[0].copy()
        projection = None
        if self.proj is not None:
            projection = (self.proj.weight.detach().numpy().copy(), self.proj.bias.detach().numpy().copy())
        return LinearProbe(weight=weight, bias=float(self.head.bias.detach()[0]), card=card, projection=projection)


def video_loss(logits: torch.Tensor, label: int) -> torch.Tensor:
    """Cross-entropy over [-S, S] with S = logsumexp_t s_t (the paper's loss)."""
    score = torch.logsumexp(logits, 0)
    return F.cross_entropy(torch.stack([-score, score])[None], torch.tensor([label]))


def batch_all_triplet_loss(embeddings: torch.Tensor, classes: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean of the positive hinge terms over every valid (anchor, positive, negative)
    triplet in the batch (the "batch all" strategy); 0 when there is none."""
    distances = torch.cdist(embeddings, embeddings)
    same = classes[:, None] == classes[None, :]
    eye = torch.eye(len(classes), dtype=torch.bool)
    valid = (same & ~eye)[:, :, None] & (~same)[:, None, :]
    terms = F.relu(distances[:, :, None] - distances[:, None, :] + margin)[valid]
    positive = terms[terms > 1e-12]
    return positive.mean() if len(positive) else embeddings.sum() * 0.0


Item = tuple[torch.Tensor, int, int]  # features (T × D), label, triplet class


def train_probe(train: Sequence[tuple[np.ndarray, int]], val: Sequence[tuple[np.ndarray, int]], config: TrainConfig,
                card: dict, attribution: tuple[Sequence[int], Sequence[int]] | None = None,
                progress: Callable[[int, dict], None] | None = None) -> tuple[LinearProbe, FitResult]:
    """Train a probe on (features, label) videos; returns it with its training record.
    `attribution` gives per-video triplet classes for (train, val) instead of the labels."""
    if not train or not val:
        raise ValueError("training needs at least one training and one validation video")
    dim = train[0][0].shape[1]
    torch.manual_seed(config.seed)
    net = ProbeNet(dim, config.projection_dim if config.triplet_weight > 0 else None)
    train_classes, val_classes = attribution or ([y for _, y in train], [y for _, y in val])
    train_items = [(torch.from_numpy(np.asarray(x, np.float32)), int(y), int(c))
                   for (x, y), c in zip(train, train_classes)]
    val_items = [(torch.from_numpy(np.asarray(x, np.float32)), int(y), int(c)) for (x, y), c in zip(val, val_classes)]

    def batch_loss(model: ProbeNet, batch: list[Item]) -> torch.Tensor:
        loss = torch.stack([video_loss(model(x), y) for x, y, _ in batch]).mean()
        if config.triplet_weight > 0 and len(batch) > 2:
            embeddings = torch.stack([model.embedding(x) for x, _, _ in batch])
            classes = torch.tensor([c for _, _, c in batch])
            loss = loss + config.triplet_weight * batch_all_triplet_loss(embeddings, classes, config.triplet_margin)
        return loss

    def validation_loss(model: ProbeNet, items: list[Item]) -> float:
        return float(torch.stack([video_loss(model(x), y) for x, y, _ in items]).mean())

    result = fit(net, batch_loss, validation_loss, train_items, val_items, config, progress)
    card = {**card, "dim": dim, "seed": config.seed, "training": {
        **config.to_dict(), "best_epoch": result.best_epoch, "stopped_epoch": result.stopped_epoch,
        "best_val_loss": min(h["val_loss"] for h in result.history),
        "loss": "cross-entropy on [-S, S]" + (f" + {config.triplet_weight} × batch-all triplet "
                                               f"(margin {config.triplet_margin})" if config.triplet_weight > 0 else "")}}
    return net.to_probe(card), result
