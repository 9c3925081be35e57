"""Encoders whose features may come from outside this app (AV-HuBERT, BRAVEn).

Their reference implementations need fairseq / their own repositories. Their features can
come in as files (.npy, or .npz with keys audio / visual / video / multimodal, as SSR-DFD
stores them), or be computed here from the published checkpoints (`checkpoints.py`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.encoders.base import ClipInputs, Encoder, EncoderSpec, Progress, fit_steps
from models.errors import AnalysisError

NPZ_KEYS = {"audio-visual": ("multimodal",), "audio": ("audio",), "lips": ("visual", "video")}
# External families that also run here from their published checkpoint → their name as the
# authors write it (the README section "NAME checkpoints" says where users get the files).
CHECKPOINT_FAMILIES = {"avhubert": "AV-HuBERT", "braven": "BRAVEn"}


def load_feature_file(path: str | Path, spec: EncoderSpec) -> np.ndarray:
    """Read a (steps × dim) feature array for `spec` from .npy or .npz, without pickle."""
    path = Path(path)
    if not path.exists():
        raise AnalysisError("feature file not found.", path=path)
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise AnalysisError(f"is not a readable .npy/.npz feature file ({error}).", path=path) from None
    if isinstance(data, np.lib.npyio.NpzFile):
        keys = [k for k in NPZ_KEYS.get(spec.modality, ()) if k in data.files]
        if not keys:
            raise AnalysisError(f"has no {' or '.join(NPZ_KEYS.get(spec.modality, ()))} array "
                                f"(keys: {', '.join(data.files)}).", path=path)
        data = data[keys[0]]
    array = np.asarray(data, np.float32)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or array.shape[1] != spec.dim:
        raise AnalysisError(f"holds features of shape {tuple(array.shape)}; {spec.id} needs (steps × {spec.dim}).",
                            path=path)
    return array


def missing_features(spec: EncoderSpec) -> AnalysisError:
    """The one message for an external encoder whose features (or checkpoint) were not given."""
    if spec.family in CHECKPOINT_FAMILIES:
        guide = f"{CHECKPOINT_FAMILIES[spec.family]} checkpoints"
        return AnalysisError(f"encoder {spec.id} needs its published checkpoint or its features.",
                             hint=f"Pass --weights {spec.id}=CHECKPOINT.pt (see README: {guide}), or "
                                  f"--features {spec.id}=FILE.npy (steps × {spec.dim} at 25 Hz).")
    return AnalysisError(f"encoder {spec.id} runs outside this app: its features must be given as a file.",
                         hint=f"Extract them with the reference code ({spec.description}) and pass "
                              f"--features {spec.id}=FILE.npy (steps × {spec.dim} at 25 Hz).")


class ExternalFeatures(Encoder):
    def __init__(self, spec: EncoderSpec, weights: str | None = None, precision: str = "auto"):
        super().__init__(spec, "fp32")

    def encode(self, inputs: ClipInputs, progress: Progress = None) -> np.ndarray:
        source = inputs.features.get(self.spec.id)
        if source is None:
            raise missing_features(self.spec)
        features = source if isinstance(source, np.ndarray) else load_feature_file(source, self.spec)
        return fit_steps(features, inputs.n_steps)
