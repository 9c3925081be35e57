"""Gradio UI: layout and wiring only; all work is done by models/ and explain/.

    python app.py            # serves on http://127.0.0.1:7860 (GRADIO_SERVER_NAME / _PORT to change)

Settings by environment: AVXPLAIN_MAX_DURATION_S (default 120), AVXPLAIN_MAX_UPLOAD_MB
(default 200), AVXPLAIN_MAX_FRAMES (default 36000), AVXPLAIN_MAX_WIDTH / _HEIGHT (default 4096
each), AVXPLAIN_TIME_LIMIT_S (per analysis,
default 300), AVXPLAIN_SESSION_TTL_S (an idle session's analysis is dropped, default 3600;
a closed tab's at once), AVXPLAIN_MAX_SESSIONS (sessions kept in memory, oldest dropped, default 200),
AVXPLAIN_ANNOTATIONS_DB (a SQLAlchemy URL or SQLite file; default the app home's
annotations.sqlite), AVXPLAIN_CONCURRENCY (default 2 analyses at once).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import html
import inspect
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import gradio as gr
import numpy as np

from explain.alignment import align_clicks, alignment_figure, summarise
from explain.annotations import AnnotationStore, Click, export_exddv, import_exddv
from explain.reports import WrittenReport, write_report
from explain.spatial import Heatmap, explain_spatial, overlay, spatial_probes
from explain.temporal import top_peaks
from explain.verdict import modality_detail
from models.analysis import AnalysisOptions, AnalysisResult, analyze, warm_up
from models.encoders import get_spec
from models.errors import AnalysisError
from models.media import Clip, MediaLimits, decode, file_sha256, inspect_media
from models.settings import Settings
from models.sync import SYNC_SCORER_ID
from models.timing import STEP_RATE
from models.zoo import DEFAULT_SCORERS, describe_probe, usable_probes

ASSETS = Path(__file__).parent / "assets"
EXAMPLES = [str(p) for folder in ("demo", "examples") for p in sorted((ASSETS / folder).glob("*.mp4"))]
MODALITY_TITLES = {"audio": "Audio probes", "face": "Face probes", "lips": "Lip probes",
                   "audio-visual": "Audio-visual probes", "frame": "Frame probes"}
STAND_IN_BANNER = ("⚠️ **Offline stand-ins or synthetic training:** {names}. These probes run on encoders "
                   "pretrained here on synthetic material or random-init, or were trained on synthetic "
                   "manipulations. Their scores show how the tool works; they are not real-world deepfake detections.")
GALLERY_STEPS = 3
SYNC_LABEL = f"[audio-visual] {SYNC_SCORER_ID} · mouth opening against the speech envelope (no training)"
TEMP_ROOT = Path(tempfile.gettempdir()) / "avxplain-app"
TEMP_TTL_S = 3600
M_ARENA_MAX = -8  # glibc's mallopt parameter number
SESSION_TTL_S = float(os.environ.get("AVXPLAIN_SESSION_TTL_S", 3600))  # an idle session's analysis is dropped then
MAX_SESSIONS = int(os.environ.get("AVXPLAIN_MAX_SESSIONS", 200))  # sessions Gradio keeps; the oldest are dropped
CLOSED_SESSIONS: OrderedDict[str, None] = OrderedDict()  # recently closed sessions: their running analyses stop
CLOSED_SESSIONS_KEPT = 1000
MARKER_COLOUR = (255, 40, 200)


def settings_limits() -> MediaLimits:
    return MediaLimits(max_duration_s=float(os.environ.get("AVXPLAIN_MAX_DURATION_S", 120)),
                       max_file_bytes=int(float(os.environ.get("AVXPLAIN_MAX_UPLOAD_MB", 200)) * 1024**2),
                       max_frames=int(os.environ.get("AVXPLAIN_MAX_FRAMES", 36_000)),
                       max_width=int(os.environ.get("AVXPLAIN_MAX_WIDTH", 4096)),
                       max_height=int(os.environ.get("AVXPLAIN_MAX_HEIGHT", 4096)))


def settings_options() -> AnalysisOptions:
    return AnalysisOptions(settings=Settings(limits=settings_limits()),
                           time_limit_s=float(os.environ.get("AVXPLAIN_TIME_LIMIT_S", 300)))


def scratch_folder(kind: str) -> Path:
    """A fresh folder for one request's output files under the app's temporary root. Older
    folders of that kind (left by requests that failed or were cancelled, or served long
    ago: Gradio keeps its own copy of every returned file) are removed first."""
    root = TEMP_ROOT / kind
    root.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - TEMP_TTL_S
    for old in root.iterdir():
        with contextlib.suppress(OSError):
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=root))


def store() -> AnnotationStore:
    """One store per process (SQLAlchemy engines pool their connections)."""
    global _STORE
    with _STORE_LOCK:
        if _STORE is None:
            _STORE = AnnotationStore(os.environ.get("AVXPLAIN_ANNOTATIONS_DB"))
        return _STORE


_STORE: AnnotationStore | None = None
_STORE_LOCK = threading.Lock()


@dataclass
class Session:
    """What one browser session holds between events."""

    video: str | None = None
    result: AnalysisResult | None = None
    clip: Clip | None = None  # for annotation when no analysis ran yet
    sha256: str | None = None
    reports: list[str] = field(default_factory=list)
    gallery_steps: list[int] = field(default_factory=list)  # the step of each gallery item, in order

    def frames_clip(self) -> Clip:
        if self.result is not None and self.result.clip is not None:
            return self.result.clip
        if self.clip is None:
            raise gr.Error("Load a video first (Analyse tab, or Load frames here).")
        return self.clip


def user_error(error: AnalysisError) -> gr.Error:
    return gr.Error(html.escape(str(error)), print_exception=False)


# -- probes ----------------------------------------------------------------------------------

def probe_groups() -> dict[str, list[tuple[str, str]]]:
    """Usable probes grouped by their encoder's modality, with a descriptive label."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for entry in usable_probes():
        groups.setdefault(get_spec(entry.encoder).modality, []).append((describe_probe(entry), entry.id))
    groups.setdefault("audio-visual", []).insert(0, (SYNC_LABEL, SYNC_SCORER_ID))
    return groups


