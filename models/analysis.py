"""`analyze(video, probes)`: decode → faces → encoders (cached) → probes → fusion.

The one entry point the UI, the CLI, the benchmarks and the tests share.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from models.cache import FeatureCache
from models.encoders import NATIVE_FAMILIES, ClipInputs, checkpoint_warning, get_encoder, get_spec
from models.encoders.base import FACE_MODALITIES, MOUTH_MODALITIES, EncoderSpec, mouth_alignment
from models.encoders.external import missing_features
from models.errors import AnalysisError
from models.faces import FACE_WORKERS, FaceTrack, shared_trackers, track_faces
from models.media import Clip, MediaInfo, decode, inspect_media
from models.probes import STEP_PROBABILITY, VIDEO_PROBABILITY, LinearProbe, ProbeScores, fuse
from models.settings import Settings
from models.spectrogram import log_mel
from models.sync import (
    AGREEMENT_SCORER_ID,
    SYNC_SCORER_ID,
    SYNC_SCORERS,
    SyncResult,
    estimate_feature_sync,
    estimate_sync,
)
from models.timing import SAMPLE_RATE, STEP_RATE
from models.zoo import load_probe

StageProgress = Callable[[str, float], None] | None
REPORT_VERSION = 1
TIME_CONVENTION = ("step t covers [t/25, (t+1)/25) s and is shown with the frame at its centre; every time in "
                   "the report and the figure (step_times, peaks, heatmaps) is the step's start, t/25 s")


@dataclass
class AnalysisOptions:
    """One analysis request: its `Settings` (what is computed) and how it runs."""

    settings: Settings = field(default_factory=Settings)
    features: dict[str, str | np.ndarray] = field(default_factory=dict)  # external encoder id → file
    cache: FeatureCache | None = field(default_factory=FeatureCache)  # None: no feature cache
    time_limit_s: float | None = None  # a request's time limit (the app sets one); None: no limit


@dataclass
class ProbeResult:
    probe_id: str
    encoder_id: str
    modality: str
    offline_encoder: bool  # True when the encoder is a random-init / packaged stand-in
    card: dict
    scores: ProbeScores
    probe: LinearProbe = field(repr=False)  # the head itself, for explanations; not serialised

    def to_dict(self) -> dict:
        return {"probe": self.probe_id, "encoder": self.encoder_id, "modality": self.modality,
                "offline_encoder": self.offline_encoder, "card": self.card, **self.scores.to_dict()}


@dataclass
class AnalysisResult:
    media: MediaInfo
    probes: dict[str, ProbeResult]
    fusion: ProbeScores | None
    face_track: FaceTrack | None
    skipped: dict[str, str]  # probe id → why it did not run
    warnings: list[str]
    timings: dict[str, float]
    clip: Clip | None = None  # decoded frames and audio, kept for explanations; not serialised
    features: dict[str, np.ndarray] = field(default_factory=dict)  # encoder id → (T × D), not serialised
    options: AnalysisOptions | None = None  # the settings it ran with (explanations reuse them); not serialised
    sync: SyncResult | None = None  # the audio-visual offset, when the sync scorer ran
    agreement: SyncResult | None = None  # the offset from AV-HuBERT's audio and lip streams, when that scorer ran

    def reusable_for(self, video: str | Path, settings: Settings) -> bool:
        """Whether this result decoded `video` (same path and size, same decoding limits) and
        kept what a re-run reuses."""
        path = Path(video)
        return (self.clip is not None and self.options is not None and self.media.path == str(path)
                and self.options.settings.limits == settings.limits
                and path.is_file() and path.stat().st_size == self.media.size_bytes)

    @property
    def step_times(self) -> np.ndarray:
        return np.arange(self.media.n_steps) / STEP_RATE

    def to_dict(self) -> dict:
        return {
            "report_version": REPORT_VERSION,
            "media": self.media.to_dict(),
            "clock": {"step_rate_hz": STEP_RATE, "n_steps": self.media.n_steps, "time_convention": TIME_CONVENTION,
                      "step_probability": STEP_PROBABILITY, "video_probability": VIDEO_PROBABILITY},
            "step_times": [round(float(t), 4) for t in self.step_times],
            "probes": {pid: result.to_dict() for pid, result in self.probes.items()},
            "fusion": ({"probes": list(self.probes), **self.fusion.to_dict()} if self.fusion else None),
            "faces": self.face_track.to_dict() if self.face_track else None,
            "sync": self.sync.to_dict() if self.sync else None,
            "agreement": self.agreement.to_dict() if self.agreement else None,
            "skipped": self.skipped,
            "warnings": self.warnings,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
        }


@dataclass
class ExtractedFeatures:
    """What one decoding pass yields: the clip, its face track, features per encoder."""

    clip: Clip
    track: FaceTrack | None
    features: dict[str, np.ndarray]  # encoder id → (T × D)
    skipped: dict[str, str]  # encoder id → why it could not run
    warnings: list[str]
    timings: dict[str, float]


def extract_features(video: str | Path, encoder_ids: list[str], options: AnalysisOptions | None = None,
                     progress: StageProgress = None, previous: AnalysisResult | None = None,
                     faces_needed: bool = False) -> ExtractedFeatures:
    """Decode `video` once and compute (or read from the cache) the features of every
    encoder in `encoder_ids`; encoders that cannot run on it (no audio) are skipped. A
    `previous` analysis of the same video lends its frames, face track and features, so
    switching probes costs only what is new."""
    options = options or AnalysisOptions()
    previous = previous if previous is not None and previous.reusable_for(video, options.settings) else None
    deadline = Deadline(options.time_limit_s, video)
    report = _stage_reporter(progress, deadline)
    specs = [get_spec(e) for e in dict.fromkeys(encoder_ids)]
    timings: dict[str, float] = {}
    start = time.perf_counter()
    report("decode", 0.0)
    clip = previous.clip if previous is not None else decode(video, options.settings.limits, deadline.check)
    timings["decode"] = time.perf_counter() - start
    warnings = list(clip.warnings)
    skipped = {s.id: "no audio track" for s in specs if _needs_audio(s) and clip.audio is None}
    runnable = [s for s in specs if s.id not in skipped]
    track = None
    if faces_needed or any(_needs_faces(s, options.features) for s in runnable):
        start = time.perf_counter()
        settings, earlier = options.settings, previous.options.settings if previous is not None else None
        same_faces = previous is not None and previous.face_track is not None \
            and (earlier.face_stride, earlier.face_tracking, earlier.landmarks) \
            == (settings.face_stride, settings.face_tracking, settings.landmarks)
        track = previous.face_track if same_faces else track_faces(
            clip.frames, stride=settings.face_stride, workers=settings.face_workers,
            progress=lambda f: report("faces", f), tracking=settings.face_tracking, landmarks=settings.landmarks)
        timings["faces"] = time.perf_counter() - start
        warnings += track.warnings
    warnings += list(dict.fromkeys(w for s in runnable if s.id not in options.features
                                   and (w := checkpoint_warning(s.id, options.settings.weights_for(s.id)))))
    inputs = ClipInputs(clip, track, options.features, options.settings.batch_frames, options.settings.stride)
    if track is not None:
        start = time.perf_counter()
        _prepare_crops(inputs, [s for s in runnable if _needs_faces(s, options.features)])
        timings["crops"] = time.perf_counter() - start
    features = {s.id: _features(s.id, inputs, options, report, timings, previous) for s in runnable}
    return ExtractedFeatures(clip, track, features, skipped, warnings, timings)


def analyze(video: str | Path, probe_ids: list[str], options: AnalysisOptions | None = None,
            progress: StageProgress = None, previous: AnalysisResult | None = None) -> AnalysisResult:
    """Score `video` with every probe in `probe_ids` on the 25 Hz clock (reusing what a
    `previous` analysis of the same video computed)."""
    if not probe_ids:
        raise AnalysisError("no probe chosen.", hint="Pick at least one probe (see `list probes`).")
    options = options or AnalysisOptions()
    scorers = [s for s in SYNC_SCORERS if s in probe_ids]
    probes = [load_probe(pid) for pid in dict.fromkeys(probe_ids) if pid not in SYNC_SCORERS]
    audio = inspect_media(video, options.settings.limits).has_audio  # refuse bad files before decoding anything
    skipped = {p.id: "no audio track" for p in probes if _needs_audio(get_spec(p.encoder_id)) and not audio}
    skipped.update({s: "no audio track" for s in scorers if not audio})
    running = [s for s in scorers if s not in skipped]
    if not probes:
        raise AnalysisError("a sync scorer runs beside probes, not alone.",
                            hint="Choose at least one audio or visual probe as well (see `list probes`).")
    agreement_encoder = _agreement_encoder(options) if AGREEMENT_SCORER_ID in running else None
    runnable = [p for p in probes if p.id not in skipped]
    if not runnable and not running:
        raise AnalysisError("none of the chosen probes can run on this clip: "
                            + "; ".join(f"{pid}: {why}" for pid, why in skipped.items()), path=video)
    _check_encoders_can_run([get_spec(p.encoder_id) for p in runnable], options)
    extracted = extract_features(video, [p.encoder_id for p in runnable], options, progress, previous,
                                 faces_needed=bool(running))
    start = time.perf_counter()
    results = {p.id: _probe_result(p, extracted.features[p.encoder_id]) for p in runnable}
    fusion = fuse([r.scores for r in results.values()]) if len(results) > 1 else None
    sync = estimate_sync(extracted.clip.audio, extracted.track) if SYNC_SCORER_ID in running else None
    agreement = None
    if agreement_encoder is not None:
        _stage_reporter(progress)(f"scorer {AGREEMENT_SCORER_ID}", 0.0)
        agreement = estimate_feature_sync(*agreement_encoder.stream_features(ClipInputs(extracted.clip,
                                                                                        extracted.track)))
    extracted.timings["probes"] = time.perf_counter() - start
    _stage_reporter(progress)("done", 1.0)
    return AnalysisResult(media=extracted.clip.info, probes=results, fusion=fusion, face_track=extracted.track,
                          skipped=skipped, warnings=extracted.warnings, timings=extracted.timings,
                          clip=extracted.clip, features=extracted.features, options=options, sync=sync,
                          agreement=agreement)


def _agreement_encoder(options: AnalysisOptions):
    """The native AV-HuBERT that the agreement scorer runs (the first AV-HuBERT entry given a
    checkpoint by --weights), loaded and checked before anything is decoded; a clear error
    without one."""
    for encoder_id, weights in options.settings.weights:
        if get_spec(encoder_id).family == "avhubert":
            return get_encoder(encoder_id, weights, options.settings.precision)
    raise AnalysisError(f"{AGREEMENT_SCORER_ID} needs an AV-HuBERT checkpoint.",
                        hint="Give one: --weights avhubert-large-av=CHECKPOINT.pt (see README: AV-HuBERT checkpoints).")


def _check_encoders_can_run(specs: list[EncoderSpec], options: AnalysisOptions) -> None:
    """Fail before decoding when an encoder cannot run: precomputed features not given, or
    hub weights that are neither local nor downloadable (loading is memoised, so the
    analysis reuses what this loads)."""
    for spec in specs:
        if spec.source == "external" and spec.id not in options.features:
            weights = options.settings.weights_for(spec.id)
            if not weights or spec.family not in NATIVE_FAMILIES:
                raise missing_features(spec)
            get_encoder(spec.id, weights, options.settings.precision)  # the checkpoint is read and checked now
        if spec.source == "hub":
            get_encoder(spec.id, options.settings.weights_for(spec.id), options.settings.precision)


def warm_up(probe_ids: list[str]) -> None:
    """Pay the one-time costs of a first analysis ahead of it (the app calls this in the
    background at launch): the mediapipe graphs (~1 s each), the probes' encoders (the sync
    scorer has none) and the mel filters."""
    log_mel(np.zeros(SAMPLE_RATE, np.float32))
    shared_trackers(FACE_WORKERS)
    for probe_id in probe_ids:
        if probe_id not in SYNC_SCORERS:
            get_encoder(load_probe(probe_id).encoder_id)


def _prepare_crops(inputs: ClipInputs, specs: list) -> None:
    """Cut the face and mouth crops the chosen encoders need, once, as their own stage."""
    if any(s.modality == "face" for s in specs):
        inputs.face_crops
    for alignment in {mouth_alignment(s) for s in specs if s.modality in MOUTH_MODALITIES}:
        inputs.mouth_rois(alignment)


def _needs_audio(spec) -> bool:
    return spec.modality in ("audio", "audio-visual")


def _needs_faces(spec, features: dict) -> bool:
    """Encoders run here on face crops or mouth regions (an audio-visual one takes the mouth);
    not those whose features come from a file."""
    return spec.id not in features and (spec.modality in FACE_MODALITIES or spec.modality == "audio-visual")


class Deadline:
    """A request's time limit, counted from its creation: `check` raises a clear error
    naming the stage once the limit has passed."""

    def __init__(self, limit_s: float | None, video: str | Path):
        self.limit_s, self.video, self.started = limit_s, video, time.monotonic()

    def check(self, stage: str) -> None:
        if self.limit_s is not None and time.monotonic() - self.started > self.limit_s:
            raise AnalysisError(f"the analysis took longer than the limit of {self.limit_s:g} s (stopped at: {stage}).",
                                path=self.video, hint="Try a shorter clip, fewer probes or --stride N; in the app "
                                                      "the limit is AVXPLAIN_TIME_LIMIT_S.")


def _stage_reporter(progress: StageProgress, deadline: Deadline | None = None) -> Callable[[str, float], None]:
    """The progress callback every stage reports to; it also enforces the time limit."""
    def report(stage: str, fraction: float) -> None:
        if deadline is not None:
            deadline.check(stage)
        if progress is not None:
            progress(stage, fraction)

    return report


def _features(encoder_id: str, inputs: ClipInputs, options: AnalysisOptions, report: Callable[[str, float], None],
              timings: dict[str, float], previous: AnalysisResult | None = None) -> np.ndarray:
    """Features from a previous analysis with the same settings, the cache, or computed and
    cached; always exactly n_steps rows. Records the time to load the encoder and to run
    it in `timings`."""
    spec = get_spec(encoder_id)
    stage = f"encoder {encoder_id}"
    start = time.perf_counter()
    if spec.id in options.features:  # user-supplied files are not cached under the video's hash
        features = get_encoder(encoder_id).encode(inputs, lambda f: report(stage, f))
        timings[stage] = time.perf_counter() - start
        return features
    sha = inputs.clip.info.sha256
    version = options.settings.cache_key(spec)
    if previous is not None and encoder_id in previous.features and previous.options.settings.cache_key(spec) == version:
        timings[f"reused {encoder_id}"] = time.perf_counter() - start
        return previous.features[encoder_id]
    cached = options.cache.get(sha, encoder_id, version) if options.cache else None
    if cached is not None and cached.shape == (inputs.n_steps, spec.dim):
        report(stage, 1.0)
        timings[f"cache {encoder_id}"] = time.perf_counter() - start
        return cached
    report(f"load {encoder_id}", 0.0)
    encoder = get_encoder(encoder_id, options.settings.weights_for(encoder_id), options.settings.precision)
    timings[f"load {encoder_id}"] = time.perf_counter() - start
    start = time.perf_counter()
    computed = encoder.encode(inputs, lambda f: report(stage, f)).astype(np.float32)
    timings[stage] = time.perf_counter() - start
    if computed.shape != (inputs.n_steps, spec.dim):
        raise AnalysisError(f"encoder {encoder_id} returned features of shape {computed.shape}, "
                            f"expected ({inputs.n_steps}, {spec.dim}).")
    if options.cache:
        options.cache.put(sha, encoder_id, version, computed)
    return computed


def _probe_result(probe: LinearProbe, features: np.ndarray) -> ProbeResult:
    spec = get_spec(probe.encoder_id)
    return ProbeResult(probe_id=probe.id, encoder_id=spec.id, modality=spec.modality,
                       offline_encoder=spec.offline and spec.source != "external",
                       card=probe.card, scores=probe.score(features), probe=probe)
