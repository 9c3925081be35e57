"""Faithfulness of explanations: deletion and insertion curves (Petsiuk et al. 2018), each
against the same curves for a random order, so a method is judged by how much better than
chance it points at the evidence.

Spatial (`spatial_faithfulness`): a crop's pixels are ranked by the map (ties broken at
random). At K + 1 fractions f = 0, 1/K, ..., 1 (K = CURVE_STEPS), deletion replaces the
top f of the pixels by the heavily blurred crop (`blurred_crops`, the reference that
integrated gradients and occlusion use) and insertion shows them over the blurred crop;
each curve records the probe's step probability sigmoid(2 s_t) (`models.probes`). A
random pixel order (one per crop, seeded) gives the baseline curves.

Temporal (`temporal_faithfulness`): a clip's steps are ranked by a temporal explanation
(by default the probe's own step logits); deleting a step sets its logit to the clip's
lowest step logit (the weakest evidence the clip itself holds, so deleting never raises
the log-mean-exp score; the contrast scores are not monotone under it: with the scaled
contrast, once more than half the steps sit at the floor, the clip's own noise collapses to
the calibration's noise floor and the remaining peaks stand out more), inserting starts
from every step at that floor. Each curve records the pooled clip score (the calibration's clip score
of the step logits, `models.calibration.clip_score`) through a calibration (default: the
paper's sigmoid(2 · score)); the baseline is the mean curve of TEMPORAL_RANDOM_ORDERS
random step orders. The steps' logits are not recomputed (no re-encoding): this measures
the pooling, so ranking by the probe's own logits is the best possible deletion order and
the number says how concentrated the evidence is in time (a few steps or spread evenly);
another ranking can be checked against it.

Areas under the curves (trapezoid over f), per explained item:
- deletion_auc: low when the explanation's top-ranked part carries the evidence;
- insertion_auc: high when it does;
- random_deletion_auc, random_insertion_auc: the same for a random order;
- faithfulness = (insertion_auc − deletion_auc) − (random_insertion_auc − random_deletion_auc):
  0 for an explanation no better than a random order, positive when it ranks the evidence
  first, at most 2 in magnitude. `summary()` averages them over the items (maps).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explain.explainers.base import blurred_crops, crop_logits
from explain.spatial import SpatialExplanation, spatial_encoder, step_crops
from models.analysis import AnalysisResult
from models.calibration import Calibration
from models.encoders.vision import FrameEncoder
from models.errors import AnalysisError
from models.probes import LinearProbe, sigmoid

CURVE_STEPS = 16
TEMPORAL_RANDOM_ORDERS = 16
CURVES = ("deletion", "insertion", "random_deletion", "random_insertion")


@dataclass
class Faithfulness:
    """Deletion and insertion curves of an explanation's order and of a random order: one row
    per explained item (a map; one row for a clip), one column per fraction removed or shown."""

    fractions: np.ndarray  # (K + 1,) 0..1
    deletion: np.ndarray  # (N, K + 1)
    insertion: np.ndarray
    random_deletion: np.ndarray
    random_insertion: np.ndarray

    def areas(self) -> dict[str, np.ndarray]:
        """Each curve's area per item (N,), named `<curve>_auc`."""
        return {f"{name}_auc": _area(getattr(self, name), self.fractions) for name in CURVES}

    def scores(self) -> np.ndarray:
        """Faithfulness per item (N,): the explanation's insertion − deletion margin over a random order's."""
        areas = self.areas()
        return (areas["insertion_auc"] - areas["deletion_auc"]) - (
            areas["random_insertion_auc"] - areas["random_deletion_auc"])

    def summary(self) -> dict[str, float]:
        """The four areas and the faithfulness, averaged over the items: one number each."""
        values = {**self.areas(), "faithfulness": self.scores()}
        return {name: round(float(np.mean(value)), 6) for name, value in values.items()}


