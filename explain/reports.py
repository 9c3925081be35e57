"""Reports: report.json (analysis + explanations) and the figures, written together.
The CLI and the app both call `write_report`."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2

from explain.audio_attribution import AudioAttribution, explain_audio
from explain.faithfulness import explanation_faithfulness, temporal_faithfulness
from explain.figures import TimeAxis, audio_attribution_figure, modality_figure, save_figure, temporal_figure, time_axis
from explain.modality import modality_contributions
from explain.spatial import Heatmap, SpatialExplanation, explain_spatial, overlay, spatial_probes
from explain.temporal import explain_temporal
from explain.truth import read_truth
from explain.verdict import build_verdict, probe_verdict
from models.analysis import AnalysisResult
from models.cache import atomic_write
from models.calibration import Calibration
from models.encoders import get_spec
from models.probes import safe_name

AUDIO_ATTRIBUTION_MAX_S = 30.0  # integrated gradients over the log-mel: about 0.6 s and 15 MB per second of audio


def audio_probes(result: AnalysisResult) -> list[str]:
    """The probes of an analysis with a time–frequency attribution (log-mel encoders)."""
    return [pid for pid, r in result.probes.items() if get_spec(r.encoder_id).family == "selfsplice"]


def explanation_measures(result: AnalysisResult, spatial: list[SpatialExplanation]) -> tuple[dict, list[AudioAttribution]]:
    """How faithful each explanation is (deletion/insertion against a random order, one
    number per explanation), the per-step modality ablation, and the audio probes'
    time–frequency attributions (for clips up to AUDIO_ATTRIBUTION_MAX_S)."""
    temporal = {pid: temporal_faithfulness(r.scores.logits, calibration=Calibration.from_card(r.card)).summary()
                for pid, r in result.probes.items() if len(r.scores.logits)}
    spatial_faith = {}
    for explanation in spatial:
        if get_spec(explanation.encoder_id).source == "project" and explanation.heatmaps:
            spatial_faith[explanation.probe_id] = explanation_faithfulness(result, explanation).summary()
        else:
            spatial_faith[explanation.probe_id] = {"skipped": "deletion/insertion runs the encoder 34 times per "
                                                              "crop: measured for the small project encoders only"}
    counted = {v.group for v in (probe_verdict(r) for r in result.probes.values()) if not v.baseline}
    modality = modality_contributions(result).to_dict() if len(counted) > 1 else None
    short = result.clip is not None and result.clip.audio is not None \
        and result.media.duration_s <= AUDIO_ATTRIBUTION_MAX_S
    attributions = [explain_audio(result, pid) for pid in audio_probes(result)] if short else []
    measures = {"faithfulness": {"temporal": temporal, "spatial": spatial_faith,
                                 "definition": "(insertion AUC - deletion AUC) - the same for a random order; "
                                               "0: no better than chance"},
                "modality_ablation": modality,
                "audio_attribution": [a.to_dict() for a in attributions] if short else
                {"skipped": f"clip longer than {AUDIO_ATTRIBUTION_MAX_S:.0f} s"}}
    return measures, attributions


def _write_png(path: Path, image) -> None:
    ok, encoded = cv2.imencode(".png", image[..., ::-1])
    path.write_bytes(encoded.tobytes())


def heatmap_name(probe_id: str, step: int) -> str:
    """The file stem of one heatmap overlay (also the key of its path in `write_report`'s result)."""
    return f"heatmap_{safe_name(probe_id)}_{step:05d}"


def build_report(result: AnalysisResult, truth: dict | None = None,
                 spatial_steps: int = 3) -> tuple[dict, list, list[SpatialExplanation]]:
    """The report dictionary and the temporal and spatial explanations it was built from
    (Grad-CAM on the top `spatial_steps` peaks of every face-crop probe; 0 for none)."""
    if truth is None:
        truth = read_truth(result.media.path)
    explanations = explain_temporal(result, truth)
    spatial = [explain_spatial(result, pid, k=spatial_steps) for pid in spatial_probes(result)] if spatial_steps else []
    failed = [e.probe_id for e in spatial if e.sanity and not e.sanity.get("explains_model", True)]
    report = {"verdict": build_verdict(result, failed).to_dict(), **result.to_dict()}
    report["ground_truth"] = truth
    report["temporal"] = [e.to_dict() for e in explanations]
    report["spatial"] = [e.to_dict() for e in spatial]
    return report, explanations, spatial



@dataclass
class WrittenReport:
    """The files `write_report` wrote: every path by name, and each heatmap with its overlay."""

    paths: dict[str, Path]
    heatmaps: list[tuple[Heatmap, Path]]
    report: dict  # what report.json holds, verdict first
    time_axis: TimeAxis | None = None  # where temporal.png's time axis lies (for a time cursor)


def write_report(result: AnalysisResult, out_dir: str | Path, truth: dict | None = None,
                 spatial_steps: int = 3, curves: bool = True, measures: bool = True) -> WrittenReport:
    """Write report.json and the heatmap overlays (heatmap_PROBE_STEP.png) into `out_dir`;
    with `curves`, temporal.png / temporal.svg; with `measures`, the explanation measures
    (faithfulness, modality ablation, audio attribution) and their figures. The app's staged
    run draws the curves at its early stages and measures once, at its last."""
    out_dir = Path(out_dir)
    report, explanations, spatial = build_report(result, truth, spatial_steps)
    attributions = []
    if measures:
        report["explanation_measures"], attributions = explanation_measures(result, spatial)
    paths = {"report": atomic_write(out_dir / "report.json",
                                    lambda tmp: tmp.write_text(json.dumps(report, indent=1, allow_nan=False)))}
    heatmaps = []
    for explanation in spatial:
        for heatmap in explanation.heatmaps:
            name = heatmap_name(heatmap.probe_id, heatmap.step)
            image = overlay(result.clip.frames[heatmap.step], heatmap.frame_map)
            paths[name] = atomic_write(out_dir / f"{name}.png", lambda tmp, image=image: _write_png(tmp, image))
            heatmaps.append((heatmap, paths[name]))
    clip, axis = result.clip, None
    if curves:
        figure = temporal_figure(explanations, audio=clip.audio if clip else None,
                                 frames=clip.frames if clip else None,
                                 title=f"{result.media.name} — {result.media.duration_s:.2f} s")
        png, svg = save_figure(figure, out_dir / "temporal")
        paths.update({"temporal_png": png, "temporal_svg": svg})
        axis = time_axis(figure)
    for attribution in attributions:
        name = f"audio_attribution_{safe_name(attribution.probe_id)}"
        paths[name] = save_figure(audio_attribution_figure(clip.audio, attribution), out_dir / name, ("png",))[0]
    if measures and report["explanation_measures"]["modality_ablation"] is not None:
        paths["modality"] = save_figure(modality_figure(report["explanation_measures"]["modality_ablation"]),
                                        out_dir / "modality", ("png",))[0]
    return WrittenReport(paths, heatmaps, report, axis)