def default_probes(groups: dict[str, list[tuple[str, str]]]) -> list[str]:
    """The probes ticked when the app opens: the bundled demo probes and the sync scorer, else
    the first usable one."""
    available = {pid for choices in groups.values() for _, pid in choices}
    return [p for p in DEFAULT_SCORERS if p in available] or sorted(available)[:1]


def stand_in_probes() -> frozenset[str]:
    """The usable probes that are no real-world detectors (read once, from the zoo's cards)."""
    return frozenset(entry.id for entry in usable_probes() if entry.stand_in)


def banner(stand_ins: frozenset[str], *selected: list[str]) -> str:
    names = [pid for group in selected for pid in (group or []) if pid in stand_ins]
    return STAND_IN_BANNER.format(names=", ".join(names)) if names else ""


# -- analyse ---------------------------------------------------------------------------------

def analyse_into_folder(video: str | None, probe_ids: list[str], report, previous: AnalysisResult | None = None,
                        spatial_steps: int = GALLERY_STEPS) -> tuple[Path, AnalysisResult, WrittenReport]:
    """Analyse `video` and write its report into a fresh scratch folder (the page and the
    API both call this). A failed or cancelled run leaves nothing on disk; a user error
    becomes one message."""
    if not video:
        raise gr.Error("Upload a video (MP4, MOV, MKV, WebM or AVI) first, or pick an example.")
    if not probe_ids:
        raise gr.Error("Choose at least one probe.")
    out = scratch_folder("reports")
    try:
        result = analyze(video, probe_ids, settings_options(), progress=report, previous=previous)
        report("explanations", 0.0)
        written = write_report(result, out, spatial_steps=spatial_steps)
    except BaseException as error:  # failed or cancelled: nothing of this request stays on disk
        shutil.rmtree(out, ignore_errors=True)
        if isinstance(error, AnalysisError):
            raise user_error(error) from None
        raise
    finally:
        return_freed_memory()
    return out, result, written


