"""Linear probes (SSR-DFD): one Linear(D, 1) over L2-normalised features at every step.

    s_t = w · x_t / ||x_t|| + b        per-step logit
    S   = logsumexp_t s_t              video score
    P(fake) = sigmoid(2 S)             the model was trained with cross-entropy on [-S, S]

Per-step probability: the paper leaves it open; we use sigmoid(2 s_t), which is what
the video probability would be for a one-step video, so 0.5 is the same decision
boundary on both curves.

A probe may also carry a real-data next-step model (`models/anomaly.py`, trained on real
clips only): its step logit is then the head's logit plus that model's prediction error,
each in units of its typical step noise on the real validation clips,
s_t = head_t / head_unit + error_t / model_unit. The head knows the manipulations it was
trained on; the real-data model flags steps unlike real footage whatever made them
(`benchmarks/bench_generalisation.py` measures both, alone and together, on families
neither saw).

Files: NAME.safetensors (`head.weight` (1, D), `head.bias` (1,), and `real.*` for a
real-data model) + NAME.json card (`real_model`: its network, units and training).
Released SSR-DFD Lightning checkpoints are read with torch.load(weights_only=True).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from models.cache import atomic_write
from models.encoders import get_spec
from models.errors import AnalysisError

if TYPE_CHECKING:
    import torch

    from models.anomaly import NextStepPredictor

CARD_REQUIRED = ("id", "encoder", "dim")
STEP_PROBABILITY = "sigmoid(2*s_t)"
VIDEO_PROBABILITY = "sigmoid(2*S), S = logsumexp_t s_t"


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))


def logsumexp(x: np.ndarray) -> float:
    top = float(np.max(x))
    return top + float(np.log(np.sum(np.exp(np.asarray(x, np.float64) - top))))


@dataclass
class ProbeScores:
    """One probe's output on one clip."""

    logits: np.ndarray  # (T,) s_t
    probabilities: np.ndarray  # (T,) sigmoid(2 s_t)
    video_score: float  # S
    p_fake: float  # sigmoid(2 S)

    def to_dict(self) -> dict:
        return {"video_score": self.video_score, "p_fake": self.p_fake,
                "logits": [round(float(v), 6) for v in self.logits],
                "probabilities": [round(float(v), 6) for v in self.probabilities]}


@dataclass
class RealDataModel:
    """A next-step model trained on real clips, added to a probe's step logits; each term
    is divided by its typical step noise on real validation clips so both count alike."""

    network: NextStepPredictor
    head_unit: float
    model_unit: float
    card: dict = field(default_factory=dict)  # kind, network settings, training


@dataclass
class LinearProbe:
    """The paper's per-step linear head with its card; optionally behind a small
    projection (the FSFM-paper triplet variant): s_t = w · relu(P x_t/||x_t|| + c) + b."""

    weight: np.ndarray  # (D,) or (P,) with a projection
    bias: float
    card: dict = field(default_factory=dict)
    projection: tuple[np.ndarray, np.ndarray] | None = None  # (P × D weight, (P,) bias)
    real_model: RealDataModel | None = None

    @property
    def id(self) -> str:
        return self.card["id"]

    @property
    def encoder_id(self) -> str:
        return self.card["encoder"]

    @property
    def dim(self) -> int:
        """Input feature width."""
        return int(self.projection[0].shape[1] if self.projection is not None else self.weight.shape[0])

    def step_logits(self, features: np.ndarray) -> np.ndarray:
        """s_t for (T × D) features, in float64."""
        features = np.asarray(features, np.float64)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise AnalysisError(f"probe {self.id} takes (steps × {self.dim}) features, got {features.shape}.")
        torch = _torch()
        with torch.no_grad():
            return self.torch_logits(torch.from_numpy(features)).numpy()

    def torch_logits(self, features: torch.Tensor) -> torch.Tensor:
        """s_t as a differentiable function of one clip's (T × D) features, in their dtype."""
        logits = self.head_logits(features)
        if self.real_model is None:
            return logits
        errors = self.real_model.network.score(features.float()).to(features.dtype)
        return logits / self.real_model.head_unit + errors / self.real_model.model_unit

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The linear head alone, each of the (N × D) rows on its own (a batch of crops of one
        step, as the spatial explanations feed it): the part of s_t that one step's input
        decides. A real-data model's part also depends on the steps before, so it is not here."""
        torch = _torch()

        def tensor(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.asarray(array)).to(features.dtype)

        x = features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)
        if self.projection is not None:
            x = torch.relu(x @ tensor(self.projection[0]).T + tensor(self.projection[1]))
        return x @ tensor(self.weight) + float(self.bias)

    def score(self, features: np.ndarray) -> ProbeScores:
        logits = self.step_logits(features)
        video_score = logsumexp(logits)
        return ProbeScores(logits=logits, probabilities=sigmoid(2 * logits), video_score=video_score,
                           p_fake=float(sigmoid(2 * video_score)))