def _area(curves: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Trapezoid areas of (N, K + 1) curves over the fractions."""
    return ((curves[:, 1:] + curves[:, :-1]) / 2 * np.diff(fractions)).sum(1)


def spatial_faithfulness(encoder: FrameEncoder, probe: LinearProbe, crops: np.ndarray, maps: np.ndarray,
                         steps: int = CURVE_STEPS, seed: int = 0) -> Faithfulness:
    """Deletion and insertion curves of maps (N, crop, crop) over their face crops (N, crop,
    crop, 3), and of a random pixel order; 4 · (steps + 1) forward passes per crop."""
    if maps.shape != crops.shape[:3]:
        raise AnalysisError(f"maps of shape {maps.shape} do not fit crops of shape {crops.shape}.")
    rng = np.random.default_rng(seed)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    rows: dict[str, list[np.ndarray]] = {name: [] for name in CURVES}
    for crop, fill, crop_map in zip(crops, blurred_crops(crops), maps):
        orders = {"": ranking(crop_map, rng), "random_": rng.permutation(crop_map.size)}
        images = np.concatenate([_masked_images(crop, fill, order, fractions) for order in orders.values()])
        curves = sigmoid(2 * crop_logits(encoder, probe, images)).reshape(2 * len(orders), len(fractions))
        for index, (prefix, kind) in enumerate((p, k) for p in orders for k in ("deletion", "insertion")):
            rows[prefix + kind].append(curves[index])
    return Faithfulness(fractions, **{name: np.stack(rows[name]) for name in CURVES})


def ranking(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat indices of an explanation (map or step scores) from its highest value down, ties
    in random order (a flat map is then a random order, not a raster scan)."""
    flat = values.ravel()
    return np.lexsort((rng.random(flat.size), -flat))


def _leading(order: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """(K + 1, n) masks: row k marks the first round(f_k · n) indices of `order`."""
    rank = np.empty(order.size, np.int64)
    rank[order] = np.arange(order.size)
    return rank[None, :] < np.round(fractions * order.size)[:, None]


def _masked_images(crop: np.ndarray, fill: np.ndarray, order: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """(2 (K + 1), H, W, 3): the crop with the first f of `order` replaced by the fill
    (deletion), then the fill with them shown (insertion), for every fraction f."""
    shown = _leading(order, fractions).reshape(len(fractions), *crop.shape[:2], 1)
    return np.concatenate([np.where(shown, fill, crop), np.where(shown, crop, fill)])


def explanation_faithfulness(result: AnalysisResult, explanation: SpatialExplanation, steps: int = CURVE_STEPS,
                             seed: int = 0) -> Faithfulness:
    """The spatial faithfulness of one analysed video's explanation, on the crops it explained."""
    encoder, probe = spatial_encoder(result, explanation.probe_id)
    _, _, crops = step_crops(result, [h.step for h in explanation.heatmaps])
    return spatial_faithfulness(encoder, probe, crops, np.stack([h.crop_map for h in explanation.heatmaps]),
                                steps, seed)


def temporal_faithfulness(logits: np.ndarray, importance: np.ndarray | None = None, steps: int = CURVE_STEPS,
                          seed: int = 0, calibration: Calibration | None = None) -> Faithfulness:
    """Deletion and insertion curves of a clip's pooled score when its steps are removed or
    shown in the order of `importance` (default: the step logits themselves), against the
    mean of random orders; one item."""
    logits = np.asarray(logits, np.float64)
    importance = logits if importance is None else np.asarray(importance, np.float64)
    if importance.shape != logits.shape or logits.ndim != 1 or not len(logits):
        raise AnalysisError(f"a temporal explanation of {importance.shape} steps does not fit {logits.shape} logits.")
    rng, calibration = np.random.default_rng(seed), calibration or Calibration()
    fractions = np.linspace(0.0, 1.0, steps + 1)
    orders = [ranking(importance, rng)] + [rng.permutation(len(logits)) for _ in range(TEMPORAL_RANDOM_ORDERS)]
    curves = _step_curves(logits, orders, fractions, calibration)  # (orders, 2, K + 1)
    ranked, random = curves[0], curves[1:].mean(0)
    return Faithfulness(fractions, ranked[:1], ranked[1:], random[:1], random[1:])


def _step_curves(logits: np.ndarray, orders: list[np.ndarray], fractions: np.ndarray,
                 calibration: Calibration) -> np.ndarray:
    """(orders, 2, K + 1): per order, the calibrated pooled score as its first f steps are
    deleted (set to the lowest logit), then as they are shown over that floor; every
    variant of the clip scored in one batch."""
    chosen = np.stack([_leading(order, fractions) for order in orders])  # (orders, K + 1, T)
    floor = logits.min()
    variants = np.stack([np.where(chosen, floor, logits), np.where(chosen, logits, floor)], axis=1)
    return calibration.clip_probabilities(variants.reshape(-1, len(logits))).reshape(variants.shape[:3])
