"""Decode one video file into frames on the 25 Hz step clock and mono 16 kHz audio.

Frames are picked by presentation timestamp, so constant and variable frame rate
files land on the same clock: step t shows the last frame whose timestamp is at or
before the step's centre. PyAV (FFmpeg) does the decoding; every failure a user can
cause becomes an AnalysisError naming the file and the problem.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from models.errors import AnalysisError
from models.timing import SAMPLE_RATE, STEP_RATE, step_centre, steps_for_duration

IMAGE_FORMATS = {"image2", "gif", "apng", "webp", "tiff", "bmp"}
TEXT_FORMATS = {"tty", "srt", "ass", "webvtt", "subviewer", "microdvd", "jacosub", "sami", "realtext", "lrc"}
KNOWN_CONTAINERS = "MP4, MOV, MKV, WebM or AVI"


@dataclass(frozen=True)
class MediaLimits:
    """What decoding accepts; everything beyond is refused before heavy work starts."""

    max_file_bytes: int = 2 * 1024**3
    max_duration_s: float = 600.0
    max_width: int = 4096
    max_height: int = 4096
    max_frames: int = 36_000  # declared or decoded video frames (600 s at 60 fps): frame-rate bombs stop here
    frame_max_side: int = 640  # frames are kept at this working size (longest side)
    min_side: int = 32  # frames smaller than this (either side) cannot hold a face a detector finds
    min_decoded_fraction: float = 0.9  # below this share of the declared duration: truncated


@dataclass
class MediaInfo:
    """Facts about the source file, carried into every report."""

    path: str
    name: str
    sha256: str
    size_bytes: int
    container: str
    video_codec: str
    width: int
    height: int
    fps: float
    variable_frame_rate: bool
    duration_s: float
    n_steps: int
    has_audio: bool
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class StepFrames:
    """A clip's frames, one per step, kept in an anonymous temporary file rather than in
    memory: a minute at the working size is a gigabyte, and reading one frame back costs a
    fraction of a millisecond. The OS removes the file when it is closed (also on a crash).
    Indexes like a (T, H, W, 3) uint8 array."""

    dtype = np.dtype(np.uint8)

    def __init__(self, height: int, width: int):
        self.frame_shape = (height, width, 3)
        self.frame_bytes = height * width * 3
        self._count = 0
        self._file = tempfile.TemporaryFile(prefix="avxplain-frames-")

    def append(self, image: np.ndarray) -> None:
        if image.shape != self.frame_shape:
            raise ValueError(f"frame of shape {image.shape}, expected {self.frame_shape}")
        os.pwrite(self._file.fileno(), np.ascontiguousarray(image, np.uint8).data, self._count * self.frame_bytes)
        self._count += 1

    def __len__(self) -> int:
        return self._count

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self._count, *self.frame_shape)

    def frame(self, step: int) -> np.ndarray:
        """One frame, read back from the file."""
        if step < 0:
            step += self._count
        if not 0 <= step < self._count:
            raise IndexError(f"step {step} outside 0..{self._count - 1}")
        image = np.empty(self.frame_shape, np.uint8)
        os.preadv(self._file.fileno(), [image], step * self.frame_bytes)
        return image

    def __getitem__(self, index):
        if isinstance(index, tuple):
            steps, rest = index[0], index[1:]
            return self[steps][rest if isinstance(steps, (int, np.integer)) else (slice(None), *rest)]
        if isinstance(index, (int, np.integer)):
            return self.frame(int(index))
        steps = np.arange(self._count)[index]
        return np.stack([self.frame(int(step)) for step in steps]) if len(steps) else \
            np.zeros((0, *self.frame_shape), np.uint8)

    def __iter__(self):
        return (self.frame(step) for step in range(self._count))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        frames = self[:]
        return frames.astype(dtype) if dtype is not None else frames


@dataclass
class Clip:
    """A decoded clip: one frame per analysis step, their source timestamps, audio."""

    info: MediaInfo
    frames: np.ndarray | StepFrames  # (T, H, W, 3) uint8 RGB at the working size
    frame_times: np.ndarray  # (T,) timestamp in seconds of the frame shown at each step
    audio: np.ndarray | None  # (N,) float32 mono at SAMPLE_RATE, None without an audio track
    warnings: list[str] = field(default_factory=list)

    @property
    def n_steps(self) -> int:
        return len(self.frames)

    @property
    def step_times(self) -> np.ndarray:
        return np.arange(self.n_steps) / STEP_RATE


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes. Remembered per (path, size, modification time): the app
    hashes an upload to serve a repeat request, and decoding it hashes it again."""
    stat = os.stat(path)
    return _sha256_of(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256_of(path: str, size: int, mtime_ns: int, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def working_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Size frames are kept at: the source scaled so its longest side is at most
    `max_side`, with even dimensions."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def decode(path: str | Path, limits: MediaLimits = MediaLimits(),
           check_time: Callable[[str], None] | None = None) -> Clip:
    """Decode `path` into a Clip on the step clock; raise AnalysisError for bad input.
    `check_time('decode')` is called for every packet (a request's time limit)."""
    path = Path(path)
    with _open(path, limits) as container:
        return _decode_container(container, path, limits, check_time or (lambda stage: None))


def _open(path: Path, limits: MediaLimits) -> av.container.InputContainer:
    _check_file(path, limits)
    try:
        return av.open(str(path), metadata_errors="replace")  # damaged tags must not stop decoding
    except av.error.FFmpegError as error:
        raise AnalysisError(
            f"is not a video file FFmpeg can read ({_ffmpeg_reason(error)}).",
            path=path, hint=f"Upload an {KNOWN_CONTAINERS} file.") from None


def _decodable_audio(container: av.container.InputContainer) -> av.AudioStream | None:
    """The first audio stream FFmpeg can decode, or None (a damaged one counts as absent)."""
    return next((s for s in container.streams.audio if s.codec_context is not None), None)


@dataclass(frozen=True)
class MediaHeader:
    """What a file's header and packet index say, read without decoding a frame."""

    width: int
    height: int
    fps: float  # the stream's average frame rate (0 when the header has none)
    has_audio: bool
    declared_duration_s: float | None
    packets_end_s: float  # end time of the last video packet


def inspect_media(path: str | Path, limits: MediaLimits = MediaLimits()) -> MediaHeader:
    """Refuse a file that cannot be analysed from its header and packet index alone (no
    frame is decoded, no model library is loaded): missing, empty, not a video, no video
    stream, frames too small or too large, too long, too many frames, truncated."""
    path = Path(path)
    with _open(path, limits) as container:
        video, declared = _check_header(container, path, limits)
        end = _packets_end(container, video, limits, path)
        if end is None:
            raise AnalysisError("its video stream holds no frames; the file looks truncated or corrupt.",
                                path=path, hint="Re-export or re-download the file.")
        if declared is not None and declared > 1.0 and end < limits.min_decoded_fraction * declared:
            raise AnalysisError(f"the file is truncated: its header says {declared:.2f} s but its frames "
                                f"end at {end:.2f} s.", path=path, hint="Re-export or re-download the file.")
        return MediaHeader(video.codec_context.width, video.codec_context.height,
                           float(video.average_rate or 0), _decodable_audio(container) is not None, declared, end)


def _packets_end(container: av.container.InputContainer, video: av.VideoStream, limits: MediaLimits,
                 path: Path) -> float | None:
    """The end time (s) of the last video packet in the file, reading packets, not frames
    (about a millisecond per hundred packets); None when there is none. Refuses a stream of
    more packets than the frame limit."""
    end, origin = None, container.start_time / av.time_base if container.start_time is not None else 0.0
    try:
        for count, packet in enumerate(container.demux(video)):
            if packet.pts is not None and packet.time_base is not None:
                stop = float((packet.pts + (packet.duration or 0)) * packet.time_base) - origin
                end = stop if end is None else max(end, stop)
            if count > limits.max_frames:
                raise AnalysisError(f"the video holds more than {limits.max_frames} frames, over the limit.",
                                    path=path, hint="Lower the frame rate or cut the clip shorter, or raise the "
                                                    "frame limit.")
    except av.error.FFmpegError:
        pass  # a damaged tail: what was read so far counts
    return end


def _check_file(path: Path, limits: MediaLimits) -> None:
    if not path.exists():
        raise AnalysisError("file not found.", path=path, hint="Check the path.")
    if path.is_dir():
        raise AnalysisError("is a folder, not a video file.", path=path)
    size = path.stat().st_size
    if size == 0:
        raise AnalysisError("the file is empty (0 bytes).", path=path,
                            hint="The upload or copy may have failed; try the file again.")
    if size > limits.max_file_bytes:
        raise AnalysisError(
            f"the file is {size / 1e6:.0f} MB, over the limit of {limits.max_file_bytes / 1e6:.0f} MB.",
            path=path, hint="Cut the clip shorter or raise the limit.")


def _ffmpeg_reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def _check_header(container: av.container.InputContainer, path: Path,
                  limits: MediaLimits) -> tuple[av.VideoStream, float | None]:
    """Refuse what the header already shows cannot be analysed; the video stream and its
    declared duration."""
    format_name = container.format.name
    if format_name in TEXT_FORMATS:
        raise AnalysisError(f"is a text file ({format_name}), not a video.", path=path,
                            hint=f"Upload an {KNOWN_CONTAINERS} file.")
    if set(format_name.split(",")) & IMAGE_FORMATS or format_name.endswith("_pipe"):
        raise AnalysisError(f"is a still image ({format_name}), not a video.", path=path,
                            hint=f"Upload an {KNOWN_CONTAINERS} file.")
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
        raise AnalysisError(f"has no video stream (it contains: {kinds}).", path=path,
                            hint="The analysis needs a video track; for audio only, mux it with a still frame.")
    video = container.streams.video[0]
    if video.codec_context is None:
        raise AnalysisError("the video stream's codec is unknown to FFmpeg; the file looks corrupt or uses an "
                            "unsupported codec.", path=path, hint=f"Re-encode it as H.264 in an {KNOWN_CONTAINERS} file.")
    width, height = video.codec_context.width, video.codec_context.height
    if width <= 0 or height <= 0:
        raise AnalysisError("the video stream has no frame size.", path=path, hint="The file looks corrupt.")
    if width < limits.min_side or height < limits.min_side:
        raise AnalysisError(
            f"the video is {width}×{height} pixels, too small to hold a face (at least {limits.min_side} px a side "
            "is needed).", path=path, hint="Use the original, larger video.")
    kept = working_size(width, height, limits.frame_max_side)
    if min(kept) < limits.min_side:
        raise AnalysisError(
            f"kept at a working size of {kept[0]}×{kept[1]} (longest side {limits.frame_max_side}), its frames are "
            f"too small to hold a face (at least {limits.min_side} px a side).", path=path,
            hint="Raise the working frame size (--frame-size).")
    if width > limits.max_width or height > limits.max_height:
        raise AnalysisError(
            f"the video is {width}×{height}, over the limit of {limits.max_width}×{limits.max_height}.",
            path=path, hint="Downscale the clip or raise the resolution limit.")
    declared = _declared_duration(container, video)
    if declared is not None and declared > limits.max_duration_s:
        raise AnalysisError(
            f"the clip is {declared:.1f} s long, over the limit of {limits.max_duration_s:.0f} s.",
            path=path, hint="Cut the clip shorter or raise the duration limit.")
    declared_frames = video.frames or (int(declared * float(video.average_rate))
                                       if declared is not None and video.average_rate else 0)
    if declared_frames > limits.max_frames:
        raise AnalysisError(
            f"the video declares {declared_frames} frames, over the limit of {limits.max_frames}.",
            path=path, hint="Lower the frame rate or cut the clip shorter, or raise the frame limit.")
    return video, declared


def _decode_container(container: av.container.InputContainer, path: Path, limits: MediaLimits,
                      check_time: Callable[[str], None]) -> Clip:
    video, declared = _check_header(container, path, limits)
    format_name, width, height = container.format.name, video.codec_context.width, video.codec_context.height
    audio = _decodable_audio(container)
    origin = container.start_time / av.time_base if container.start_time not in (None,) else 0.0
    out_size = working_size(width, height, limits.frame_max_side)
    picker = _StepFramePicker(out_size)
    audio_parts: list[tuple[float, np.ndarray]] = []
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE) if audio else None
    streams = [video] + ([audio] if audio else [])
    video.thread_type = "AUTO"  # frame + slice threads: the decoded pixels do not depend on them
    try:
        for packet in container.demux(*streams):
            check_time("decode")
            for frame in packet.decode():
                if frame.time is None:
                    continue
                time = frame.time - origin
                if time > limits.max_duration_s:
                    raise AnalysisError(
                        f"the clip runs past the limit of {limits.max_duration_s:.0f} s.",
                        path=path, hint="Cut the clip shorter or raise the duration limit.")
                if isinstance(frame, av.VideoFrame):
                    picker.add(frame, time)
                    if picker.frame_count > limits.max_frames:
                        raise AnalysisError(
                            f"the video has more than {limits.max_frames} frames (the limit).", path=path,
                            hint="Lower the frame rate or cut the clip shorter, or raise the frame limit.")
                else:
                    audio_parts.extend((time, chunk) for chunk in _resample(resampler, frame))
        if resampler is not None:
            audio_parts.extend((math.inf, chunk) for chunk in _resample(resampler, None))
    except av.error.FFmpegError as error:
        raise AnalysisError(f"decoding failed ({_ffmpeg_reason(error)}); the file looks truncated or corrupt.",
                            path=path, hint="Re-export or re-download the file.") from None
    except MemoryError:
        raise AnalysisError("decoding ran out of memory.", path=path,
                            hint="Lower the resolution or duration limits.") from None
    except OSError as error:  # FFmpeg's own errors are handled above: this is the frame file
        raise AnalysisError(f"the decoded frames could not be written to a temporary file ({error.strerror}).",
                            path=path, hint="Free disk space where TMPDIR points, or point TMPDIR at a larger "
                                            "disk.") from None
    if picker.frame_count == 0:
        raise AnalysisError("no video frame could be decoded; the file looks truncated or corrupt.",
                            path=path, hint="Re-export or re-download the file.")
    duration = picker.end_time()
    if declared is not None and declared > 1.0 and duration < limits.min_decoded_fraction * declared:
        raise AnalysisError(
            f"the file is truncated: its header says {declared:.2f} s but only {duration:.2f} s could be decoded.",
            path=path, hint="Re-export or re-download the file.")
    n_steps = steps_for_duration(duration)
    frames, frame_times = picker.frames_for_steps(n_steps)
    waveform = _assemble_audio(audio_parts, n_steps) if audio else None
    warnings = []
    if audio is None:
        warnings.append("no audio track: audio probes are skipped")
    elif waveform is not None and not np.any(waveform):
        warnings.append("the audio track is silent")
    info = MediaInfo(
        path=str(path), name=path.name, sha256=file_sha256(path), size_bytes=path.stat().st_size,
        container=format_name, video_codec=video.codec_context.name, width=width, height=height,
        fps=picker.mean_fps(), variable_frame_rate=picker.is_variable_rate(), duration_s=round(duration, 4),
        n_steps=n_steps, has_audio=audio is not None,
        audio_codec=audio.codec_context.name if audio else None,
        audio_sample_rate=audio.codec_context.sample_rate if audio else None,
        audio_channels=audio.codec_context.channels if audio else None)
    return Clip(info=info, frames=frames, frame_times=frame_times, audio=waveform, warnings=warnings)


