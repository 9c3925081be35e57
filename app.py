"""Gradio UI: layout and wiring only; all work is done by models/ and explain/.

    python app.py            # serves on http://127.0.0.1:7860 (GRADIO_SERVER_NAME / _PORT to change)

Settings by environment: AVXPLAIN_MAX_DURATION_S (default 120), AVXPLAIN_MAX_UPLOAD_MB
(default 200), AVXPLAIN_MAX_FRAMES (default 36000), AVXPLAIN_MAX_WIDTH / _HEIGHT (default 4096
each), AVXPLAIN_TIME_LIMIT_S (per analysis,
default 300), AVXPLAIN_SESSION_TTL_S (an idle session's analysis is dropped, default 3600;
a closed tab's at once), AVXPLAIN_MAX_SESSIONS (sessions kept in memory, oldest dropped, default 200),
AVXPLAIN_ANNOTATIONS_DB (a SQLAlchemy URL or SQLite file; default the app home's
annotations.sqlite), AVXPLAIN_CONCURRENCY (default 2 analyses at once), AVXPLAIN_WEIGHTS
("ENCODER=PATH,...": AV-HuBERT checkpoints, local copies of hub weights).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import html
import inspect
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import gradio as gr
import numpy as np

from explain.annotations import AnnotationStore, Click, click_step, export_exddv, import_exddv
from models.encoders import (
    checkpoint_encoders,
    checkpoint_warning,
    forget_encoder,
    get_encoder,
    get_spec,
    list_encoders,
)
from models.errors import AnalysisError
from models.media import Clip, MediaLimits, decode, file_sha256, inspect_media
from models.runtimes import estimate_seconds, record_runtime, remaining_seconds
from models.sync import AGREEMENT_SCORER_ID, SYNC_SCORER_ID, SYNC_SCORERS
from models.timing import STEP_RATE, step_centre
from models.zoo import DEFAULT_SCORERS, describe_probe, load_probe, usable_probes

if TYPE_CHECKING:  # the analysis and explanation modules load torch: the callbacks import them once the page is served
    from explain.figures import TimeAxis
    from explain.reports import WrittenReport
    from explain.spatial import Heatmap
    from models.analysis import AnalysisOptions, AnalysisResult

ASSETS = Path(__file__).parent / "assets"
EXAMPLES = [str(p) for folder in ("demo", "examples") for p in sorted((ASSETS / folder).glob("*.mp4"))]
SUBTITLE = ("Drop in a video to see whether its sound or its face looks manipulated, when and where, and how far "
            "to trust the answer.")
STAND_IN_BANNER = ("⚠️ **Demonstration probes:** {names} learned from manipulations made by this project, not from "
                   "real-world deepfakes. Read their verdicts as a demonstration of the tool.")
BASELINE_BANNER = ("**Baselines:** {names} (random-init encoder or untrained head) show what a model that learned "
                   "nothing gives; they are left out of the verdict.")
DEMO_DESCRIPTIONS = {"real.mp4": "Real: an unedited talking face",
                     "audio_fake.mp4": "Audio fake: a stretch of the voice is swapped",
                     "visual_fake.mp4": "Visual fake: the mouth is swapped for a second",
                     "both_fake.mp4": "Both fake: voice and mouth swapped",
                     "astronaut_moving.mp4": "Silent photo in motion: no sound, one face"}
STEP_LABEL = "Time, in steps of 1/25 s (the video at {fps:g} fps)"
TIMELINE_NOTE = ("One timeline everywhere: time in seconds; the analysis **step** is 1/25 s (the papers' clock); "
                 "the **video frame** is the one on screen at the middle of that step. Arrow keys and PageUp/PageDown "
                 "move the slider; the frame follows, and a click is stored on the frame on screen.")
CANCELLED_CARD = ('<div class="verdict verdict-error" id="error-card"><div class="verdict-head">Analysis cancelled'
                  '</div><p>Nothing was kept. Press Analyse to start again.</p></div>')
PROGRESS_EVERY_S = 0.5
MAX_CHIPS = 8
CSS = """
#verdict .verdict { border: 2px solid #999; border-radius: 10px; padding: 10px 14px; }
#verdict .verdict-fake { border-color: #c62828; } #verdict .verdict-real { border-color: #2e7d32; }
#verdict .verdict-uncertain { border-color: #b26a00; } #verdict .verdict-error { border-color: #6a1b9a; }
#verdict .verdict-head { font-size: 1.25em; margin-bottom: 4px; }
#verdict .verdict-label { font-weight: 700; letter-spacing: .04em; }
#verdict .verdict-fake .verdict-label { color: #c62828; } #verdict .verdict-real .verdict-label { color: #2e7d32; }
#verdict .verdict-uncertain .verdict-label { color: #b26a00; }
#verdict .verdict-file { color: #666; font-size: .9em; }
#verdict .chip { border-radius: 8px; padding: 0 6px; font-weight: 600; }
#verdict .chip-fake { background: #fde0e0; } #verdict .chip-real { background: #e0f2e0; }
#verdict .chip-uncertain { background: #fff0d0; }
#progress-line { display: flex; gap: 8px; align-items: center; font-size: .9em; }
#progress-line progress { flex: 1; }
.panel-title h4 { margin: 6px 0 0 0; }
@media (max-width: 700px) {
  #temporal-figure { overflow-x: auto; }
  #temporal-figure img { min-width: 760px; max-width: none; }
}
"""
GALLERY_STEPS = 3
SYNC_LABEL = f"[audio-visual] {SYNC_SCORER_ID} · does the mouth move with the speech? (no training)"
AGREEMENT_LABEL = (f"[audio-visual] {AGREEMENT_SCORER_ID} · do AV-HuBERT's audio and lip streams agree in time? "
                   "(configured checkpoint; not calibrated)")
TEMP_ROOT = Path(tempfile.gettempdir()) / "avxplain-app"
TEMP_TTL_S = 3600
M_ARENA_MAX = -8  # glibc's mallopt parameter number
SESSION_TTL_S = float(os.environ.get("AVXPLAIN_SESSION_TTL_S", 3600))  # an idle session's analysis is dropped then
MAX_SESSIONS = int(os.environ.get("AVXPLAIN_MAX_SESSIONS", 200))  # sessions Gradio keeps; the oldest are dropped
CLOSED_SESSIONS: OrderedDict[str, None] = OrderedDict()  # recently closed sessions: their running analyses stop
CLOSED_SESSIONS_KEPT = 1000
RUNNING: dict[str, "Run"] = {}  # the latest analysis of each tab (session id), for Cancel
# Analyses run on long-lived threads: a new thread per request would leave the per-thread
# buffers of the numeric libraries behind each time (measured: +20-40 MB a burst of 8).
ANALYSIS_WORKERS = ThreadPoolExecutor(2 * int(os.environ.get("AVXPLAIN_CONCURRENCY", 2)),
                                      thread_name_prefix="analysis")
MARKER_COLOUR = (255, 40, 200)  # the annotator's own points
OTHERS_COLOUR = (40, 200, 255)  # other annotators' points, when shown
LOG = logging.getLogger("avxplain.app")
WARM_UP_DONE = "ready to analyse: torch, the probes' encoders and the face graphs loaded in"


def settings_limits() -> MediaLimits:
    return MediaLimits(max_duration_s=float(os.environ.get("AVXPLAIN_MAX_DURATION_S", 120)),
                       max_file_bytes=int(float(os.environ.get("AVXPLAIN_MAX_UPLOAD_MB", 200)) * 1024**2),
                       max_frames=int(os.environ.get("AVXPLAIN_MAX_FRAMES", 36_000)),
                       max_width=int(os.environ.get("AVXPLAIN_MAX_WIDTH", 4096)),
                       max_height=int(os.environ.get("AVXPLAIN_MAX_HEIGHT", 4096)))


def settings_options(uploaded: dict[str, str] | None = None) -> AnalysisOptions:
    """The server's settings, with checkpoints a session uploaded (`uploaded`, encoder id →
    path) beside the operator's."""
    from models.analysis import AnalysisOptions  # lazy: needs torch
    from models.settings import Settings  # lazy: needs torch

    weights = {**configured_weights(), **(uploaded or {})}
    return AnalysisOptions(settings=Settings(limits=settings_limits(), weights=weights),
                           time_limit_s=float(os.environ.get("AVXPLAIN_TIME_LIMIT_S", 300)))


