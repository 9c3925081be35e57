"""The training protocol: early stopping, best checkpoint, determinism, triplet variant."""
import numpy as np
import pytest
import torch

from research.training import ProbeNet, TrainConfig, batch_all_triplet_loss, train_probe, video_loss


def videos(n, flip=False, seed=0, dim=16):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = i % 2
        x = rng.normal(size=(int(rng.integers(20, 40)), dim)).astype(np.float32)
        if label:
            x[3:8, 0] += 4.0
        out.append((x, 1 - label if flip else label))
    return out


def validation_loss_of(probe, val):
    net = ProbeNet(probe.dim)
    net.head.weight.data = torch.from_numpy(probe.weight[None].copy())
    net.head.bias.data = torch.tensor([probe.bias], dtype=torch.float32)
    with torch.no_grad():
        return float(torch.stack([video_loss(net(torch.from_numpy(x)), y) for x, y in val]).mean())


def test_early_stopping_after_ten_bad_epochs_keeps_the_best():
    # validation labels are flipped: the validation loss bottoms out early and then rises
    train, val = videos(20), videos(10, flip=True, seed=1)
    probe, result = train_probe(train, val, TrainConfig(max_epochs=100, patience=10, lr=1e-2),
                                {"id": "t", "encoder": "x"})
    losses = [h["val_loss"] for h in result.history]
    best = int(np.argmin(losses)) + 1
    assert result.best_epoch == best and result.best_epoch < 50
    assert result.stopped_epoch == best + 10 == len(losses)
    assert all(loss >= losses[best - 1] for loss in losses[best:])
    assert validation_loss_of(probe, val) == pytest.approx(losses[best - 1], abs=1e-5)
    assert probe.card["training"]["best_epoch"] == best and probe.card["seed"] == 43


def test_same_seed_same_weights_other_seed_other_weights():
    train, val = videos(16), videos(8, seed=2)
    a, _ = train_probe(train, val, TrainConfig(max_epochs=5), {"id": "a", "encoder": "x"})
    b, _ = train_probe(train, val, TrainConfig(max_epochs=5), {"id": "b", "encoder": "x"})
    c, _ = train_probe(train, val, TrainConfig(max_epochs=5, seed=7), {"id": "c", "encoder": "x"})
    assert np.array_equal(a.weight, b.weight) and a.bias == b.bias
    assert not np.array_equal(a.weight, c.weight)


def test_training_learns_the_planted_signal():
    train, val = videos(40), videos(20, seed=3)
    probe, result = train_probe(train, val, TrainConfig(max_epochs=40, lr=1e-2), {"id": "t", "encoder": "x"})
    scores = [probe.score(x).video_score for x, _ in videos(20, seed=4)]
    labels = [y for _, y in videos(20, seed=4)]
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(labels, scores) > 0.95
    assert result.history[result.best_epoch - 1]["val_loss"] < result.history[0]["val_loss"]


def test_batch_all_triplet_loss():
    classes = torch.tensor([0, 0, 1, 1])
    separated = torch.tensor([[1.0, 0], [1.0, 0], [-1.0, 0], [-1.0, 0]])
    assert batch_all_triplet_loss(separated, classes, margin=0.2) == 0
    mixed = torch.tensor([[1.0, 0], [-1.0, 0], [1.0, 0], [-1.0, 0]])
    # every anchor: its positive is 2 away, one negative 0 away (hinge 2.2), one 2 away (hinge 0.2)
    assert batch_all_triplet_loss(mixed, classes, margin=0.2) == pytest.approx((2.2 + 0.2) / 2)


def test_triplet_variant_trains_with_attribution_classes_and_records_its_losses():
    train, val = videos(24), videos(12, seed=5)
    attribution = ([i % 3 for i in range(24)], [i % 3 for i in range(12)])
    config = TrainConfig(max_epochs=4, batch_size=8, triplet_weight=0.5, triplet_margin=0.3, projection_dim=8)
    probe, result = train_probe(train, val, config, {"id": "t", "encoder": "x"}, attribution)
    assert probe.projection[0].shape == (8, 16) and probe.weight.shape == (8,)
    training = probe.card["training"]
    assert training["triplet_weight"] == 0.5 and training["triplet_margin"] == 0.3
    assert "0.5 × batch-all triplet (margin 0.3)" in training["loss"]
    scores = probe.score(train[0][0])
    assert scores.logits.shape == (len(train[0][0]),)
