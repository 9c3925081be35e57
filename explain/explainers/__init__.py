"""Spatial explanation methods behind one interface (`Explainer`), by name: Grad-CAM at the
last block (`gradcam`, the default) and the middle one (`gradcam-mid`), integrated
gradients from the blurred crop (`integrated-gradients`) and occlusion by blurred windows
(`occlusion`). `explain.faithfulness` measures them against a random pixel order.

    explainer = get_explainer("gradcam")
    maps = explainer(encoder, probe, crops, steps)   # list[StepMap]
"""
from __future__ import annotations

from explain.explainers.base import Explainer, StepMap
from explain.explainers.gradcam import GradCam, GradCamMid, gradcam_target
from explain.explainers.integrated_gradients import IntegratedGradients
from explain.explainers.occlusion import Occlusion
from models.errors import AnalysisError

__all__ = ["DEFAULT_EXPLAINER", "Explainer", "StepMap", "get_explainer", "gradcam_target", "list_explainers"]

_EXPLAINERS: dict[str, type[Explainer]] = {
    cls.name: cls for cls in (GradCam, GradCamMid, IntegratedGradients, Occlusion)}
DEFAULT_EXPLAINER = "gradcam"


def list_explainers() -> list[str]:
    """The names of every registered explanation method."""
    return sorted(_EXPLAINERS)


def get_explainer(name: str = DEFAULT_EXPLAINER) -> Explainer:
    """A fresh instance of the named method."""
    if name not in _EXPLAINERS:
        raise AnalysisError(f"unknown explanation method {name!r}.", hint=f"Known: {', '.join(list_explainers())}.")
    return _EXPLAINERS[name]()