def configured_weights() -> dict[str, str]:
    """Encoder weights the server's operator configured: AVXPLAIN_WEIGHTS="ENCODER=PATH,..."
    (an AV-HuBERT or BRAVEn checkpoint, a local copy of hub weights), as the CLI's --weights."""
    pairs = [item.partition("=") for item in os.environ.get("AVXPLAIN_WEIGHTS", "").split(",") if item.strip()]
    return {name.strip(): path.strip() for name, _, path in pairs if name.strip() and path.strip()}


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
class Run:
    """One analysis request of a session: Cancel (or a new video) sets `cancelled`, and the
    analysis stops at its next stage."""

    video: str | None
    cancelled: threading.Event = field(default_factory=threading.Event)
    stage: str = "starting"
    fraction: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    stages: int = 3  # how many stages the run has (known once they are planned)


@dataclass
class Shown:
    """What the results area shows, with the request it answers (a repeat is served from it)."""

    key: tuple
    outputs: tuple


@dataclass
class Session:
    """What one browser session holds between events."""

    video: str | None = None
    result: AnalysisResult | None = None
    clip: Clip | None = None  # for annotation when no analysis ran yet
    sha256: str | None = None
    reports: list[str] = field(default_factory=list)
    gallery: list[tuple[int, str, str]] = field(default_factory=list)  # (step, probe id, image) per gallery item
    run: Run | None = None
    shown: Shown | None = None
    annotation_step: int = 0  # the frame on screen in the Annotate tab: a click is stored against it
    curves: np.ndarray | None = None  # the temporal figure (RGB) and where its time axis lies, for a cursor
    time_axis: TimeAxis | None = None
    weights: dict[str, str] = field(default_factory=dict)  # encoder id → checkpoint this session uploaded

    def frames_clip(self) -> Clip:
        if self.result is not None and self.result.clip is not None:
            return self.result.clip
        if self.clip is None:
            raise user_error("Load a video first (Analyse tab, or Load frames here).")
        return self.clip

    def start_run(self, video: str | None) -> Run:
        """A new request: the one still running (if any) is cancelled."""
        if self.run is not None:
            self.run.cancelled.set()
        self.run = Run(video)
        return self.run


def user_error(error: AnalysisError | str) -> gr.Error:
    """A pop-up for something the user can fix, logged in one line without a traceback."""
    LOG.info("refused: %s", error)
    return gr.Error(html.escape(str(error)), print_exception=False)


# -- probes ----------------------------------------------------------------------------------

def probe_groups() -> dict[str, list[tuple[str, str]]]:
    """Usable probes in the picker's three groups: `bundled` (offline, with the sync scorer),
    `trained` (downloaded released probes and the user's own), `baselines` (random-init
    encoders or untrained heads: never pre-selected, never counted in the verdict)."""
    groups: dict[str, list[tuple[str, str]]] = {"bundled": [(SYNC_LABEL, SYNC_SCORER_ID)], "trained": [],
                                                "baselines": []}
    for entry in usable_probes():
        group = "baselines" if is_baseline(entry) else "bundled" if entry.source == "bundled" else "trained"
        label = describe_probe(entry)
        groups[group].append((f"Baseline: {label}" if group == "baselines" else label, entry.id))
    groups["bundled"].append(groups["bundled"].pop(0))  # the sync scorer after the probes
    if agreement_available():
        groups["trained"].append((AGREEMENT_LABEL, AGREEMENT_SCORER_ID))
    return groups


def agreement_available() -> bool:
    """The AV-HuBERT agreement scorer needs a checkpoint the operator configured."""
    return any(get_spec(encoder_id).family == "avhubert" for encoder_id in configured_weights()
               if encoder_id in list_encoders())


def is_baseline(entry) -> bool:
    return entry.source == "random" or get_spec(entry.encoder).source == "random"


def default_probes(groups: dict[str, list[tuple[str, str]]]) -> list[str]:
    """The probes ticked when the app opens: the bundled demo probes and the sync scorer, else
    the first usable trained one (never a baseline)."""
    available = {pid for name in ("bundled", "trained") for _, pid in groups[name]}
    return [p for p in DEFAULT_SCORERS if p in available] or sorted(available - {SYNC_SCORER_ID})[:1]


def stand_in_probes() -> dict[str, bool]:
    """The usable probes that are no real-world detectors, each with whether it is a baseline
    (read once, from the zoo's cards)."""
    return {entry.id: is_baseline(entry) for entry in usable_probes() if entry.stand_in}


def banner(stand_ins: dict[str, bool], *selected: list[str]) -> str:
    """What the ticked probes are not: demonstration probes trained on this project's own
    manipulations, and baselines."""
    chosen = [pid for group in selected for pid in (group or []) if pid in stand_ins]
    demos, baselines = [p for p in chosen if not stand_ins[p]], [p for p in chosen if stand_ins[p]]
    return "\n\n".join(([STAND_IN_BANNER.format(names=", ".join(demos))] if demos else [])
                       + ([BASELINE_BANNER.format(names=", ".join(baselines))] if baselines else []))


# -- analyse ---------------------------------------------------------------------------------