def run_analysis(video: str | None, session: Session | None, *groups, request: gr.Request | None = None,
                 progress=gr.Progress()):
    """Analyse one video with the chosen probes; the report, the figure and the heatmap gallery.
    It stops at its next stage once the tab that asked for it has closed."""
    session = session or Session()
    session_hash = getattr(request, "session_hash", None)
    CLOSED_SESSIONS.pop(session_hash, None)  # a tab that reconnected (same session) asks again

    def report(stage: str, fraction: float) -> None:
        if session_hash in CLOSED_SESSIONS:
            raise AnalysisError("the tab that asked for this analysis was closed; stopped.", path=video)
        progress(fraction, desc=stage)

    probe_ids = [pid for group in groups for pid in (group or [])]
    previous = session.result if session.video == video else None  # switching probes reuses frames and features
    out, result, written = analyse_into_folder(video, probe_ids, report, previous)
    _replace_reports(session, str(out))
    session.video, session.result, session.sha256 = video, result, result.media.sha256
    session.gallery_steps = [heatmap.step for heatmap, _ in written.heatmaps]
    gallery = [(str(path), heatmap_caption(result, heatmap)) for heatmap, path in written.heatmaps]
    slider = gr.Slider(minimum=0, maximum=result.media.n_steps - 1, value=_first_peak(result), step=1,
                       interactive=True)
    return (session, summary_markdown(result, written.report["verdict"]), str(written.paths["temporal_png"]), gallery,
            [str(p) for p in written.paths.values()], slider)


def end_session(session: Session | None) -> None:
    """When a session expires or closes: remove its report files and free its memory."""
    if session is not None:
        _replace_reports(session, None)
        session.result = session.clip = None
    return_freed_memory()


def with_request_and_progress(handler, n_inputs: int):
    """`handler(*inputs, request=, progress=)` as a function of exactly `n_inputs` inputs plus
    a request and a progress tracker: Gradio injects those only into named positional
    parameters, which a handler of a variable number of inputs (one per probe group) lacks."""
    def wired(*args):
        *inputs, request, progress = args
        return handler(*inputs, request=request, progress=progress)

    Parameter = inspect.Parameter
    wired.__signature__ = inspect.Signature(
        [Parameter(f"input_{index}", Parameter.POSITIONAL_OR_KEYWORD) for index in range(n_inputs)]
        + [Parameter("request", Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request),
           Parameter("progress", Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress())])
    wired.__annotations__ = {"request": gr.Request}
    wired.__name__, wired.__doc__ = handler.__name__, handler.__doc__
    return wired


def forget_session(app: gr.Blocks, session_hash: str) -> None:
    """A tab or client disconnected: free its analysis now and drop Gradio's copy of the
    session. (Gradio keeps a closed session's state for an hour, whatever its time to live,
    so without this every finished client would hold its frames that long.)"""
    CLOSED_SESSIONS[session_hash] = None
    while len(CLOSED_SESSIONS) > CLOSED_SESSIONS_KEPT:
        CLOSED_SESSIONS.popitem(last=False)
    holder = app.state_holder
    holder.delete_state(session_hash)  # runs end_session on the session's State
    with holder.lock:
        holder.session_data.pop(session_hash, None)
        holder.time_last_used.pop(session_hash, None)


