"""Figures in the paper's form, as matplotlib objects (the app shows them) and as PNG/SVG
files (the report and the CLI write them). Non-interactive backend only.

Artists carry gids so tests can find them: "true-segment", "predicted-segment",
"peak-marker", "logit-curve", "proba-curve", "mel", "mel-zoom", "peak-frame", and in the
audio attribution figure "attribution" and "explained-step".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.gridspec import GridSpecFromSubplotSpec  # noqa: E402

from explain.audio_attribution import AudioAttribution  # noqa: E402
from explain.temporal import TemporalExplanation  # noqa: E402
from models.cache import atomic_write
from models.errors import AnalysisError
from models.faces import FaceTrack, lip_view
from models.spectrogram import log_mel  # noqa: E402
from models.timing import MEL_HOP, N_MELS, SAMPLE_RATE, STEP_RATE  # noqa: E402

MODALITY_COLOURS = {"audio": "#1f6fb4", "lips": "#8e44ad", "face": "#2a9d55", "visual": "#2a9d55", "frame": "#138d90",
                    "audio-visual": "#e67e22", "fusion": "#222222"}
TRUE_COLOUR = "#d62728"
ZOOM_HALF_WIDTH_S = 0.5
MOUTH_STRIP_STEPS = 7  # mouth regions shown around the step in the app's step view
MOUTH_STRIP_LABEL_PX = 18


def mel_extent(n_frames: int) -> tuple[float, float, float, float]:
    """imshow extent placing mel frame j (centred at j·hop) on the seconds axis."""
    hop_s = MEL_HOP / SAMPLE_RATE
    return (-hop_s / 2, (n_frames - 0.5) * hop_s, 0, N_MELS)


def temporal_figure(explanations: list[TemporalExplanation], audio: np.ndarray | None = None,
                    frames: np.ndarray | None = None, title: str | None = None) -> Figure:
    """Stacked score/proba panels per probe on one shared time axis, true segments
    shaded, predicted segments barred, peaks marked; under audio probes the log-mel
    spectrogram and zoomed windows around the peaks, under visual probes the frames at
    the peaks labelled real/fake with their probability."""
    blocks = [(e, _detail_kind(e, audio, frames)) for e in explanations]
    heights = []
    for _, kind in blocks:
        heights += [1.0, 1.0] + ([1.3, 1.2] if kind == "audio" else [1.4] if kind == "visual" else [])
    figure = Figure(figsize=(11, 0.95 * sum(heights) + 0.6), layout="constrained")
    grid = figure.add_gridspec(len(heights), 1, height_ratios=heights)
    shared = None
    row = 0
    duration = max(len(e.logits) for e in explanations) / STEP_RATE
    mel = log_mel(audio) if audio is not None and any(k == "audio" for _, k in blocks) else None
    for explanation, kind in blocks:
        score_ax = figure.add_subplot(grid[row], sharex=shared)
        shared = shared or score_ax
        proba_ax = figure.add_subplot(grid[row + 1], sharex=shared)
        _curves(score_ax, proba_ax, explanation)
        row += 2
        if kind == "audio":
            mel_ax = figure.add_subplot(grid[row], sharex=shared)
            _mel_panel(mel_ax, mel, explanation)
            _mel_zooms(figure, grid[row + 1], mel, explanation)
            row += 2
        elif kind == "visual":
            _peak_frames(figure, grid[row], frames, explanation)
            row += 1
    shared.set_xlim(0, duration)
    if title:
        figure.suptitle(title, fontsize=11)
    return figure


def _detail_kind(explanation: TemporalExplanation, audio, frames) -> str | None:
    if explanation.modality == "audio" and audio is not None:
        return "audio"
    if explanation.modality in ("face", "lips", "frame") and frames is not None:
        return "visual"
    return None


def _shade(ax, explanation: TemporalExplanation) -> None:
    for start, end in explanation.truth or []:
        ax.axvspan(start, end, color=TRUE_COLOUR, alpha=0.15, lw=0, gid="true-segment")


def _curves(score_ax, proba_ax, explanation: TemporalExplanation) -> None:
    colour = MODALITY_COLOURS.get(explanation.modality, "#555555")
    times = explanation.times
    for ax in (score_ax, proba_ax):
        _shade(ax, explanation)
    score_ax.plot(times, explanation.logits, color=colour, lw=1.2, gid="logit-curve")
    score_ax.axhline(0.0, color="#777777", ls="--", lw=0.8)
    peaks = np.array(explanation.peaks, int)
    score_ax.plot(times[peaks], explanation.logits[peaks], "v", color="black", ms=7, gid="peak-marker")
    score_ax.set_ylabel("score")
    score_ax.set_title(f"{explanation.probe_id} ({explanation.modality}) — S = {explanation.video_score:+.2f}, "
                       f"P(fake) = {explanation.p_fake:.2f}", fontsize=10, loc="left")
    proba_ax.plot(times, explanation.probabilities, color=colour, lw=1.2, gid="proba-curve")
    proba_ax.axhline(0.5, color="#777777", ls="--", lw=0.8)
    for start, end in explanation.predicted:
        proba_ax.hlines(1.04, start, end, color=colour, lw=4, gid="predicted-segment")
    proba_ax.set_ylim(-0.02, 1.1)
    proba_ax.set_ylabel("proba")
    proba_ax.set_xlabel("time (s)")


def draw_mel(ax, mel: np.ndarray, cmap: str = "magma") -> None:
    """A (N_MELS, frames) spectrogram on the axes' seconds axis (frame j centred at j · hop)."""
    ax.imshow(mel, origin="lower", aspect="auto", cmap=cmap, extent=mel_extent(mel.shape[1]), gid="mel")