def analyse_into_folder(video: str | None, probe_ids: list[str], report, previous: AnalysisResult | None = None,
                        spatial_steps: int = GALLERY_STEPS, out: Path | None = None, curves: bool = True,
                        measures: bool = True, uploaded: dict[str, str] | None = None,
                        ) -> tuple[Path, AnalysisResult, WrittenReport]:
    """Analyse `video` and write its report into `out` (a fresh scratch folder by default; the
    page and the API both call this). A failed or cancelled run leaves nothing on disk."""
    if not video:
        raise AnalysisError("no video yet.", hint="Upload a video (MP4, MOV, MKV, WebM or AVI) first, or pick a demo "
                                                  "clip.")
    if not probe_ids:
        raise AnalysisError("no probe chosen.", hint="Tick at least one probe.")
    from explain.reports import write_report  # lazy: needs torch
    from models.analysis import analyze  # lazy: needs torch

    folder = out or scratch_folder("reports")
    try:
        result = analyze(video, probe_ids, settings_options(uploaded), progress=report, previous=previous)
        report("explanations" if spatial_steps else "curves", 0.0)
        written = write_report(result, folder, spatial_steps=spatial_steps, curves=curves, measures=measures)
    except BaseException:  # failed or cancelled: nothing of this request stays on disk
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        return_freed_memory()
    return folder, result, written


@dataclass
class Stage:
    """One stage of an analysis: which probes, how many heatmap steps, whether to draw the
    curves, and what is still to come after it (empty for the last)."""

    probes: list[str]
    spatial_steps: int
    curves: bool
    to_come: str


def plan_stages(probe_ids: list[str]) -> list[Stage]:
    """The audio probes' curves and verdict first (when other probes follow), then every
    probe's, then the heatmaps (when a face probe ran)."""
    modalities = {p: probe_modality(p) for p in probe_ids}
    audio = [p for p, m in modalities.items() if m == "audio"]
    with_faces = "face" in modalities.values()
    stages = []
    if audio and len(audio) < len([p for p in probe_ids if p not in SYNC_SCORERS]):
        stages.append(Stage(audio, 0, True, "the other probes" + (", then heatmaps" if with_faces else "")))
    stages.append(Stage(probe_ids, 0, True, "heatmaps" if with_faces else ""))
    if with_faces:
        stages.append(Stage(probe_ids, GALLERY_STEPS, False, ""))
    return stages


def analysis_stages(video: str, stages: list[Stage], session: Session, report) -> Iterator[tuple[str, tuple]]:
    """Run the planned stages and yield (what is still to come, the results area) after each.
    Later stages reuse the earlier ones' frames and features, and write into one folder."""
    previous = session.result if session.video == video else None
    out = scratch_folder("reports")
    _replace_reports(session, str(out))
    files: dict[str, Path] = {}
    for stage in stages:
        _, result, written = analyse_into_folder(video, stage.probes, report, previous, stage.spatial_steps, out,
                                                 stage.curves, measures=not stage.to_come, uploaded=session.weights)
        files.update(written.paths)
        previous = result
        session.video, session.result, session.sha256 = video, result, result.media.sha256
        session.gallery = [(h.step, h.probe_id, str(path)) for h, path in written.heatmaps]
        if written.time_axis is not None:
            session.curves = cv2.imread(str(written.paths["temporal_png"]))[..., ::-1]
            session.time_axis = written.time_axis
        yield stage.to_come, results_view(result, written, files, session.gallery, stage.to_come)


def probe_modality(probe_id: str) -> str:
    return "audio-visual" if probe_id in SYNC_SCORERS else get_spec(load_probe(probe_id).encoder_id).modality


def results_view(result: AnalysisResult, written: WrittenReport, files: dict[str, Path],
                 gallery: list[tuple[int, str, str]], to_come: str) -> tuple:
    """The results area's components in order: verdict card, segment chips, temporal figure,
    gallery, downloads, time slider, raw-score details."""
    verdict = written.report["verdict"]
    chips = segment_chips(verdict)
    heatmaps = {(h.step, h.probe_id): h for h, _ in written.heatmaps}
    captions = [(image, heatmap_caption(result, heatmaps[(step, pid)]) if (step, pid) in heatmaps else pid)
                for step, pid, image in gallery]
    slider = gr.Slider(minimum=0, maximum=result.media.n_steps - 1, value=_first_peak(result), step=1,
                       interactive=True, label=STEP_LABEL.format(fps=result.media.fps))
    return (verdict_card(verdict, result.media, to_come), gr.Radio(choices=chips, value=None, visible=bool(chips)),
            str(files["temporal_png"]), captions, [str(p) for p in files.values()], slider,
            details_markdown(result))


def empty_view(message: str = "") -> tuple:
    """The results area with nothing in it (a new video, or an error: `message` says which)."""
    return (message, gr.Radio(choices=[], value=None, visible=False), None, [], [],
            gr.Slider(minimum=0, maximum=1, value=0, step=1, label="Time"), "")


def error_card(video: str | None, error: BaseException) -> str:
    """A message that stays where the results were: which file, what is wrong, what to do."""
    name = html.escape(Path(video).name) if video else "no video"
    if isinstance(error, AnalysisError):
        what, todo = html.escape(error.problem), html.escape(error.hint or "Check the file and try again.")
        LOG.info("refused %s: %s", name, error.problem)  # a user error: one line, no traceback
    else:
        what = "an internal error stopped the analysis (it is in the server log)."
        todo = "Try again; if it happens again, report it with the log."
        LOG.exception("analysis of %s failed", name)
    return (f'<div class="verdict verdict-error" id="error-card"><div class="verdict-head">Could not analyse '
            f'<b>{name}</b></div><p><b>What is wrong:</b> {what}</p><p><b>What to do:</b> {todo}</p></div>')