def return_freed_memory() -> None:
    """Hand memory freed by finished requests back to the OS (glibc keeps freed heap pages
    otherwise, so a burst of analyses would leave the process at its peak). Reference
    counting has already freed a session's objects (measured: a full `gc.collect` frees
    nothing more and would hold the GIL for ~0.5 s)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _replace_reports(session: Session, folder: str | None) -> None:
    """Keep one report folder per session: the previous one is removed."""
    for old in session.reports:
        shutil.rmtree(old, ignore_errors=True)
    session.reports = [folder] if folder else []


def _first_peak(result: AnalysisResult) -> int:
    first = next(iter(result.probes.values()))
    return int(top_peaks(first.scores.logits, 1)[0])


def heatmap_caption(result: AnalysisResult, heatmap: Heatmap) -> str:
    """Which probe's map this is, where in time, and every probe's score there."""
    step = heatmap.step
    scores = [f"{pid}: p={r.scores.probabilities[step]:.2f}" for pid, r in result.probes.items()]
    return f"{heatmap.probe_id} · {heatmap.time:.2f} s (step {step}) · " + " · ".join(scores)


def verdict_markdown(verdict: dict) -> str:
    """The verdict first: label, calibrated P(fake) and threshold, each modality, segments,
    the A/V offset and every caveat."""
    p_fake = "" if verdict["p_fake"] is None else \
        f" · calibrated P(fake) **{verdict['p_fake']:.3f}** (threshold {verdict['threshold']:.3f})"
    lines = [f"### Verdict: {verdict['label'].upper()}{p_fake}"]
    for name, modality in verdict["modalities"].items():
        lines.append(f"- {name}: **{modality['label']}** {html.escape(modality_detail(modality))}")
    lines += [f"- fake segment {s['start_s']:.2f}–{s['end_s']:.2f} s ({s['modality']}, score {s['score']:.2f})"
              for s in verdict["segments"][:6]]
    lines += [f"- ⚠️ {html.escape(c)}" for c in verdict["caveats"]]
    return "\n".join(lines) + "\n"


def summary_markdown(result: AnalysisResult, verdict: dict) -> str:
    lines = [verdict_markdown(verdict),
             f"**{html.escape(result.media.name)}** · {result.media.duration_s:.2f} s · {result.media.width}×"
             f"{result.media.height} · {result.media.n_steps} steps at 25 Hz\n",
             "Raw scores (the paper's: not calibrated, grow with clip length)\n",
             "| probe | encoder | P(fake) | video score S |\n|---|---|---|---|"]
    for probe in result.probes.values():
        lines.append(f"| {probe.probe_id} | {probe.encoder_id} | **{probe.scores.p_fake:.3f}** | "
                     f"{probe.scores.video_score:+.3f} |")
    if result.fusion:
        lines.append(f"| fusion (mean probability) | | **{result.fusion.p_fake:.3f}** | |")
    lines += [f"\n- skipped {pid}: {html.escape(why)}" for pid, why in result.skipped.items()]
    lines += [f"\n- warning: {html.escape(w)}" for w in result.warnings]
    return "\n".join(lines)


def show_step(step: float, session: Session | None):
    """The frame at one step with the Grad-CAM overlay of the first face probe and every probe's score."""
    if session is None or session.result is None:
        return None, ""
    result, step = session.result, int(step)
    frame = result.clip.frames[step]
    lines = [f"**{step / STEP_RATE:.2f} s** (step {step})"]
    for pid, probe in result.probes.items():
        lines.append(f"- {pid}: s = {probe.scores.logits[step]:+.3f}, p = {probe.scores.probabilities[step]:.3f}")
    face_probes = spatial_probes(result)
    if face_probes:
        try:
            heatmap = explain_spatial(result, face_probes[0], steps=[step], sanity=False).heatmaps[0]
        except AnalysisError as error:
            raise user_error(error) from None
        frame = overlay(frame, heatmap.frame_map)
        lines.append(f"- Grad-CAM of {face_probes[0]}: maximum at ({heatmap.peak[0]:.3f}, {heatmap.peak[1]:.3f}), "
                     f"hot-spot centre at ({heatmap.hotspot[0]:.3f}, {heatmap.hotspot[1]:.3f})")
    return frame, "\n".join(lines)


def pick_gallery(session: Session | None, evt: gr.SelectData):
    """A click on a gallery item moves the time slider to the step that item was made for."""
    if session is None or evt.index is None or not 0 <= int(evt.index) < len(session.gallery_steps):
        return gr.Slider()
    return gr.Slider(value=session.gallery_steps[int(evt.index)])


# -- annotate --------------------------------------------------------------------------------

