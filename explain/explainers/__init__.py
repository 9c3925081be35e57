"""Spatial explanation methods behind one interface (`Explainer`), by name.

    explainer = get_explainer("gradcam")
    maps = explainer(encoder, probe, crops, steps)   # list[StepMap]
"""
from __future__ import annotations

from explain.explainers.base import Explainer, StepMap
from explain.explainers.gradcam import GradCam, gradcam_target
from models.errors import AnalysisError

__all__ = ["DEFAULT_EXPLAINER", "Explainer", "StepMap", "get_explainer", "gradcam_target", "list_explainers"]

_EXPLAINERS: dict[str, type[Explainer]] = {cls.name: cls for cls in (GradCam,)}
DEFAULT_EXPLAINER = "gradcam"


def list_explainers() -> list[str]:
    """The names of every registered explanation method."""
    return sorted(_EXPLAINERS)


def get_explainer(name: str = DEFAULT_EXPLAINER) -> Explainer:
    """A fresh instance of the named method."""
    if name not in _EXPLAINERS:
        raise AnalysisError(f"unknown explanation method {name!r}.", hint=f"Known: {', '.join(list_explainers())}.")
    return _EXPLAINERS[name]()