def run_analysis(video: str | None, session: Session | None, *groups, request: gr.Request | None = None):
    """Analyse one video with the chosen probes, filling the results area stage by stage and
    the progress line in between. The same video with the same probes again is served from
    what is shown; Cancel, a new video or a closed tab stop the run at its next stage."""
    session = session or Session()
    session_hash = getattr(request, "session_hash", None)
    CLOSED_SESSIONS.pop(session_hash, None)  # a tab that reconnected (same session) asks again
    probe_ids = [pid for group in groups for pid in (group or [])]
    key = (file_identity(video), tuple(probe_ids), tuple(sorted(session.weights.items())))
    if session.shown is not None and session.shown.key == key and session.result is not None:
        session.video = video  # the same content, perhaps uploaded again
        yield session, *session.shown.outputs, progress_html(None, "served from this session's last analysis")
        return
    run = session.start_run(video)
    if session_hash is not None:
        previous_run = RUNNING.get(session_hash)
        if previous_run is not None:
            previous_run.cancelled.set()  # one analysis per tab: a new press replaces the running one
        RUNNING[session_hash] = run

    def report(stage: str, fraction: float) -> None:
        if session_hash in CLOSED_SESSIONS:
            raise AnalysisError("the tab that asked for this analysis was closed; stopped.", path=video)
        if run.cancelled.is_set():
            raise AnalysisError("cancelled.", path=video)
        run.stage, run.fraction = stage, fraction

    clip_seconds = duration_of(video)
    estimate = estimate_seconds(probe_ids, clip_seconds) if clip_seconds else None
    updates: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            stages = plan_stages(probe_ids)
            run.stages = len(stages)
            for item in analysis_stages(video, stages, session, report):
                updates.put(item)
        except BaseException as error:  # handed to the page, which shows it
            updates.put(error)
        updates.put(None)

    session.shown = None
    yield session, *empty_view(), progress_html(run, "starting", estimate)
    ANALYSIS_WORKERS.submit(work)
    stages_done = 0
    while True:
        try:
            item = updates.get(timeout=PROGRESS_EVERY_S)
        except queue.Empty:
            if run.cancelled.is_set():
                yield session, *empty_view(CANCELLED_CARD), progress_html(None, "cancelled; the app is ready")
                return
            yield session, *(gr.skip(),) * len(empty_view()), progress_html(run, run.stage, estimate, stages_done)
            continue
        if item is None:
            return
        if isinstance(item, BaseException):
            if run.cancelled.is_set():
                yield session, *empty_view(CANCELLED_CARD), progress_html(None, "cancelled; the app is ready")
            else:
                session.result = session.clip = session.curves = None
                session.gallery = []
                yield session, *empty_view(error_card(video, item)), progress_html(None, "stopped")
            return
        to_come, outputs = item
        stages_done += 1
        if not to_come:
            record_runtime(probe_ids, clip_seconds, time.perf_counter() - run.started)
            session.shown = Shown(key, outputs)
        yield session, *outputs, progress_html(run if to_come else None, f"next: {to_come}" if to_come else
                                               f"done in {time.perf_counter() - run.started:.1f} s", estimate,
                                               stages_done)


def cancel_analysis(session: Session | None, request: gr.Request | None = None) -> str:
    """Stop the tab's running analysis at its next stage (within a second or two). The run is
    found by the tab's session id: the page's State may still hold an object an earlier event
    (a new video) replaced."""
    run = RUNNING.get(getattr(request, "session_hash", None)) or (session.run if session is not None else None)
    if run is None or run.cancelled.is_set():
        return progress_html(None, "nothing is running")
    run.cancelled.set()
    return progress_html(None, "cancelling…")


def new_video(video: str | None, session: Session | None, request: gr.Request | None = None):
    """Another video was loaded (or the video removed): nothing of the previous one stays on
    either tab, and an analysis of another video stops (one of this video, started before
    this event arrived, goes on)."""
    session = session or Session()
    for run in (session.run, RUNNING.get(getattr(request, "session_hash", None))):
        if run is not None and run.video != video:
            run.cancelled.set()
    _replace_reports(session, None)
    session.video = session.result = session.clip = session.sha256 = session.shown = None
    session.curves = session.time_axis = None
    session.gallery, session.annotation_step = [], 0
    return (session, *empty_view(), progress_html(None, ""), None, "", None, "", [], "", None,
            gr.Slider(minimum=0, maximum=1, value=0, step=1, label="Time"))


def file_identity(video: str | None) -> str | None:
    """The content hash: an upload of the same file again (a new copy on the server) is the same video."""
    with contextlib.suppress(OSError, TypeError, AnalysisError):
        return file_sha256(video)
    return None


def duration_of(video: str | None) -> float | None:
    with contextlib.suppress(AnalysisError, OSError, TypeError, ValueError):
        return inspect_media(video, settings_limits()).packets_end_s
    return None


def progress_html(run: Run | None, stage: str, estimate: float | None = None, stages_done: int = 0) -> str:
    """The one progress line: stage, a bar, time spent and, from this machine's measured rates,
    time left (corrected as the run goes)."""
    if run is None:
        return f'<div id="progress-line" class="progress-idle">{html.escape(stage)}</div>' if stage else ""
    elapsed = time.perf_counter() - run.started
    fraction = min(0.99, (stages_done + min(max(run.fraction, 0.0), 1.0)) / max(1, run.stages))
    left = remaining_seconds(estimate, elapsed, fraction)
    timing = f"{elapsed:.0f} s" + (f", about {left:.0f} s left" if left is not None else
                                   " (first run of these probes here: no estimate yet)")
    return (f'<div id="progress-line" class="progress-running"><span>{html.escape(stage)}</span>'
            f'<progress max="1" value="{fraction:.2f}"></progress><span>{timing}</span></div>')


def _replace_reports(session: Session, folder: str | None) -> None:
    """Keep one report folder per session: the previous one is removed."""
    for old in session.reports:
        shutil.rmtree(old, ignore_errors=True)
    session.reports = [folder] if folder else []


def end_session(session: Session | None) -> None:
    """When a session expires or closes: stop its analysis, remove its report files and free its memory."""
    if session is not None:
        if session.run is not None:
            session.run.cancelled.set()
        _replace_reports(session, None)
        session.result = session.clip = session.shown = session.curves = None
        for encoder_id, path in session.weights.items():
            forget_encoder(encoder_id, path)
    return_freed_memory()


def use_checkpoint(encoder_id: str | None, path: str | None, session: Session | None) -> tuple[Session, str]:
    """Load an uploaded AV-HuBERT / BRAVEn checkpoint for `encoder_id` and use it for this
    session's analyses: read safely and checked key by key now, so a wrong file is refused
    here, with the reason, rather than at the next analysis."""
    session = session or Session()
    if not encoder_id or not path:
        return session, "Choose the encoder, then upload its checkpoint file."
    try:
        get_encoder(encoder_id, path, settings_options().settings.precision)
    except AnalysisError as error:
        return session, f"**Not used:** {html.escape(str(error).replace(path, Path(path).name))}"
    replaced = session.weights.get(encoder_id)
    if replaced and replaced != path:
        forget_encoder(encoder_id, replaced)
    session.weights[encoder_id] = path
    session.shown = None  # the same clip and probes now give other features
    warning = checkpoint_warning(encoder_id, path)
    return session, (f"**{encoder_id}** runs from {html.escape(Path(path).name)} in this session: the probes on it "
                     f"(under Trained probes) now compute their features from it." + (f"\n\n⚠ {html.escape(warning)}."
                                                                           if warning else ""))