def load_frames(video: str | None, session: Session | None):
    """Decode the video for annotation (reusing the analysis when it is the same video)."""
    session = session or Session()
    if not video:
        raise gr.Error("Upload or choose a video in the Analyse tab first.")
    if session.result is None or session.video != video:
        try:
            session.clip = decode(video, settings_limits())
        except AnalysisError as error:
            raise user_error(error) from None
        session.result, session.video, session.sha256 = None, video, session.clip.info.sha256
    clip = session.frames_clip()
    slider = gr.Slider(minimum=0, maximum=clip.n_steps - 1, value=0, step=1, interactive=True)
    return session, slider


def annotation_frame(step: float, annotator: str, session: Session | None):
    """The frame at `step` with this video's clicks at that step drawn as markers."""
    if session is None or session.video is None:
        return None
    clip = session.frames_clip()
    step = int(min(max(step, 0), clip.n_steps - 1))
    frame = clip.frames[step].copy()
    height, width = frame.shape[:2]
    for click in store().list(video_sha256=session.sha256):
        if int(np.floor((click.time or 0) * STEP_RATE + 1e-9)) == step:
            centre = (int(round(click.x * width)), int(round(click.y * height)))
            cv2.circle(frame, centre, 9, MARKER_COLOUR, 2)
            cv2.drawMarker(frame, centre, MARKER_COLOUR, cv2.MARKER_CROSS, 8, 1)
    return frame


def record_click(step: float, annotator: str, note: str, difficulty: str, session: Session | None,
                 evt: gr.SelectData):
    """A click on the frame stores a point (normalised coordinates) for this annotator."""
    if session is None or session.video is None:
        raise gr.Error("Load the video's frames first.")
    clip = session.frames_clip()
    height, width = clip.frames.shape[1:3]
    x, y = evt.index
    try:
        save_click(clip.info.name, session.sha256, clip.info.fps, int(step), x / width, y / height, annotator, note,
                   int(difficulty))
    except AnalysisError as error:
        raise user_error(error) from None
    return annotation_frame(step, annotator, session), clicks_table(annotator, session)


def save_click(video_name: str, sha256: str, fps: float, step: int, x: float, y: float, annotator: str, note: str,
               difficulty: int) -> Click:
    """Store one click at `step` of a video (normalised x, y) with its frame index at `fps`."""
    time_s = step / STEP_RATE
    click = Click(video_name=video_name, frame_index=int(round(time_s * fps)), x=float(x), y=float(y),
                  annotator=(annotator or "").strip(), video_sha256=sha256, time=time_s, note=note or "",
                  difficulty=difficulty)
    click.id = store().add(click)
    return click


def clicks_table(annotator: str, session: Session | None) -> list[list]:
    if session is None or session.sha256 is None:
        return []
    return [[c.id, round(c.time or 0.0, 2), c.frame_index, round(c.x, 4), round(c.y, 4), c.annotator, c.difficulty,
             c.note] for c in store().list(video_sha256=session.sha256, annotator=(annotator or None))]


def delete_click(click_id: float | None, annotator: str, step: float, session: Session | None):
    if click_id is None:
        raise gr.Error("Enter the id of one of your points to delete it.")
    if not store().delete(int(click_id), annotator=(annotator or "").strip()):
        raise gr.Error(f"No point {int(click_id)} of annotator {html.escape(annotator or '')} to delete.")
    return annotation_frame(step, annotator, session), clicks_table(annotator, session)


def export_clicks(annotator: str, session: Session | None, only_this_video: bool):
    name = session.frames_clip().info.name if session and only_this_video and session.video else None
    return str(export_exddv(store(), scratch_folder("exports") / "exddv_clicks.csv", video_name=name,
                            annotator=(annotator or None)))


def import_clicks(file: str | None, skip_bad: bool):
    if not file:
        raise gr.Error("Choose an ExDDV CSV file to import.")
    try:
        report = import_exddv(store(), file, skip_bad=skip_bad)
    except AnalysisError as error:
        raise user_error(error) from None
    skipped = "".join(f"\n- skipped {html.escape(p)}" for p in report.bad_rows)
    return f"Imported {report.imported_clicks} clicks from {report.imported_rows} rows.{skipped}"


