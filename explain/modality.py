"""Cross-modal ablation: at each step, how much of the combined evidence comes from each
modality group (audio, visual, audio-visual), on the calibrated scale the verdict uses.

- A counted probe's (not a baseline, as in the verdict) step probabilities come from its
  card's step calibration (`models.calibration`); a modality's step probability is the
  mean of its probes', its step threshold the mean of theirs (the verdict does the same
  with clip scores).
- A modality's evidence at step t is log-odds(p_t) − log-odds(threshold): 0 on its
  decision boundary, positive towards fake.
- The fused step probability is the late-fusion mean over the modalities (one vote each,
  as `models.probes.fuse` averages probabilities), its evidence measured against the
  mean of their thresholds.
- Ablating a modality sets its step probability to its threshold, its neutral point
  (no evidence either way); its contribution at step t is the fused evidence minus the
  fused evidence with it ablated. Contributions are not additive: fusion is a mean of
  probabilities, not of log-odds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explain.verdict import ProbeVerdict, log_odds, probe_verdict
from models.analysis import AnalysisResult
from models.errors import AnalysisError


@dataclass
class ModalityContributions:
    """Per-step evidence of each modality and of their fusion, with each one ablated, on the step clock."""

    times: np.ndarray  # (T,) step start times in seconds
    evidence: dict[str, np.ndarray]  # modality → (T,) calibrated step log-odds above its step threshold
    fused: np.ndarray  # (T,) fused evidence
    ablated: dict[str, np.ndarray]  # modality → (T,) fused evidence with that modality at its threshold

    @property
    def contributions(self) -> dict[str, np.ndarray]:
        """Modality → (T,) what the fused evidence loses when that modality is ablated."""
        return {modality: self.fused - ablated for modality, ablated in self.ablated.items()}

    def to_dict(self) -> dict:
        def rounded(values: np.ndarray) -> list[float]:
            return [round(float(v), 6) for v in values]

        return {"times": rounded(self.times), "fused": rounded(self.fused),
                "evidence": {m: rounded(v) for m, v in self.evidence.items()},
                "ablated": {m: rounded(v) for m, v in self.ablated.items()},
                "contributions": {m: rounded(v) for m, v in self.contributions.items()}}


def modality_contributions(result: AnalysisResult) -> ModalityContributions:
    """Each modality's calibrated step evidence, the fused evidence, and the fused evidence
    with each modality ablated (set to its step threshold), for one analysis."""
    counted = [v for v in (probe_verdict(p) for p in result.probes.values()) if not v.baseline]
    if not counted:
        raise AnalysisError("only baselines ran: there is no evidence to attribute to a modality.")
    groups: dict[str, list[ProbeVerdict]] = {}
    for verdict in counted:
        groups.setdefault(verdict.group, []).append(verdict)
    probabilities = {g: np.mean([v.calibrated.step_probabilities for v in vs], 0) for g, vs in groups.items()}
    thresholds = {g: float(np.mean([v.calibrated.calibration.step_threshold for v in vs])) for g, vs in groups.items()}
    fused_threshold = float(np.mean(list(thresholds.values())))

    def fused(steps: dict[str, np.ndarray]) -> np.ndarray:
        return log_odds(np.mean(list(steps.values()), 0)) - log_odds(fused_threshold)

    return ModalityContributions(
        result.step_times,
        {g: log_odds(p) - log_odds(thresholds[g]) for g, p in probabilities.items()},
        fused(probabilities),
        {g: fused({**probabilities, g: np.full_like(p, thresholds[g])}) for g, p in probabilities.items()})