def _torch():
    """torch, imported on first use: the probe cards and zoo are read at the app's start-up,
    which must not wait for torch."""
    import torch  # lazy: see the docstring

    return torch


def fuse(scores: list[ProbeScores]) -> ProbeScores:
    """Late fusion: the mean of the probes' probabilities (per step and per video); the
    fused logits are the ones that give those probabilities under the same mapping."""
    probabilities = np.mean([s.probabilities for s in scores], 0)
    p_fake = float(np.mean([s.p_fake for s in scores]))
    clipped = np.clip(probabilities, 1e-12, 1 - 1e-12)
    logits = 0.5 * np.log(clipped / (1 - clipped))
    p = min(max(p_fake, 1e-12), 1 - 1e-12)
    return ProbeScores(logits=logits, probabilities=probabilities, video_score=0.5 * float(np.log(p / (1 - p))),
                       p_fake=p_fake)


def save_probe(probe: LinearProbe, folder: str | Path) -> Path:
    """Write NAME.safetensors + NAME.json (atomically) and return the card's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    card = {**probe.card, "dim": probe.dim, "l2_normalise": True, "pooling": "logsumexp",
            "kind": "projected" if probe.projection is not None else "linear",
            "step_probability": STEP_PROBABILITY, "video_probability": VIDEO_PROBABILITY}
    tensors = {"head.weight": probe.weight.reshape(1, -1).astype(np.float32),
               "head.bias": np.array([probe.bias], np.float32)}
    if probe.projection is not None:
        tensors["proj.weight"] = probe.projection[0].astype(np.float32)
        tensors["proj.bias"] = probe.projection[1].astype(np.float32)
    if probe.real_model is not None:
        model = probe.real_model
        card["real_model"] = {**model.card, "head_unit": model.head_unit, "model_unit": model.model_unit}
        tensors.update({f"real.{k}": v.detach().contiguous().numpy()
                        for k, v in model.network.state_dict().items()})
    stem = safe_name(probe.id)
    atomic_write(folder / f"{stem}.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    atomic_write(folder / f"{stem}.json", lambda tmp: tmp.write_text(json.dumps(card, indent=2)))
    return folder / f"{stem}.json"


def safe_name(probe_id: str) -> str:
    """A file stem for a probe id (ids may hold '/', '@')."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in probe_id)


def load_probe_file(card_path: str | Path) -> LinearProbe:
    """Read NAME.json + NAME.safetensors and validate them against each other and the registry."""
    card_path = Path(card_path).with_suffix(".json")
    weights_path = card_path.with_suffix(".safetensors")
    for path in (card_path, weights_path):
        if not path.exists():
            raise AnalysisError("probe file not found.", path=path,
                                hint="A probe is NAME.json (card) + NAME.safetensors (weights) side by side.")
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AnalysisError(f"the probe card is not valid JSON ({error}).", path=card_path) from None
    if not isinstance(card, dict) or any(key not in card for key in CARD_REQUIRED):
        raise AnalysisError(f"the probe card must be an object with {', '.join(CARD_REQUIRED)}.", path=card_path)
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise AnalysisError(f"the probe weights are not a valid safetensors file ({error}).",
                            path=weights_path) from None
    probe = _probe_from_tensors(tensors, card, weights_path)
    spec = get_spec(card["encoder"])
    if spec.dim != probe.dim or int(card["dim"]) != probe.dim:
        raise AnalysisError(f"probe weights are {probe.dim}-d but the card says {card['dim']} and encoder "
                            f"{spec.id} gives {spec.dim}-d features.", path=weights_path)
    return probe