def alignment_view(session: Session | None, probe_id: str | None):
    """MAE between this video's clicks and the Grad-CAM maxima, with its baselines."""
    if session is None or session.result is None:
        raise gr.Error("Analyse the video with a face probe first (Analyse tab).")
    face_probes = spatial_probes(session.result)
    probe_id = probe_id if probe_id in face_probes else (face_probes[0] if face_probes else None)
    if probe_id is None:
        raise gr.Error("None of the analysed probes works on face crops; choose one in the Analyse tab.")
    clicks = store().list(video_sha256=session.sha256)
    if not clicks:
        raise gr.Error("No points for this video yet: click on the frame to add some.")
    try:
        rows, explanation = align_clicks(session.result, probe_id, clicks)
    except AnalysisError as error:
        raise user_error(error) from None
    overall, sanity = summarise(rows), explanation.sanity
    text = (f"**{probe_id}** on {overall['clicks']} clicks — MAE of the heatmap maximum **{overall['mae']:.3f}**, "
            f"of its hot-spot centre **{overall['mae_hotspot']:.3f}** (frame centre "
            f"{overall['mae_frame_centre']:.3f}, face centre {overall['mae_face_centre']:.3f}); "
            f"MAE = (|Δx| + |Δy|) / 2 in normalised frame coordinates.\n\n"
            f"Sanity check (untrained twin encoder, shuffled probe): median rank correlation "
            f"{sanity['median_rank_correlation']} — "
            f"{'maps depend on the model' if sanity['explains_model'] else '⚠️ this map does not depend on the model'}.")
    return text, alignment_figure(session.result, rows, explanation)


# -- API-only endpoints ----------------------------------------------------------------------

def api_analyse(video: str, probes: list[str] | None = None, spatial_steps: float = GALLERY_STEPS,
                progress=gr.Progress()) -> tuple[dict, list[str]]:
    """Analyse `video` with the probe ids in `probes` (default: the bundled probes and the
    sync scorer); returns report.json's content, verdict first, and the files written
    (report, figures, heatmaps)."""
    _, _, written = analyse_into_folder(video, list(probes or DEFAULT_SCORERS),
                                        lambda stage, fraction: progress(fraction, desc=stage),
                                        spatial_steps=max(0, int(spatial_steps)))
    return written.report, [str(p) for p in written.paths.values()]


def api_probes() -> list[dict]:
    """Every probe id this server can run now, with its modality, encoder, whether it is a
    stand-in or baseline, and its card."""
    entries = [{"id": SYNC_SCORER_ID, "modality": "audio-visual", "encoder": None, "source": "builtin",
                "stand_in": False, "card": {"description": SYNC_LABEL}}]
    return entries + [{"id": e.id, "modality": get_spec(e.encoder).modality, "encoder": e.encoder, "source": e.source,
                       "stand_in": e.stand_in, "card": {k: v for k, v in e.card.items() if k != "path"}}
                      for e in usable_probes()]  # the card's server-side path means nothing to a client


def api_annotate(video: str, step: float, x: float, y: float, annotator: str, note: str, difficulty: float) -> dict:
    """Store one click on `video` at `step` (normalised x, y); returns the stored click."""
    try:  # the header and the file's hash are all a click needs: nothing is decoded
        header = inspect_media(video, settings_limits())
        if header.fps <= 0 or not 0 <= step < header.packets_end_s * STEP_RATE:
            raise AnalysisError(f"step {step} is outside the video (0 to {int(header.packets_end_s * STEP_RATE) - 1}), "
                                "or its header gives no frame rate.", path=video)
        click = save_click(Path(video).name, file_sha256(video), header.fps, int(step), float(x), float(y), annotator,
                           note, int(difficulty))
    except AnalysisError as error:
        raise user_error(error) from None
    return {"id": click.id, "video_sha256": click.video_sha256, "video_name": click.video_name,
            "frame_index": click.frame_index, "time": click.time, "x": click.x, "y": click.y,
            "annotator": click.annotator}


def api_export(video_name: str, annotator: str) -> str:
    """ExDDV CSV of the stored clicks (optionally one video's and/or one annotator's)."""
    return str(export_exddv(store(), scratch_folder("exports") / "exddv_clicks.csv", video_name=video_name or None,
                            annotator=annotator or None))