def with_request(handler, n_inputs: int):
    """`handler(*inputs, request=)` as a function of exactly `n_inputs` inputs plus a request:
    Gradio injects it only into a named positional parameter, which a handler of a variable
    number of inputs (one per probe group) lacks."""
    def wired(*args):
        *inputs, request = args
        return (yield from handler(*inputs, request=request))

    Parameter = inspect.Parameter
    wired.__signature__ = inspect.Signature(
        [Parameter(f"input_{index}", Parameter.POSITIONAL_OR_KEYWORD) for index in range(n_inputs)]
        + [Parameter("request", Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request)])
    wired.__annotations__ = {"request": gr.Request}
    wired.__name__, wired.__doc__ = handler.__name__, handler.__doc__
    return wired


def forget_session(app: gr.Blocks, session_hash: str) -> None:
    """A tab or client disconnected: free its analysis now and drop Gradio's copy of the
    session. (Gradio keeps a closed session's state for an hour, whatever its time to live,
    so without this every finished client would hold its frames that long.)"""
    CLOSED_SESSIONS[session_hash] = None
    RUNNING.pop(session_hash, None)
    while len(CLOSED_SESSIONS) > CLOSED_SESSIONS_KEPT:
        CLOSED_SESSIONS.popitem(last=False)
    holder = app.state_holder
    holder.delete_state(session_hash)  # runs end_session on the session's State
    with holder.lock:
        holder.session_data.pop(session_hash, None)
        holder.time_last_used.pop(session_hash, None)


def limit_heap_arenas() -> None:
    """glibc: two heaps for all worker threads instead of one per thread (each analysis runs
    on its own thread), so memory freed by finished requests goes back to the OS."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 2)


def return_freed_memory() -> None:
    """Hand memory freed by finished requests back to the OS (glibc keeps freed heap pages
    otherwise, so a burst of analyses would leave the process at its peak). Reference
    counting has already freed a session's objects (measured: a full `gc.collect` frees
    nothing more and would hold the GIL for ~0.5 s)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _first_peak(result: AnalysisResult) -> int:
    from explain.temporal import top_peaks  # lazy: needs torch

    first = next(iter(result.probes.values()))
    return int(top_peaks(first.scores.logits, 1)[0])


def heatmap_caption(result: AnalysisResult, heatmap: Heatmap) -> str:
    """Which probe's map this is, where in time, and that probe's score there."""
    step = heatmap.step
    probability = result.probes[heatmap.probe_id].scores.probabilities[step]
    return f"{heatmap.probe_id} · {timeline_label(step, result.media.fps)} · p={probability:.2f}"


def timeline_label(step: int, fps: float) -> str:
    """One numbering everywhere: time, the analysis step (1/25 s) and the video frame shown."""
    return f"{step / STEP_RATE:.2f} s (step {step}, video frame {frame_of_step(step, fps)})"


def frame_of_step(step: int, fps: float) -> int:
    """The video frame shown at a step: the one at the step's centre."""
    return int(step_centre(step) * fps) if fps > 0 else step


def segment_chips(verdict: dict) -> list[tuple[str, str]]:
    """One chip per found segment: its label, and its start time (the value a click seeks to)."""
    return [(f"{s['start_s']:.2f}–{s['end_s']:.2f} s · {s['modality']} · {s['score']:.2f}", f"{s['start_s']:.2f}")
            for s in verdict["segments"][:MAX_CHIPS]]


def verdict_card(verdict: dict, media, to_come: str = "") -> str:
    """The verdict first: label, calibrated P(fake) and threshold, each modality, the A/V
    offset and every caveat, for the file (name and hash) it belongs to."""
    from explain.verdict import headline, modality_detail  # lazy: needs torch

    label = verdict["label"]
    rows = "".join(f"<li><b>{html.escape(name)}</b>: <span class='chip chip-{html.escape(m['label'])}'>"
                   f"{html.escape(m['label'])}</span> {html.escape(modality_detail(m))}</li>"
                   for name, m in verdict["modalities"].items())
    offset = "" if verdict.get("av_offset_s") is None else \
        f"<p>A/V offset {verdict['av_offset_s']:+.2f} s (positive: the video lags the sound)</p>"
    caveats = "".join(f"<li>{html.escape(c)}</li>" for c in verdict["caveats"])
    pending = f"<p class='pending'>Still running: {html.escape(to_come)}…</p>" if to_come else ""
    return (f'<div class="verdict verdict-{html.escape(label)}" id="verdict-card">'
            f'<div class="verdict-head"><span class="verdict-label">{html.escape(label.upper())}</span> '
            f'{html.escape(headline(verdict))}</div>'
            f'<div class="verdict-file">{html.escape(media.name)} · {media.duration_s:.2f} s · {media.width}×'
            f'{media.height} · sha256 {html.escape(media.sha256[:12])}…</div><ul>{rows}</ul>{offset}'
            + (f'<details open><summary>Caveats ({len(verdict["caveats"])})</summary><ul class="caveats">{caveats}'
               f'</ul></details>' if caveats else "") + f"{pending}</div>")


def details_markdown(result: AnalysisResult) -> str:
    """The paper's raw scores (not calibrated: they grow with clip length), skipped probes and warnings."""
    lines = [f"{result.media.n_steps} steps at {STEP_RATE} Hz; video at {result.media.fps:g} fps\n",
             "| probe | encoder | P(fake) (raw) | video score S |\n|---|---|---|---|"]
    for probe in result.probes.values():
        lines.append(f"| {probe.probe_id} | {probe.encoder_id} | {probe.scores.p_fake:.3f} | "
                     f"{probe.scores.video_score:+.3f} |")
    if result.fusion:
        lines.append(f"| fusion (mean probability) | | {result.fusion.p_fake:.3f} | |")
    lines += [f"\n- skipped {pid}: {html.escape(why)}" for pid, why in result.skipped.items()]
    lines += [f"\n- warning: {html.escape(w)}" for w in result.warnings]
    return "\n".join(lines)


def show_step(step: float, session: Session | None, probe_id: str | None = None):
    """The curves with a cursor at one step, the frame there with a face probe's heatmap (the
    given one, else the first) and every probe's score there."""
    from explain.spatial import explain_spatial, overlay, spatial_probes  # lazy: needs torch

    if session is None or session.result is None:
        return gr.skip(), None, ""
    result = session.result
    step = int(min(max(step, 0), result.media.n_steps - 1))
    frame = result.clip.frames[step]
    lines = [f"**{timeline_label(step, result.media.fps)}**"]
    for pid, probe in result.probes.items():
        lines.append(f"- {pid}: s = {probe.scores.logits[step]:+.3f}, p = {probe.scores.probabilities[step]:.3f}")
    face_probes = spatial_probes(result)
    probe_id = probe_id if probe_id in face_probes else (face_probes[0] if face_probes else None)
    if probe_id:
        try:
            heatmap = explain_spatial(result, probe_id, steps=[step], sanity=False).heatmaps[0]
        except AnalysisError as error:
            raise user_error(error) from None
        frame = overlay(frame, heatmap.frame_map)
        lines.append(f"- heatmap of {probe_id}: maximum at ({heatmap.peak[0]:.3f}, {heatmap.peak[1]:.3f}), "
                     f"hot-spot centre at ({heatmap.hotspot[0]:.3f}, {heatmap.hotspot[1]:.3f})")
    return curves_at(session, step), with_mouths(frame, result, step), "\n".join(lines)