def _mel_panel(ax, mel: np.ndarray, explanation: TemporalExplanation) -> None:
    draw_mel(ax, mel)
    _shade(ax, explanation)
    for peak in explanation.peaks:
        ax.axvline(peak / STEP_RATE, color="white", lw=0.8, ls=":")
    ax.set_ylabel(f"mel ({N_MELS})")
    ax.set_xlabel("time (s)")


def _mel_zooms(figure: Figure, cell, mel: np.ndarray, explanation: TemporalExplanation) -> None:
    peaks = explanation.peaks
    inner = GridSpecFromSubplotSpec(1, max(1, len(peaks)), subplot_spec=cell, wspace=0.15)
    for index, peak in enumerate(peaks):
        ax = figure.add_subplot(inner[index])
        centre = (peak + 0.5) / STEP_RATE
        duration = len(explanation.logits) / STEP_RATE
        start = min(max(0.0, centre - ZOOM_HALF_WIDTH_S), max(0.0, duration - 2 * ZOOM_HALF_WIDTH_S))
        end = min(duration, start + 2 * ZOOM_HALF_WIDTH_S)
        hop_s = MEL_HOP / SAMPLE_RATE
        first, last = int(start / hop_s), min(mel.shape[1], int(np.ceil(end / hop_s)) + 1)
        left, _, bottom, top = mel_extent(mel.shape[1])
        ax.imshow(mel[:, first:last], origin="lower", aspect="auto", cmap="magma", gid="mel-zoom",
                  extent=(left + first * hop_s, left + last * hop_s, bottom, top))
        ax.set_xlim(start, end)
        ax.axvline(peak / STEP_RATE, color="white", lw=0.8, ls=":")
        ax.set_title(f"▼ {peak / STEP_RATE:.2f} s  p = {explanation.probabilities[peak]:.2f}", fontsize=8)
        ax.set_yticks([])
        ax.tick_params(labelsize=7)