# -- layout ----------------------------------------------------------------------------------

def build_app() -> gr.Blocks:
    groups = probe_groups()
    defaults = default_probes(groups)
    with gr.Blocks(title="Audio-visual deepfake probe explorer") as app:
        session = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=end_session)
        gr.Markdown("# Audio-visual deepfake probe explorer\nLinear probes over frozen self-supervised encoders "
                    "(SSR-DFD) on a 25 Hz clock: temporal logit curves, Grad-CAM heatmaps, human annotations.")
        stand_ins = stand_in_probes()
        banner_box = gr.Markdown(banner(stand_ins, defaults), elem_id="stand-in-banner")
        with gr.Tab("Analyse", id="analyse"):
            with gr.Row():
                with gr.Column(scale=1):
                    video = gr.Video(label="Video", sources=["upload"], elem_id="video-input")
                    checkboxes = [gr.CheckboxGroup(choices=choices, label=MODALITY_TITLES.get(modality, modality),
                                                   value=[v for _, v in choices if v in defaults])
                                  for modality, choices in sorted(groups.items())]
                    analyse = gr.Button("Analyse", variant="primary", elem_id="analyse-button")
                    if EXAMPLES:
                        gr.Examples(EXAMPLES, inputs=[video], label="Demo clips (synthetic)")
                with gr.Column(scale=2):
                    summary = gr.Markdown(elem_id="summary")
                    figure = gr.Image(label="Temporal explanation: s_t (score), sigmoid(2·s_t) (proba)",
                                      type="filepath", elem_id="temporal-figure", interactive=False)
                    gallery = gr.Gallery(label="Most suspicious frames with Grad-CAM", elem_id="heatmap-gallery",
                                         columns=3, height="auto")
                    with gr.Row():
                        step = gr.Slider(0, 1, value=0, step=1, label="Step (1/25 s)", elem_id="time-slider")
                    with gr.Row():
                        step_frame = gr.Image(label="Frame at this step", interactive=False, elem_id="step-frame")
                        step_text = gr.Markdown()
                    files = gr.File(label="Downloads: report JSON, figures, heatmaps", file_count="multiple")
        with gr.Tab("Annotate", id="annotate"):
            with gr.Row():
                with gr.Column(scale=1):
                    annotator = gr.Textbox(label="Annotator", placeholder="your name", elem_id="annotator")
                    note = gr.Textbox(label="Note (what looks fake)", lines=2, elem_id="note")
                    difficulty = gr.Radio(["1", "2", "3"], value="1", label="Difficulty (1 easy – 3 hard)")
                    load = gr.Button("Load frames of the video", elem_id="load-frames")
                    scrubber = gr.Slider(0, 1, value=0, step=1, label="Frame (step, 1/25 s)", elem_id="scrubber")
                    with gr.Accordion("Delete, export, import", open=False):
                        delete_id = gr.Number(label="Point id to delete", precision=0)
                        delete = gr.Button("Delete my point")
                        this_video = gr.Checkbox(value=True, label="Export this video only")
                        export = gr.Button("Export ExDDV CSV")
                        exported = gr.File(label="Exported clicks")
                        upload_csv = gr.File(label="ExDDV CSV to import", file_types=[".csv"], type="filepath")
                        skip_bad = gr.Checkbox(value=False, label="Import the good rows, skip the bad ones")
                        import_button = gr.Button("Import")
                        import_text = gr.Markdown()
                with gr.Column(scale=2):
                    frame = gr.Image(label="Click where the frame looks fake", interactive=False,
                                     elem_id="annotation-frame")
                    table = gr.Dataframe(headers=["id", "time (s)", "frame", "x", "y", "annotator", "difficulty",
                                                  "note"], label="Points", interactive=False, elem_id="clicks-table")
                    align_button = gr.Button("Compare with the heatmaps", elem_id="align-button")
                    align_text = gr.Markdown(elem_id="alignment-summary")
                    align_plot = gr.Plot(label="Alignment (MAE vs minimum fakeness score; clicks and maxima)")

        for box in checkboxes:
            box.change(functools.partial(banner, stand_ins), checkboxes, banner_box, api_name=False)
        analyse.click(with_request_and_progress(run_analysis, 2 + len(checkboxes)), [video, session, *checkboxes],
                      [session, summary, figure, gallery, files, step], api_name="analyse_page").then(
            show_step, [step, session], [step_frame, step_text], api_name=False)
        step.release(show_step, [step, session], [step_frame, step_text], api_name=False)
        gallery.select(pick_gallery, [session], [step], api_name=False).then(
            show_step, [step, session], [step_frame, step_text], api_name=False)

        load.click(load_frames, [video, session], [session, scrubber], api_name=False).then(
            annotation_frame, [scrubber, annotator, session], frame, api_name=False).then(
            clicks_table, [annotator, session], table, api_name=False)
        scrubber.release(annotation_frame, [scrubber, annotator, session], frame, api_name=False)
        frame.select(record_click, [scrubber, annotator, note, difficulty, session], [frame, table], api_name=False)
        annotator.blur(clicks_table, [annotator, session], table, api_name=False)
        delete.click(delete_click, [delete_id, annotator, scrubber, session], [frame, table], api_name=False)
        export.click(export_clicks, [annotator, session, this_video], exported, api_name=False)
        import_button.click(import_clicks, [upload_csv, skip_bad], import_text, api_name=False)
        align_button.click(alignment_view, [session, gr.State(None)], [align_text, align_plot], api_name=False)

        api_inputs = [gr.File(visible=False, type="filepath"), gr.Number(visible=False), gr.Number(visible=False),
                      gr.Number(visible=False), gr.Textbox(visible=False), gr.Textbox(visible=False),
                      gr.Number(visible=False)]
        api_output = gr.JSON(visible=False)
        every_probe = [pid for choices in groups.values() for _, pid in choices]
        analyse_inputs = [gr.File(visible=False, type="filepath"),
                          gr.Dropdown(every_probe, value=defaults, multiselect=True, allow_custom_value=True,
                                      visible=False),
                          gr.Number(GALLERY_STEPS, visible=False, precision=0)]
        gr.Button(visible=False).click(api_analyse, analyse_inputs,
                                       [gr.JSON(visible=False), gr.File(visible=False, file_count="multiple")],
                                       api_name="analyse")
        gr.Button(visible=False).click(api_probes, None, gr.JSON(visible=False), api_name="probes")
        gr.Button(visible=False).click(api_annotate, api_inputs, api_output, api_name="annotate")
        export_inputs = [gr.Textbox(visible=False), gr.Textbox(visible=False)]
        gr.Button(visible=False).click(api_export, export_inputs, gr.File(visible=False), api_name="export")

        async def free_closed_session(request: gr.Request) -> None:  # on the event loop, like Gradio's own sweeper
            forget_session(app, request.session_hash)

        app.unload(free_closed_session)
    return app


def launch(app: gr.Blocks | None = None, **kwargs):
    """Queue with a concurrency limit (several people can share one instance) and serve."""
    app = app or build_app()
    with contextlib.suppress(OSError, AttributeError):  # glibc: two heaps for all worker threads instead of
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 2)  # one per thread, so freed memory goes back to the OS
    # the first request would otherwise pay ~4 s of one-time loading; serving starts meanwhile
    threading.Thread(target=warm_up, args=(default_probes(probe_groups()),), daemon=True, name="warm-up").start()
    app.queue(default_concurrency_limit=int(os.environ.get("AVXPLAIN_CONCURRENCY", 2)), max_size=64)
    on_space = bool(os.environ.get("SPACE_ID"))  # Hugging Face Spaces set it; their proxy needs 0.0.0.0
    return app.launch(server_name=os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_space else "127.0.0.1"),
                      max_file_size=f"{int(float(os.environ.get('AVXPLAIN_MAX_UPLOAD_MB', 200)))}mb",
                      show_error=True, state_session_capacity=MAX_SESSIONS, **kwargs)


if __name__ == "__main__":
    launch()