def with_mouths(frame: np.ndarray, result: AnalysisResult, step: int) -> np.ndarray:
    """The step's frame with the strip of mouth regions around it below, when faces were tracked."""
    from explain.figures import mouth_strip  # lazy: needs torch

    if result.face_track is None:
        return frame
    return np.vstack([frame, mouth_strip(result.clip.frames, result.face_track, step, frame.shape[1])])


def curves_at(session: Session, step: int):
    """The temporal figure with a cursor at the start of `step` (unchanged without one)."""
    if session.curves is None or session.time_axis is None:
        return gr.skip()
    return session.time_axis.draw_cursor(session.curves, step / STEP_RATE)


def pick_gallery(session: Session | None, evt: gr.SelectData):
    """A gallery click shows the very map that item was made for (its probe, its step) and
    moves the time slider there."""
    if session is None or session.result is None or evt.index is None \
            or not 0 <= int(evt.index) < len(session.gallery):
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    step, probe_id, image = session.gallery[int(evt.index)]
    text = f"**{timeline_label(step, session.result.media.fps)}** · map of **{probe_id}** (as in the gallery)"
    picture = cv2.cvtColor(cv2.imread(image), cv2.COLOR_BGR2RGB)
    return gr.Slider(value=step), curves_at(session, step), with_mouths(picture, session.result, step), text


def seek_segment(start: str | None, session: Session | None):
    """A segment chip: the time slider and the step view go to the segment's start."""
    if not start or session is None or session.result is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    step = int(round(float(start) * STEP_RATE))
    return (gr.Slider(value=step), *show_step(step, session))


SEEK_PLAYER_JS = """(start) => { const player = document.querySelector('#video-input video');
  if (player && start) { player.currentTime = parseFloat(start); } return start; }"""


# -- annotate --------------------------------------------------------------------------------

def load_frames(video: str | None, session: Session | None):
    """Decode the video for annotation (reusing the analysis when it is the same video)."""
    session = session or Session()
    if not video:
        raise user_error("Upload or choose a video in the Analyse tab first.")
    if session.result is None or session.video != video:
        try:
            session.clip = decode(video, settings_limits())
        except AnalysisError as error:
            raise user_error(error) from None
        session.result, session.video, session.sha256 = None, video, session.clip.info.sha256
    clip = session.frames_clip()
    slider = gr.Slider(minimum=0, maximum=clip.n_steps - 1, value=0, step=1, interactive=True,
                       label=STEP_LABEL.format(fps=clip.info.fps))
    return session, slider


def video_clicks(session: Session, annotator: str | None) -> list[Click]:
    """This video's clicks (its own and imported ones naming it), one annotator's or everyone's."""
    return store().list_for_video(session.sha256, session.frames_clip().info.name, annotator=annotator)


def annotation_frame(step: float, annotator: str, show_others: bool, session: Session | None):
    """The frame at `step` with the clicks at that step drawn (the annotator's own; everyone's
    when asked, others' in another colour), and its place on the timeline. The step shown is
    remembered: a click is stored against it."""
    if session is None or session.video is None:
        return None, ""
    clip = session.frames_clip()
    step = int(min(max(step, 0), clip.n_steps - 1))
    session.annotation_step = step
    frame = clip.frames[step].copy()
    height, width = frame.shape[:2]
    mine = (annotator or "").strip()
    for click in video_clicks(session, None if show_others else mine):
        if click_step(click, clip.info.fps, clip.n_steps) == step:
            colour = MARKER_COLOUR if click.annotator == mine else OTHERS_COLOUR
            centre = (int(round(click.x * width)), int(round(click.y * height)))
            cv2.circle(frame, centre, 9, colour, 2)
            cv2.drawMarker(frame, centre, colour, cv2.MARKER_CROSS, 8, 1)
    return frame, f"Frame on screen: **{timeline_label(step, clip.info.fps)}**"


def record_click(annotator: str, note: str, difficulty: str, show_others: bool, session: Session | None,
                 evt: gr.SelectData):
    """A click on the frame stores a point (normalised coordinates) on the frame on screen."""
    if session is None or session.video is None:
        raise user_error("Load the video's frames first.")
    clip = session.frames_clip()
    height, width = clip.frames.shape[1:3]
    x, y = evt.index
    step = session.annotation_step
    try:
        save_click(clip.info.name, session.sha256, clip.info.fps, step, x / width, y / height, annotator, note,
                   int(difficulty))
    except AnalysisError as error:
        raise user_error(error) from None
    return (*annotation_frame(step, annotator, show_others, session), clicks_table(annotator, show_others, session))


def save_click(video_name: str, sha256: str, fps: float, step: int, x: float, y: float, annotator: str, note: str,
               difficulty: int) -> Click:
    """Store one click at `step` of a video (normalised x, y) with the frame shown at that step."""
    click = Click(video_name=video_name, frame_index=frame_of_step(step, fps), x=float(x), y=float(y),
                  annotator=(annotator or "").strip(), video_sha256=sha256, time=step / STEP_RATE, note=note or "",
                  difficulty=difficulty)
    click.id = store().add(click)
    return click


def clicks_table(annotator: str, show_others: bool, session: Session | None) -> list[list]:
    """The annotator's points on this video (everyone's when asked), with time, step and frame."""
    if session is None or session.sha256 is None:
        return []
    clip = session.frames_clip()
    return [[c.id, round(c.time if c.time is not None else c.frame_index / clip.info.fps, 2),
             click_step(c, clip.info.fps, clip.n_steps), c.frame_index, round(c.x, 4), round(c.y, 4), c.annotator,
             c.difficulty, c.note]
            for c in video_clicks(session, None if show_others else (annotator or "").strip())]


def refresh_annotations(annotator: str, show_others: bool, session: Session | None):
    return (*annotation_frame(session.annotation_step if session else 0, annotator, show_others, session),
            clicks_table(annotator, show_others, session))


def delete_click(click_id: float | None, annotator: str, show_others: bool, session: Session | None):
    if click_id is None:
        raise user_error("Enter the id of one of your points to delete it.")
    if not store().delete(int(click_id), annotator=(annotator or "").strip()):
        raise user_error(f"No point {int(click_id)} of annotator {annotator or ''} to delete.")
    return refresh_annotations(annotator, show_others, session)