def _probe_from_tensors(tensors: dict, card: dict, path: Path) -> LinearProbe:
    weight, bias = tensors.get("head.weight"), tensors.get("head.bias")
    if weight is None or bias is None:
        raise AnalysisError(f"the probe weights need head.weight and head.bias (found: {', '.join(tensors)}).",
                            path=path)
    weight, bias = np.asarray(weight), np.asarray(bias)
    if weight.ndim != 2 or weight.shape[0] != 1 or bias.shape != (1,):
        raise AnalysisError(f"head.weight must be (1, D) and head.bias (1,), got {weight.shape} and {bias.shape}.",
                            path=path)
    projection = None
    if "proj.weight" in tensors or "proj.bias" in tensors:
        matrix, offset = np.asarray(tensors.get("proj.weight")), np.asarray(tensors.get("proj.bias"))
        if matrix.ndim != 2 or offset.shape != (matrix.shape[0],) or matrix.shape[0] != weight.shape[1]:
            raise AnalysisError(f"proj.weight must be (P, D) and proj.bias (P,) with P = {weight.shape[1]}, got "
                                f"{matrix.shape} and {offset.shape}.", path=path)
        projection = (matrix.astype(np.float32), offset.astype(np.float32))
    arrays = [weight, bias] + (list(projection) if projection else [])
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise AnalysisError("the probe weights contain NaN or infinity.", path=path)
    return LinearProbe(weight=weight[0].astype(np.float32), bias=float(bias[0]), card=card, projection=projection,
                       real_model=_real_model(tensors, card, path))


def _real_model(tensors: dict, card: dict, path: Path) -> RealDataModel | None:
    """The card's real-data next-step model with its `real.*` weights, or None when it has none."""
    entry = card.get("real_model")
    if entry is None:
        return None
    # lazy: torch and the transformer load only for probes that carry a real-data model
    from models.anomaly import NextStepConfig, NextStepPredictor

    torch = _torch()
    try:
        units = float(entry["head_unit"]), float(entry["model_unit"])
        if entry.get("kind") != "next-step" or not all(np.isfinite(u) and u > 0 for u in units):
            raise ValueError("kind must be next-step and both units positive")
        network = NextStepPredictor(int(entry["dim"]), NextStepConfig(**entry["network"]))
        state = {k[len("real."):]: torch.from_numpy(np.asarray(v)) for k, v in tensors.items() if k.startswith("real.")}
        network.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise AnalysisError(f"the probe's real-data model does not fit its card ({str(error)[:200]}).", path=path,
                            hint="real_model needs kind next-step, dim, network, head_unit and model_unit > 0, and "
                                 "the real.* weights of that network.") from None
    return RealDataModel(network.eval(), *units, card={k: v for k, v in entry.items()
                                                       if k not in ("head_unit", "model_unit")})


def load_lightning_checkpoint(path: str | Path, card: dict) -> LinearProbe:
    """A released SSR-DFD checkpoint (head.weight / head.bias in `state_dict`), unpickled
    with weights_only=True, checked against its hyper-parameters."""
    path = Path(path)
    try:
        checkpoint = _torch().load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same message
        raise AnalysisError(f"is not a readable probe checkpoint ({type(error).__name__}).", path=path,
                            hint="Released SSR-DFD probes are PyTorch Lightning .ckpt files.") from None
    state = checkpoint.get("state_dict", {}) if isinstance(checkpoint, dict) else {}
    tensors = {k: v.numpy() for k, v in state.items() if k in ("head.weight", "head.bias")}
    probe = _probe_from_tensors(tensors, {**card, "dim": None}, path)
    hparams = (checkpoint.get("hyper_parameters", {}).get("config", {}).get("model_hparams", {}))
    declared = hparams.get("feats_dim")
    if declared is not None and int(declared) != probe.dim:
        raise AnalysisError(f"head is {probe.dim}-d but the checkpoint declares feats_dim={declared}.", path=path)
    probe.card = {**card, "dim": probe.dim, "input_type": hparams.get("input_type")}
    return probe


def random_probe(encoder_id: str, seed: int = 0) -> LinearProbe:
    """An untrained head with N(0, 1) weights over `encoder_id`: for smoke tests and timing."""
    spec = get_spec(encoder_id)
    weight = np.random.default_rng(seed).standard_normal(spec.dim).astype(np.float32)
    return LinearProbe(weight=weight, bias=0.0, card={
        "id": f"random@{encoder_id}", "encoder": encoder_id, "dim": spec.dim, "source": "random",
        "training_data": "none", "seed": seed,
        "notes": "Untrained: its scores mean nothing. For smoke tests and timing only."})