def _peak_frames(figure: Figure, cell, frames: np.ndarray, explanation: TemporalExplanation) -> None:
    peaks = explanation.peaks
    inner = GridSpecFromSubplotSpec(1, max(1, len(peaks)), subplot_spec=cell, wspace=0.05)
    for index, peak in enumerate(peaks):
        ax = figure.add_subplot(inner[index])
        ax.imshow(frames[min(peak, len(frames) - 1)], gid="peak-frame")
        probability = float(explanation.probabilities[peak])
        verdict = "fake" if probability >= 0.5 else "real"
        ax.set_title(f"▼ {peak / STEP_RATE:.2f} s: {verdict} ({probability:.2f})", fontsize=8,
                     color=TRUE_COLOUR if verdict == "fake" else "#2a9d55")
        ax.axis("off")


def mouth_strip(frames: np.ndarray, track: FaceTrack, step: int, width: int, count: int = MOUTH_STRIP_STEPS
                ) -> np.ndarray:
    """(h, width, 3) uint8: what the lip encoders see at `count` steps around `step`, side by
    side (the 88 px grey mouth region of each), the one at `step` framed in red, under a
    one-line label; steps past either end of the clip are left dark. Frames narrower than
    `count` tiles of 16 px get the strip scaled down to their width."""
    half = count // 2
    steps = [s for s in range(step - half, step + half + 1) if 0 <= s < len(frames)]
    views = dict(zip(steps, lip_view(track.mouth_rois(frames, steps))))
    tile = max(16, width // count)  # narrow frames: drawn at 16 px a tile, then scaled to the frame's width
    strip = np.full((tile + MOUTH_STRIP_LABEL_PX, tile * count, 3), 24, np.uint8)
    for index, s in enumerate(range(step - half, step + half + 1)):
        if s in views:
            image = cv2.cvtColor(cv2.resize(views[s], (tile, tile), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2RGB)
            if s == step:
                cv2.rectangle(image, (0, 0), (tile - 1, tile - 1), (220, 30, 30), max(1, tile // 24))
            strip[MOUTH_STRIP_LABEL_PX:, index * tile:(index + 1) * tile] = image
    cv2.putText(strip, f"mouth region (lip encoders' input), steps {steps[0]}..{steps[-1]}", (4, 12),
                cv2.FONT_HERSHEY_SIMPLEX, 0.4, (235, 235, 235), 1, cv2.LINE_AA)
    if strip.shape[1] == width:
        return strip
    height = max(1, round(strip.shape[0] * width / strip.shape[1]))
    return cv2.resize(strip, (width, height), interpolation=cv2.INTER_AREA)


def audio_attribution_figure(audio: np.ndarray, attribution: AudioAttribution, title: str | None = None) -> Figure:
    """The clip's log-mel spectrogram in grey with the time–frequency attribution over it
    (jet colours, opaque where high) and the explained step shaded; below, the step logits."""
    mel = log_mel(audio)
    if mel.shape != attribution.attribution.shape:
        raise AnalysisError(f"the attribution ({attribution.attribution.shape}) does not fit this clip's "
                            f"spectrogram ({mel.shape}).")
    figure = Figure(figsize=(11, 4.6), layout="constrained")
    mel_ax, score_ax = figure.subplots(2, 1, sharex=True, height_ratios=[2.2, 1.0])
    draw_mel(mel_ax, mel, cmap="gray")
    colours = matplotlib.colormaps["jet"](attribution.attribution)
    colours[..., 3] = 0.85 * attribution.attribution
    mel_ax.imshow(colours, origin="lower", aspect="auto", extent=mel_extent(mel.shape[1]), gid="attribution")
    mel_ax.set_ylabel(f"mel ({N_MELS})")
    target = "pooled clip score" if attribution.step is None else f"step {attribution.step}"
    mel_ax.set_title(title or f"{attribution.probe_id}: what drove the {target}", fontsize=10, loc="left")
    times = np.arange(len(attribution.logits)) / STEP_RATE
    score_ax.plot(times, attribution.logits, color=MODALITY_COLOURS["audio"], lw=1.2, gid="logit-curve")
    score_ax.axhline(0.0, color="#777777", ls="--", lw=0.8)
    if attribution.step is not None:
        span = (attribution.step / STEP_RATE, (attribution.step + 1) / STEP_RATE)
        mel_ax.axvspan(*span, color="white", alpha=0.3, lw=0, gid="explained-step")
        score_ax.axvspan(*span, color="#999999", alpha=0.3, lw=0, gid="explained-step")
    score_ax.set_ylabel("score")
    score_ax.set_xlabel("time (s)")
    score_ax.set_xlim(0, len(attribution.logits) / STEP_RATE)
    return figure


def modality_figure(ablation: dict) -> Figure:
    """The cross-modal ablation over time: each modality's calibrated evidence, the fused
    evidence, and what the fused evidence loses when each modality is set to neutral."""
    times = np.asarray(ablation["times"])
    figure = Figure(figsize=(11, 3.4), layout="constrained")
    evidence_ax, share_ax = figure.subplots(2, 1, sharex=True)
    for modality, values in ablation["evidence"].items():
        evidence_ax.plot(times, values, color=MODALITY_COLOURS.get(modality, "#555555"), lw=1.1, label=modality,
                         gid=f"evidence-{modality}")
    evidence_ax.plot(times, ablation["fused"], color="black", lw=1.4, label="fused", gid="evidence-fused")
    evidence_ax.axhline(0.0, color="#777777", ls="--", lw=0.8)
    evidence_ax.set_ylabel("log-odds\nabove threshold", fontsize=8)
    evidence_ax.legend(fontsize=7, loc="upper right", ncols=4)
    for modality, values in ablation["contributions"].items():
        share_ax.plot(times, values, color=MODALITY_COLOURS.get(modality, "#555555"), lw=1.1,
                      gid=f"contribution-{modality}")
    share_ax.axhline(0.0, color="#777777", ls="--", lw=0.8)
    share_ax.set_ylabel("lost when\nablated", fontsize=8)
    share_ax.set_xlabel("time (s)")
    evidence_ax.set_title("Where the evidence comes from: each modality, fused, and each one ablated", fontsize=10,
                          loc="left")
    return figure


@dataclass(frozen=True)
class TimeAxis:
    """Where the shared time axis of a saved temporal figure lies in its image, as fractions
    of the width (left to right) and of the height (top down, one span per panel on it): a
    cursor at any time can then be drawn onto the PNG."""

    x0: float
    x1: float
    duration_s: float
    spans: tuple[tuple[float, float], ...]

    def draw_cursor(self, image: np.ndarray, time_s: float, colour=(220, 30, 30)) -> np.ndarray:
        """A copy of the figure's RGB image with a vertical line at `time_s` on every panel."""
        out = image.copy()
        height, width = out.shape[:2]
        x = int(round((self.x0 + (self.x1 - self.x0) * min(max(time_s / self.duration_s, 0.0), 1.0)) * width))
        for top, bottom in self.spans:
            out[int(top * height):int(bottom * height), max(0, x - 1):x + 1] = colour
        return out


def time_axis(figure: Figure) -> TimeAxis:
    """The time axis of a temporal figure once it has been drawn (saved)."""
    first = figure.axes[0]
    panels = [ax for ax in figure.axes if first.get_shared_x_axes().joined(first, ax)]
    box = first.get_position()
    return TimeAxis(box.x0, box.x1, float(first.get_xlim()[1]),
                    tuple((1 - ax.get_position().y1, 1 - ax.get_position().y0) for ax in panels))


def save_figure(figure: Figure, path_stem: str | Path, formats: tuple[str, ...] = ("png", "svg"),
                dpi: int = 110) -> list[Path]:
    """Write the figure as PATH_STEM.png / .svg and return the paths. The layout the first
    format computed is kept for the others (laying out again costs 0.3 s a temporal figure)."""
    paths = []
    for fmt in formats:
        path = Path(f"{path_stem}.{fmt}")
        atomic_write(path, lambda tmp, f=fmt: figure.savefig(tmp, format=f, dpi=dpi))
        figure.set_layout_engine("none")
        paths.append(path)
    return paths