def export_clicks(annotator: str, session: Session | None, only_this_video: bool):
    name = session.frames_clip().info.name if session and only_this_video and session.video else None
    return str(export_exddv(store(), scratch_folder("exports") / "exddv_clicks.csv", video_name=name,
                            annotator=(annotator or None)))


def import_clicks(file: str | None, skip_bad: bool, annotator: str, show_others: bool, session: Session | None):
    """Import an ExDDV CSV; the points of the video on screen are listed and drawn at once."""
    if not file:
        raise user_error("Choose an ExDDV CSV file to import.")
    try:
        report = import_exddv(store(), file, skip_bad=skip_bad)
    except AnalysisError as error:
        raise user_error(error) from None
    skipped = "".join(f"\n- skipped {html.escape(p)}" for p in report.bad_rows)
    text = f"Imported {report.imported_clicks} clicks from {report.imported_rows} rows.{skipped}"
    if session is None or session.sha256 is None:
        return text + "\n\nLoad their video to see them.", gr.skip(), gr.skip(), gr.skip()
    return text, *refresh_annotations(annotator, show_others, session)


def alignment_view(session: Session | None, probe_id: str | None):
    """MAE between this video's clicks and the heatmap maxima, with its baselines."""
    from explain.alignment import align_clicks, alignment_figure, summarise  # lazy: needs torch
    from explain.spatial import spatial_probes  # lazy: needs torch

    if session is None or session.result is None:
        raise user_error("Analyse the video with a face probe first (Analyse tab).")
    face_probes = spatial_probes(session.result)
    probe_id = probe_id if probe_id in face_probes else (face_probes[0] if face_probes else None)
    if probe_id is None:
        raise user_error("None of the analysed probes works on face crops; choose one in the Analyse tab.")
    clicks = video_clicks(session, None)
    if not clicks:
        raise user_error("No points for this video yet: click on the frame to add some.")
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
    try:
        _, _, written = analyse_into_folder(video, list(probes or DEFAULT_SCORERS),
                                            lambda stage, fraction: progress(fraction, desc=stage),
                                            spatial_steps=max(0, int(spatial_steps)))
    except AnalysisError as error:
        raise user_error(error) from None
    return written.report, [str(p) for p in written.paths.values()]


