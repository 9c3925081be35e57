"""Reports: report.json (analysis + explanations) and the figures, written together.
The CLI and the app both call `write_report`."""
from __future__ import annotations

import json
from pathlib import Path

from explain.figures import save_figure, temporal_figure
from explain.temporal import explain_temporal, read_truth, truth_record
from models.analysis import AnalysisResult
from models.cache import atomic_write
from models.errors import AnalysisError


def load_truth_file(path: str | Path, video_name: str) -> dict:
    """Ground truth for `video_name` from an AV-Deepfake1M metadata file the user names."""
    record = truth_record(Path(path), video_name, any_single=True)
    if record is None:
        raise AnalysisError(f"has no record for {video_name}.", path=path)
    return record


def build_report(result: AnalysisResult, truth: dict | None = None) -> tuple[dict, list]:
    """The report dictionary and the temporal explanations it was built from."""
    if truth is None:
        truth = read_truth(result.media.path)
    explanations = explain_temporal(result, truth)
    report = result.to_dict()
    report["ground_truth"] = truth
    report["temporal"] = [e.to_dict() for e in explanations]
    return report, explanations


def write_report(result: AnalysisResult, out_dir: str | Path, truth: dict | None = None) -> dict[str, Path]:
    """Write report.json and temporal.png / temporal.svg into `out_dir`; return their paths."""
    out_dir = Path(out_dir)
    report, explanations = build_report(result, truth)
    paths = {"report": atomic_write(out_dir / "report.json",
                                    lambda tmp: tmp.write_text(json.dumps(report, indent=1, allow_nan=False)))}
    clip = result.clip
    figure = temporal_figure(explanations, audio=clip.audio if clip else None, frames=clip.frames if clip else None,
                             title=f"{result.media.name} — {result.media.duration_s:.2f} s")
    png, svg = save_figure(figure, out_dir / "temporal")
    paths.update({"temporal_png": png, "temporal_svg": svg})
    return paths