def _declared_duration(container: av.container.InputContainer, video: av.VideoStream) -> float | None:
    if video.duration is not None and video.time_base is not None:
        return float(video.duration * video.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _resample(resampler: av.AudioResampler, frame: av.AudioFrame | None) -> list[np.ndarray]:
    return [out.to_ndarray().reshape(-1).astype(np.float32) for out in resampler.resample(frame)]


def _assemble_audio(parts: list[tuple[float, np.ndarray]], n_steps: int) -> np.ndarray:
    """Concatenate resampled chunks, placed by the first chunk's timestamp, cut or padded to
    exactly n_steps steps of audio."""
    total = n_steps * SAMPLE_RATE // STEP_RATE
    if not parts:
        return np.zeros(total, np.float32)
    lead = max(0, int(round(parts[0][0] * SAMPLE_RATE))) if math.isfinite(parts[0][0]) else 0
    samples = np.concatenate([np.zeros(lead, np.float32)] + [chunk for _, chunk in parts])
    if len(samples) >= total:
        return samples[:total]
    return np.pad(samples, (0, total - len(samples)))


class _StepFramePicker:
    """Keeps, for each step centre, the last frame whose timestamp is at or before it.

    Frames that no step shows are never converted to RGB.
    """

    def __init__(self, out_size: tuple[int, int]):
        self.out_size = out_size
        self.reformatter = VideoReformatter()  # one scaler context for every frame (same pixels, half the time)
        self.images = StepFrames(out_size[1], out_size[0])  # one per step assigned so far
        self.image_times: list[float] = []
        self.pending: tuple[av.VideoFrame, float] | None = None
        self.pending_image: np.ndarray | None = None
        self.times: list[float] = []

    @property
    def frame_count(self) -> int:
        return len(self.times)

    def add(self, frame: av.VideoFrame, time: float) -> None:
        if self.times and time <= self.times[-1]:
            return  # duplicate or out-of-order timestamp: keep the first frame shown
        self.times.append(time)
        if self.pending is not None:
            self._assign_until(time)
        self.pending, self.pending_image = (frame, time), None

    def _assign_until(self, next_time: float) -> None:
        """Give the pending frame to every unassigned step whose centre is before next_time."""
        while step_centre(len(self.images)) < next_time:
            self._assign_pending()

    def _assign_pending(self) -> None:
        frame, time = self.pending
        if self.pending_image is None:
            width, height = self.out_size
            self.pending_image = self.reformatter.reformat(frame, width=width, height=height,
                                                           format="rgb24").to_ndarray()
        self.images.append(self.pending_image)
        self.image_times.append(time)

    def end_time(self) -> float:
        """Timestamp where the last frame stops being shown."""
        if len(self.times) < 2:
            return self.times[-1] + 1.0 / STEP_RATE
        return self.times[-1] + float(np.median(np.diff(self.times)))

    def frames_for_steps(self, n_steps: int) -> tuple[StepFrames, np.ndarray]:
        """The frames of the first n_steps steps (no step can have been assigned beyond them)."""
        while len(self.images) < n_steps:
            self._assign_pending()
        return self.images, np.asarray(self.image_times[:n_steps])

    def mean_fps(self) -> float:
        if len(self.times) < 2:
            return 0.0
        return round((len(self.times) - 1) / (self.times[-1] - self.times[0]), 3)

    def is_variable_rate(self) -> bool:
        if len(self.times) < 3:
            return False
        intervals = np.diff(self.times)
        return bool(intervals.max() - intervals.min() > 0.25 * np.median(intervals))


def write_test_clip(path: str | Path, frames: np.ndarray, *, fps: float | Fraction = 25,
                    audio: np.ndarray | None = None, audio_rate: int = SAMPLE_RATE,
                    frame_times: np.ndarray | None = None, codec: str = "libx264",
                    audio_codec: str = "aac", crf: int | None = None) -> Path:
    """Write frames (T×H×W×3 uint8) and optional audio ((channels×)N float32) to a video file.

    Used by the synthetic generator and the tests; `frame_times` gives variable frame rate.
    Encoding is single-threaded so the same input always gives the same bytes; `crf` sets
    x264's quality (higher: more compression).
    """
    path = Path(path)
    rate = Fraction(fps).limit_denominator(1000)
    with av.open(str(path), mode="w") as container:
        options = _reproducible_options(codec) | ({"crf": str(crf)} if crf is not None else {})
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if frame_times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        audio_stream = None
        if audio is not None:
            audio = np.atleast_2d(np.asarray(audio, np.float32))
            layout = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}.get(audio.shape[0], f"{audio.shape[0]}c")
            audio_stream = container.add_stream(audio_codec, rate=audio_rate, layout=layout)
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if frame_times is not None:
                frame.pts = int(round(frame_times[index] * 1000))
                frame.time_base = Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio_stream is not None:
            _write_audio(container, audio_stream, audio, audio_rate)
    return path


def _reproducible_options(codec: str) -> dict[str, str]:
    """Encoder options that make the output bytes depend on the input alone. x264 is not
    reproducible with threads or with its AVX-512 kernels (measured: the same frames gave
    different files), so it runs on one thread with SIMD capped at AVX2 (or SSE4, or none,
    by what the CPU has)."""
    if codec != "libx264":
        return {"threads": "1"}
    try:
        flags = set(open("/proc/cpuinfo").read().split())
    except OSError:
        flags = set()
    asm = "avx2" if "avx2" in flags else "sse4" if "sse4_1" in flags else "0"
    return {"threads": "1", "x264-params": f"asm={asm}"}


def _write_audio(container, stream, audio: np.ndarray, rate: int) -> None:
    chunk = 1024
    layout = stream.layout.name
    for start in range(0, audio.shape[1], chunk):
        # packed (interleaved) samples: PyAV's planar from_ndarray stops at 7 channels; the encoder converts
        block = np.ascontiguousarray(audio[:, start:start + chunk].T.reshape(1, -1))
        frame = av.AudioFrame.from_ndarray(block, format="flt", layout=layout)
        frame.sample_rate = rate
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
