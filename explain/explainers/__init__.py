"""Spatial explanation methods behind one interface (`Explainer`), by name: Grad-CAM at the
last block (`gradcam`, the default on large encoders) and the middle one (`gradcam-mid`), integrated
gradients from the blurred crop (`integrated-gradients`) and occlusion by blurred windows
side by side (`occlusion`, the default on the project's small encoders: `default_explainer`)
or sliding by half a window (`occlusion-fine`).
`explain.faithfulness` measures them against a random pixel order.

    explainer = get_explainer("gradcam")
    maps = explainer(encoder, probe, crops, steps)   # list[StepMap]
"""
from __future__ import annotations

from explain.explainers.base import Explainer, StepMap
from explain.explainers.gradcam import GradCam, GradCamMid, gradcam_target
from explain.explainers.integrated_gradients import IntegratedGradients
from explain.explainers.occlusion import FineOcclusion, Occlusion
from models.encoders import get_spec
from models.errors import AnalysisError

__all__ = ["DEFAULT_EXPLAINER", "Explainer", "SMALL_ENCODER_EXPLAINER", "StepMap", "default_explainer", "get_explainer",
           "gradcam_target", "list_explainers"]

_EXPLAINERS: dict[str, type[Explainer]] = {
    cls.name: cls for cls in (GradCam, GradCamMid, IntegratedGradients, Occlusion, FineOcclusion)}
DEFAULT_EXPLAINER = "gradcam"  # large encoders: occlusion-fine cost 200 s a crop on ViT-L/14 (occlusion: 49/169 of the passes)
# Measured best on left-out visual families (benchmarks/bench_explanations.py: pointing 0.56
# against Grad-CAM's 0.46 and occlusion-fine's 0.54, MAE 0.86 of the frame-centre baseline's
# against 0.95 and 0.91), about 4x Grad-CAM's cost: the default where that cost is a fraction
# of a second, the project's small encoders.
SMALL_ENCODER_EXPLAINER = "occlusion"


def default_explainer(encoder_id: str) -> str:
    """The shipped method for one encoder: occlusion on the small project encoders, Grad-CAM on the rest."""
    return SMALL_ENCODER_EXPLAINER if get_spec(encoder_id).source == "project" else DEFAULT_EXPLAINER


def list_explainers() -> list[str]:
    """The names of every registered explanation method."""
    return sorted(_EXPLAINERS)


def get_explainer(name: str = DEFAULT_EXPLAINER) -> Explainer:
    """A fresh instance of the named method."""
    if name not in _EXPLAINERS:
        raise AnalysisError(f"unknown explanation method {name!r}.", hint=f"Known: {', '.join(list_explainers())}.")
    return _EXPLAINERS[name]()
