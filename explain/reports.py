"""Reports: report.json (analysis + explanations) and the figures, written together.
The CLI and the app both call `write_report`."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2

from explain.figures import save_figure, temporal_figure
from explain.spatial import Heatmap, SpatialExplanation, explain_spatial, overlay, spatial_probes
from explain.temporal import explain_temporal
from explain.truth import read_truth
from explain.verdict import build_verdict
from models.analysis import AnalysisResult
from models.cache import atomic_write
from models.probes import safe_name


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


def write_report(result: AnalysisResult, out_dir: str | Path, truth: dict | None = None,
                 spatial_steps: int = 3) -> WrittenReport:
    """Write report.json, temporal.png / temporal.svg and the heatmap overlays
    (heatmap_PROBE_STEP.png) into `out_dir`."""
    out_dir = Path(out_dir)
    report, explanations, spatial = build_report(result, truth, spatial_steps)
    paths = {"report": atomic_write(out_dir / "report.json",
                                    lambda tmp: tmp.write_text(json.dumps(report, indent=1, allow_nan=False)))}
    heatmaps = []
    for explanation in spatial:
        for heatmap in explanation.heatmaps:
            name = heatmap_name(heatmap.probe_id, heatmap.step)
            image = overlay(result.clip.frames[heatmap.step], heatmap.frame_map)
            paths[name] = atomic_write(out_dir / f"{name}.png", lambda tmp, image=image: _write_png(tmp, image))
            heatmaps.append((heatmap, paths[name]))
    clip = result.clip
    figure = temporal_figure(explanations, audio=clip.audio if clip else None, frames=clip.frames if clip else None,
                             title=f"{result.media.name} — {result.media.duration_s:.2f} s")
    png, svg = save_figure(figure, out_dir / "temporal")
    paths.update({"temporal_png": png, "temporal_svg": svg})
    return WrittenReport(paths, heatmaps, report)