def api_probes() -> list[dict]:
    """Every probe id this server can run now, with its modality, encoder, whether it is a
    stand-in or baseline, and its card."""
    scorers = [(SYNC_SCORER_ID, SYNC_LABEL)]
    if agreement_available():
        scorers.append((AGREEMENT_SCORER_ID, AGREEMENT_LABEL))
    entries = [{"id": scorer, "modality": "audio-visual", "encoder": None, "source": "builtin",
                "stand_in": False, "baseline": False, "card": {"description": label}} for scorer, label in scorers]
    return entries + [{"id": e.id, "modality": get_spec(e.encoder).modality, "encoder": e.encoder, "source": e.source,
                       "stand_in": e.stand_in, "baseline": is_baseline(e),
                       "card": {k: v for k, v in e.card.items() if k != "path"}}
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

def example_labels() -> list[str]:
    return [DEMO_DESCRIPTIONS.get(Path(path).name, Path(path).stem.replace("_", " ")) for path in EXAMPLES]


def build_app() -> gr.Blocks:
    groups = probe_groups()
    defaults = default_probes(groups)
    with gr.Blocks(title="Audio-visual deepfake explorer") as app:
        session = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=end_session)
        gr.Markdown("# Audio-visual deepfake explorer\n" + SUBTITLE, elem_id="title")
        stand_ins = stand_in_probes()
        banner_box = gr.Markdown(banner(stand_ins, defaults), elem_id="stand-in-banner")
        with gr.Tab("Analyse", id="analyse"):
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=300):
                    video = gr.Video(label="Video", sources=["upload"], elem_id="video-input", height=230)
                    with gr.Row():
                        analyse = gr.Button("Analyse", variant="primary", elem_id="analyse-button", scale=2)
                        cancel = gr.Button("Cancel", variant="stop", elem_id="cancel-button", scale=1)
                    status = gr.HTML(elem_id="progress")
                    checkboxes = [gr.CheckboxGroup(choices=groups["bundled"], value=defaults, elem_id="bundled-probes",
                                                   label="Probes (bundled, run offline)")]
                    if groups["trained"]:
                        checkboxes.append(gr.CheckboxGroup(choices=groups["trained"], value=[], elem_id="trained-probes",
                                                           label="Trained probes (downloaded or yours)"))
                    with gr.Accordion("Baselines: random-init encoders or untrained heads, never counted in the "
                                      "verdict", open=False, elem_id="baselines"):
                        checkboxes.append(gr.CheckboxGroup(choices=groups["baselines"], value=[],
                                                           elem_id="baseline-probes", show_label=False))
                    with gr.Accordion("Checkpoints: AV-HuBERT or BRAVEn, for the released lip and audio-visual "
                                      "probes", open=False, elem_id="checkpoints"):
                        checkpoint_encoder = gr.Dropdown(checkpoint_encoders(), value="braven-large-v",
                                                         label="Encoder", elem_id="checkpoint-encoder")
                        checkpoint_file = gr.File(label="Checkpoint (.pt / .pth, from the authors' pages: README)",
                                                  file_types=[".pt", ".pth", ".ckpt"], type="filepath",
                                                  elem_id="checkpoint-file")
                        checkpoint_status = gr.Markdown(elem_id="checkpoint-status")
                    if EXAMPLES:
                        gr.Examples(EXAMPLES, inputs=[video], label="Demo clips (synthetic; made by this project)",
                                    example_labels=example_labels(), elem_id="demo-clips")
                with gr.Column(scale=2, min_width=300, elem_id="results"):
                    verdict = gr.HTML(elem_id="verdict")
                    segments = gr.Radio([], label="Fake segments: click one to go there", visible=False,
                                        elem_id="segment-chips")
                    gr.Markdown("#### When: scores over time (audio under its spectrogram, faces under their "
                                "frames)", elem_classes="panel-title")
                    figure = gr.Image(show_label=False, type="filepath", elem_id="temporal-figure", interactive=False,
                                      buttons=["download", "fullscreen"])
                    step = gr.Slider(0, 1, value=0, step=1, label="Time", elem_id="time-slider")
                    with gr.Row():
                        step_frame = gr.Image(show_label=False, interactive=False, elem_id="step-frame")
                        step_text = gr.Markdown(elem_id="step-text")
                    gr.Markdown("#### Where: most suspicious frames with their heatmaps (click one to see it above)",
                                elem_classes="panel-title")
                    gallery = gr.Gallery(show_label=False, elem_id="heatmap-gallery", columns=3, height="auto")
                    with gr.Accordion("Details: the paper's raw scores, skipped probes, warnings", open=False):
                        details = gr.Markdown(elem_id="details")
                    files = gr.File(label="Downloads: report JSON, figures, heatmaps", file_count="multiple")
        with gr.Tab("Annotate", id="annotate"):
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=300):
                    annotator = gr.Textbox(label="Annotator", placeholder="your name", elem_id="annotator")
                    note = gr.Textbox(label="Note (what looks fake)", lines=2, elem_id="note")
                    difficulty = gr.Radio(["1", "2", "3"], value="1", label="Difficulty (1 easy – 3 hard)")
                    load = gr.Button("Load frames of the video", elem_id="load-frames")
                    scrubber = gr.Slider(0, 1, value=0, step=1, label="Time", elem_id="scrubber")
                    gr.Markdown(TIMELINE_NOTE)
                    show_others = gr.Checkbox(value=False, label="Show other annotators' points",
                                              elem_id="show-others")
                    with gr.Accordion("Delete, export, import", open=False, elem_id="csv-tools"):
                        delete_id = gr.Number(label="Point id to delete", precision=0)
                        delete = gr.Button("Delete my point")
                        this_video = gr.Checkbox(value=True, label="Export this video only")
                        export = gr.Button("Export ExDDV CSV", elem_id="export-button")
                        exported = gr.File(label="Exported clicks", elem_id="exported")
                        upload_csv = gr.File(label="ExDDV CSV to import", file_types=[".csv"], type="filepath",
                                             elem_id="import-file")
                        skip_bad = gr.Checkbox(value=False, label="Import the good rows, skip the bad ones")
                        import_button = gr.Button("Import", elem_id="import-button")
                        import_text = gr.Markdown(elem_id="import-text")
                with gr.Column(scale=2, min_width=300):
                    frame_caption = gr.Markdown(elem_id="frame-caption")
                    frame = gr.Image(show_label=False, interactive=False, elem_id="annotation-frame")
                    table = gr.Dataframe(headers=["id", "time (s)", "step", "frame", "x", "y", "annotator",
                                                  "difficulty", "note"], label="Points", interactive=False,
                                         elem_id="clicks-table")
                    align_button = gr.Button("Compare with the heatmaps", elem_id="align-button")
                    align_text = gr.Markdown(elem_id="alignment-summary")
                    gr.Markdown("#### Clicks against the heatmaps (MAE by minimum fakeness score; clicks and "
                                "maxima)", elem_classes="panel-title")
                    align_plot = gr.Plot(show_label=False)

        results = [verdict, segments, figure, gallery, files, step, details]
        for box in checkboxes:
            box.change(functools.partial(banner, stand_ins), checkboxes, banner_box, api_name=False)
        video.change(new_video, [video, session], [session, *results, status, step_frame, step_text, frame, frame_caption,
                                            table, align_text, align_plot, scrubber], api_name=False,
                     show_progress="hidden")
        run = analyse.click(with_request(run_analysis, 2 + len(checkboxes)), [video, session, *checkboxes],
                            [session, *results, status], api_name="analyse_page", show_progress="hidden")
        run.then(show_step, [step, session], [figure, step_frame, step_text], api_name=False, show_progress="hidden")
        cancel.click(cancel_analysis, [session], status, api_name="cancel", queue=False)
        checkpoint_file.upload(use_checkpoint, [checkpoint_encoder, checkpoint_file, session],
                               [session, checkpoint_status], api_name=False)
        step.input(show_step, [step, session], [figure, step_frame, step_text], api_name=False,
                   trigger_mode="always_last", show_progress="hidden")
        gallery.select(pick_gallery, [session], [step, figure, step_frame, step_text], api_name=False,
                       show_progress="hidden")
        segments.select(None, [segments], None, js=SEEK_PLAYER_JS, api_name=False)
        segments.select(seek_segment, [segments, session], [step, figure, step_frame, step_text], api_name=False,
                        show_progress="hidden")

        annotation = [annotator, show_others, session]
        load.click(load_frames, [video, session], [session, scrubber], api_name=False).then(
            refresh_annotations, annotation, [frame, frame_caption, table], api_name=False)
        scrubber.change(annotation_frame, [scrubber, *annotation], [frame, frame_caption], api_name=False,
                        trigger_mode="always_last", show_progress="hidden")
        frame.select(record_click, [annotator, note, difficulty, show_others, session],
                     [frame, frame_caption, table], api_name=False)
        annotator.blur(refresh_annotations, annotation, [frame, frame_caption, table], api_name=False)
        show_others.change(refresh_annotations, annotation, [frame, frame_caption, table], api_name=False)
        delete.click(delete_click, [delete_id, *annotation], [frame, frame_caption, table], api_name=False)
        export.click(export_clicks, [annotator, session, this_video], exported, api_name=False)
        import_button.click(import_clicks, [upload_csv, skip_bad, *annotation],
                            [import_text, frame, frame_caption, table], api_name=False)
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


def warm_up(probe_ids: list[str]) -> None:
    """Load what a first analysis needs (torch, the encoders, the explainers and figures, the
    face graphs) in the background once the page is served, so neither waits for the other."""
    started = time.perf_counter()
    import explain.reports  # noqa: F401  # lazy: torch and the report's modules, after the page is served
    from models.analysis import warm_up as warm_up_models  # lazy: as above

    warm_up_models(probe_ids)
    LOG.info("%s %.1f s", WARM_UP_DONE, time.perf_counter() - started)


def launch(app: gr.Blocks | None = None, **kwargs):
    """Queue with a concurrency limit (several people can share one instance) and serve; the
    one-time loading a first analysis would pay (torch's import, the models: ~6 s) starts once
    the page is served, so it does not delay it."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = app or build_app()
    limit_heap_arenas()
    app.queue(default_concurrency_limit=int(os.environ.get("AVXPLAIN_CONCURRENCY", 2)), max_size=64)
    on_space = bool(os.environ.get("SPACE_ID"))  # Hugging Face Spaces set it; their proxy needs 0.0.0.0
    block = not kwargs.pop("prevent_thread_lock", False)
    served = app.launch(server_name=os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_space else "127.0.0.1"),
                        max_file_size=f"{int(float(os.environ.get('AVXPLAIN_MAX_UPLOAD_MB', 200)))}mb",
                        show_error=True, state_session_capacity=MAX_SESSIONS, css=CSS, prevent_thread_lock=True,
                        **kwargs)
    threading.Thread(target=warm_up, args=(default_probes(probe_groups()),), daemon=True, name="warm-up").start()
    if block:
        app.block_thread()
    return served


if __name__ == "__main__":
    launch()
