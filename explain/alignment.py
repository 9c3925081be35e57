"""How well spatial explanations agree with humans and with known manipulated regions.

The alignment error between a heatmap point h and a human click c, both in normalised
frame coordinates (0..1, origin top-left), is kept fixed as

    MAE(h, c) = (|h_x − c_x| + |h_y − c_y|) / 2

(the mean absolute error over the two coordinates), averaged over clicks. h is the
heatmap maximum (`mae`) and, reported beside it, the hot-spot centre (`mae_hotspot`, see
explain.spatial). Baselines put h at the frame centre (0.5, 0.5) or at the tracked
face-box centre of that step. The
paper's Figure 4 (left) is the MAE over the clicks whose step logit is at least a minimum
fakeness score, as that minimum rises; (right) frames with the click and the maximum.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from explain.annotations import Click, click_step
from explain.spatial import (
    SpatialExplanation,
    cascade_depths,
    explain_spatial,
    map_to_frame,
    overlay,
    pointing_game,
    randomised_maps,
    spatial_encoder,
    step_crops,
)
from models.analysis import AnalysisOptions, AnalysisResult, analyze
from models.errors import AnalysisError
from models.faces import FACE_CROP_SIZE
from models.timing import STEP_RATE

FRAME_CENTRE = (0.5, 0.5)


def mae(a: tuple[float, float], b: tuple[float, float]) -> float:
    """The alignment error defined above, for one pair of points."""
    return (abs(a[0] - b[0]) + abs(a[1] - b[1])) / 2


@dataclass
class AlignedClick:
    video: str
    annotator: str
    frame_index: int
    step: int
    click: tuple[float, float]
    peak: tuple[float, float]
    hotspot: tuple[float, float]
    face_centre: tuple[float, float]
    logit: float
    mae: float
    mae_hotspot: float
    mae_frame_centre: float
    mae_face_centre: float


def face_centre(result: AnalysisResult, step: int) -> tuple[float, float]:
    x0, y0, x1, y1 = result.face_track.face_boxes[step]
    height, width = result.clip.frames.shape[1:3]
    return float((x0 + x1) / 2 / width), float((y0 + y1) / 2 / height)


def align_clicks(result: AnalysisResult, probe_id: str,
                 clicks: list[Click]) -> tuple[list[AlignedClick], SpatialExplanation | None]:
    """For every click on this video: the heatmap maximum at its step (computed on demand)
    and the MAE to it and to the two baselines; and the explanation (maps, sanity report)."""
    if not clicks:
        return [], None
    steps = [click_step(c, result.media.fps, result.clip.n_steps) for c in clicks]
    explanation = explain_spatial(result, probe_id, steps=sorted(set(steps)))
    rows = []
    for click, step in zip(clicks, steps):
        heatmap = explanation.heatmap(step)
        point, centre = (click.x, click.y), face_centre(result, step)
        rows.append(AlignedClick(click.video_name, click.annotator, click.frame_index, step, point, heatmap.peak,
                                 heatmap.hotspot, centre, heatmap.logit, mae(heatmap.peak, point),
                                 mae(heatmap.hotspot, point), mae(FRAME_CENTRE, point), mae(centre, point)))
    return rows, explanation


def summarise(rows: list[AlignedClick], by: str | None = None) -> dict:
    """Mean MAE of the explanations and both baselines, over all rows or per `by`
    ('video' or 'annotator')."""
    if by is not None:
        keys = sorted({getattr(r, by) for r in rows})
        return {key: summarise([r for r in rows if getattr(r, by) == key]) for key in keys}
    if not rows:
        return {"clicks": 0}
    return {"clicks": len(rows), **{key: round(float(np.mean([getattr(r, key) for r in rows])), 4)
                                    for key in ("mae", "mae_hotspot", "mae_frame_centre", "mae_face_centre")}}


def mae_curve(rows: list[AlignedClick]) -> list[dict]:
    """Figure 4 (left): for each minimum step logit, the MAEs over the clicks at or above it."""
    curve = []
    for threshold in sorted({r.logit for r in rows}):
        kept = [r for r in rows if r.logit >= threshold]
        curve.append({"min_score": round(threshold, 6), **summarise(kept)})
    return curve


def alignment_figure(result: AnalysisResult, rows: list[AlignedClick], explanation: SpatialExplanation,
                     max_pairs: int = 4):
    """Figure 4 in the paper's form: MAE against minimum fakeness score (left) and frames
    with the human click (circle), the heatmap maximum (×) and hot-spot centre (+) (right)."""
    figure = Figure(figsize=(4 + 2.6 * min(max_pairs, len(rows)), 3.2), layout="constrained")
    grid = figure.add_gridspec(1, 1 + min(max_pairs, len(rows)))
    axis = figure.add_subplot(grid[0, 0])
    curve = mae_curve(rows)
    scores = [c["min_score"] for c in curve]
    for key, label, style in (("mae", "heatmap maximum", "-"), ("mae_hotspot", "hot-spot centre", "-."),
                              ("mae_frame_centre", "frame centre", "--"),
                              ("mae_face_centre", "face centre", ":")):
        axis.plot(scores, [c[key] for c in curve], style, label=label, gid=f"curve-{key}")
    axis.set_xlabel("minimum fakeness score (step logit)")
    axis.set_ylabel("MAE (normalised)")
    axis.legend(fontsize=7)
    height, width = result.clip.frames.shape[1:3]
    for index, row in enumerate(sorted(rows, key=lambda r: -r.logit)[:max_pairs]):
        panel = figure.add_subplot(grid[0, 1 + index])
        frame = result.clip.frames[row.step]
        panel.imshow(overlay(frame, explanation.heatmap(row.step).frame_map))
        panel.plot(row.click[0] * width, row.click[1] * height, "o", mfc="none", mec="white", ms=10, mew=2,
                   gid="human-click")
        panel.plot(row.peak[0] * width, row.peak[1] * height, "x", color="yellow", ms=10, mew=2, gid="heatmap-peak")
        panel.plot(row.hotspot[0] * width, row.hotspot[1] * height, "+", color="cyan", ms=10, mew=2,
                   gid="heatmap-hotspot")
        panel.set_title(f"{row.step / STEP_RATE:.2f} s · MAE {row.mae:.3f}", fontsize=8)
        panel.axis("off")
    return figure


# -- the synthetic benchmark's known regions -------------------------------------------------

def random_point_hit_rate(boxes: list[list[float]]) -> float:
    """The pointing-game score of uniformly random points: the mean area of the boxes."""
    return float(np.mean([(min(b[2], 1) - max(b[0], 0)) * (min(b[3], 1) - max(b[1], 0)) for b in boxes]))


def _box_share_of_crop(result: AnalysisResult, step: int, box: list[float]) -> float:
    """The pointing-game score of random points inside the face crop: the share of the crop
    (as placed in the frame, axis-aligned) that the box covers."""
    geometry = result.face_track.face_geometry(step, FACE_CROP_SIZE)
    height, width = result.clip.frames.shape[1:3]
    half = geometry.side / 2
    crop = [(geometry.centre_x - half) / width, (geometry.centre_y - half) / height,
            (geometry.centre_x + half) / width, (geometry.centre_y + half) / height]
    overlap = max(0.0, min(box[2], crop[2]) - max(box[0], crop[0])) * max(0.0, min(box[3], crop[3]) - max(box[1], crop[1]))
    return float(min(1.0, overlap / ((crop[2] - crop[0]) * (crop[3] - crop[1]))))


CASCADE_SEEDS = (0, 1, 2)


def spatial_benchmark(data: str | Path, split: str, probe_id: str, every: int = 2,
                      options: AnalysisOptions | None = None, progress=None) -> dict:
    """Pointing game and MAE to the region centre (of the maximum and of the hot-spot
    centre), against the frame-centre baseline and random points, on the visually
    manipulated steps of a generated split (its `{split}_regions.json`); and the pointing
    game under cascading model randomisation (top 1, 2, half, all blocks; 3 seeds each)."""
    data = Path(data)
    folder = data.parent if data.suffix == ".json" else data
    regions_path = folder / f"{split}_regions.json"
    if not regions_path.exists():
        raise AnalysisError("no manipulated-region file for this split.", path=regions_path,
                            hint="Spatial benchmarks need a generated set (cli.py generate).")
    regions = json.loads(regions_path.read_text())
    rows, cascade, correlations = [], {}, []
    for index, (name, steps) in enumerate(sorted(regions.items())):
        result = analyze(folder / name, [probe_id], options or AnalysisOptions())
        chosen = sorted(int(s) for s in steps)[::every]
        explanation = explain_spatial(result, probe_id, steps=chosen)
        correlations.append(explanation.sanity["median_rank_correlation"])
        truth = [steps[str(h.step)] for h in explanation.heatmaps]
        for heatmap, region in zip(explanation.heatmaps, truth):
            rows.append({"hit": pointing_game(heatmap.peak, region["box"]),
                         "hotspot_hit": pointing_game(heatmap.hotspot, region["box"]),
                         "mae": mae(heatmap.peak, region["centre"]), "mae_hotspot": mae(heatmap.hotspot, region["centre"]),
                         "mae_frame_centre": mae(FRAME_CENTRE, region["centre"]), "box": region["box"],
                         "crop_share": _box_share_of_crop(result, heatmap.step, region["box"])})
        encoder, probe = spatial_encoder(result, probe_id)
        _, geometries, crops = step_crops(result, [h.step for h in explanation.heatmaps])
        for blocks in cascade_depths(encoder.torch_module()):
            for seed in CASCADE_SEEDS:
                maps = randomised_maps(encoder, probe, crops, blocks, seed)
                cascade.setdefault((blocks, seed), []).extend(
                    pointing_game(map_to_frame(m, g)[1], r["box"]) for m, g, r in zip(maps, geometries, truth))
        if progress:
            progress(index + 1, len(regions))

    def mean(key: str) -> float:
        return round(float(np.mean([row[key] for row in rows])), 4)

    depths = sorted({blocks for blocks, _ in cascade})
    return {"probe": probe_id, "split": split, "videos": len(regions), "fake_steps": len(rows),
            "pointing_game": mean("hit"), "pointing_game_hotspot": mean("hotspot_hit"),
            "pointing_game_random_points": round(random_point_hit_rate([row["box"] for row in rows]), 4),
            "pointing_game_random_points_in_face_crop": mean("crop_share"),
            "mae_to_region_centre": mean("mae"), "mae_hotspot_to_region_centre": mean("mae_hotspot"),
            "mae_frame_centre": mean("mae_frame_centre"),
            "randomisation_cascade": [{"blocks": blocks, "of": max(depths),
                                       "pointing_game": round(float(np.mean([np.mean(cascade[(blocks, s)])
                                                                             for s in CASCADE_SEEDS])), 4),
                                       "per_seed": [round(float(np.mean(cascade[(blocks, s)])), 4)
                                                    for s in CASCADE_SEEDS]} for blocks in depths],
            "sanity_median_rank_correlation": round(float(np.nanmedian(correlations)), 4)}


def write_alignment(rows: list[AlignedClick], sanity: dict, out_dir: str | Path) -> Path:
    """alignment.json: the per-click rows, the summaries and the curve."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "alignment.json"
    path.write_text(json.dumps({"definition": "MAE = (|hx - cx| + |hy - cy|) / 2, normalised frame coordinates",
                                "overall": summarise(rows), "per_video": summarise(rows, "video"),
                                "per_annotator": summarise(rows, "annotator"), "curve": mae_curve(rows),
                                "sanity": sanity, "clicks": [asdict(r) for r in rows]}, indent=1))
    return path
