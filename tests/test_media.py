"""Decoding onto the 25 Hz clock, containers and formats, and bad files."""
import hashlib
import os
import time
from pathlib import Path

import av
import numpy as np
import pytest

from models.errors import AnalysisError
from models.media import MediaLimits, StepFrames, decode, file_sha256, write_test_clip
from models.timing import SAMPLE_RATE
from tests.cli_runner import run_cli
from tests.conftest import gradient_frames

ROOT = Path(__file__).resolve().parents[1]


def frame_index(frame: np.ndarray) -> int:
    return int(round(frame.mean() / 4))


def test_constant_rate_25fps_maps_one_frame_per_step(tmp_path):
    path = write_test_clip(tmp_path / "c.mp4", gradient_frames(50))
    clip = decode(path)
    assert clip.n_steps == 50
    assert [frame_index(f) for f in clip.frames] == list(range(50))
    assert clip.audio is None and "no audio track" in clip.warnings[0]
    assert not clip.info.variable_frame_rate


def test_step_frames_index_like_an_array_and_leave_no_file(tmp_path, monkeypatch):
    """Decoded frames live in an anonymous temporary file: every way the code indexes an
    array gives the same pixels, and nothing is visible in the temporary folder."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    frames = np.random.default_rng(0).integers(0, 256, (7, 6, 10, 3), dtype=np.uint8)
    stored = StepFrames(6, 10)
    for frame in frames:
        stored.append(frame)
    assert stored.shape == frames.shape and len(stored) == 7 and list(tmp_path.iterdir()) == []
    for index in (0, 6, -1, np.int64(3), slice(1, 6, 2), [4, 0], (2, 5, 9), (slice(None), 0, 0, 1)):
        assert np.array_equal(stored[index], frames[index])
    assert np.array_equal(np.asarray(stored), frames) and all(map(np.array_equal, stored, frames))
    assert stored[5:5].shape == (0, 6, 10, 3)
    with pytest.raises(IndexError):
        stored[7]
    with pytest.raises(ValueError):
        stored.append(frames[0, :3])


def test_a_full_temporary_disk_gives_the_project_error(tmp_path, monkeypatch):
    import errno
    import os

    path = write_test_clip(tmp_path / "c.mp4", gradient_frames(10))

    def disk_full(*_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("models.media.os.pwrite", disk_full)
    with pytest.raises(AnalysisError, match="temporary file .No space left on device.*c.mp4|c.mp4.*No space left"):
        decode(path)


def test_30fps_is_resampled_by_timestamp(tmp_path):
    path = write_test_clip(tmp_path / "c30.mp4", gradient_frames(60), fps=30)
    clip = decode(path)
    assert clip.n_steps == 50  # 2 s
    # step t shows the last frame at or before its centre (t + 0.5) / 25
    expected = [int(np.floor((t + 0.5) / 25 * 30 + 1e-9)) for t in range(50)]
    assert [frame_index(f) for f in clip.frames] == expected


def test_variable_frame_rate(tmp_path):
    # 1 s at 10 fps, then 1 s at 50 fps
    times = np.concatenate([np.arange(10) / 10, 1 + np.arange(50) / 50])
    path = write_test_clip(tmp_path / "vfr.mkv", gradient_frames(len(times)), fps=50, frame_times=times,
                           codec="libx264")
    clip = decode(path)
    assert clip.info.variable_frame_rate
    assert clip.n_steps == 50
    for step in range(clip.n_steps):
        centre = (step + 0.5) / 25
        expected = int(np.searchsorted(times, centre + 1e-9, side="right") - 1)
        assert frame_index(clip.frames[step]) == expected, step
        assert clip.frame_times[step] <= centre + 1e-6


def test_44k_stereo_audio_becomes_mono_16k(tmp_path):
    rate, seconds = 44100, 2.0
    t = np.arange(int(rate * seconds)) / rate
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    right = 0.5 * np.sin(2 * np.pi * 440 * t)
    path = write_test_clip(tmp_path / "s.mp4", gradient_frames(50), audio=np.stack([left, right]), audio_rate=rate)
    clip = decode(path)
    assert clip.info.audio_sample_rate == rate and clip.info.audio_channels == 2
    assert clip.audio.dtype == np.float32 and len(clip.audio) == 2 * SAMPLE_RATE
    spectrum = np.abs(np.fft.rfft(clip.audio[4000:20000]))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / 16000
    assert abs(peak_hz - 440) < 3


def test_portrait_1080p_is_kept_at_working_size(tmp_path):
    frames = np.zeros((5, 1920, 1080, 3), np.uint8)
    frames[:, :960] = 200
    clip = decode(write_test_clip(tmp_path / "p.mp4", frames))
    assert (clip.info.width, clip.info.height) == (1080, 1920)
    assert clip.frames.shape[1:] == (640, 360, 3)  # longest side 640, aspect kept
    assert clip.frames[0, :300].mean() > 150 and clip.frames[0, 340:].mean() < 50


@pytest.mark.parametrize("suffix,codec,audio_codec", [
    (".mov", "libx264", "aac"), (".mkv", "libx264", "aac"), (".webm", "libvpx-vp9", "libopus"),
    (".avi", "mpeg4", "mp3")])
def test_containers(tmp_path, suffix, codec, audio_codec):
    audio = 0.1 * np.sin(np.arange(48000) / 48000 * 2 * np.pi * 300).astype(np.float32)
    path = write_test_clip(tmp_path / f"c{suffix}", gradient_frames(25), codec=codec, audio=audio,
                           audio_rate=48000, audio_codec=audio_codec)
    clip = decode(path)
    # AVI's muxer may place the second frame one tick late, which stretches the file to 26 ticks
    assert clip.n_steps in (25, 26) and clip.n_steps == round(clip.info.duration_s * 25)
    assert clip.audio is not None and len(clip.audio) == clip.n_steps * SAMPLE_RATE // 25
    assert np.abs(clip.audio[2000:14000]).max() > 0.05


def test_limits_are_enforced_before_decoding(tmp_path):
    path = write_test_clip(tmp_path / "long.mp4", gradient_frames(75))
    with pytest.raises(AnalysisError, match=r"3\.0 s long, over the limit of 2 s"):
        decode(path, MediaLimits(max_duration_s=2))
    with pytest.raises(AnalysisError, match="64×48, over the limit of 32×32"):
        decode(path, MediaLimits(max_width=32, max_height=32))
    with pytest.raises(AnalysisError, match="declares 75 frames, over the limit of 50"):
        decode(path, MediaLimits(max_frames=50))


def test_frame_rate_bomb_is_refused_from_the_header(tmp_path):
    """A short clip at 1000 fps declaring 3000 frames stops before anything is decoded."""
    from fractions import Fraction

    path = write_test_clip(tmp_path / "bomb.mp4", gradient_frames(3000, 32, 32), fps=Fraction(1000))
    started = time.perf_counter()
    with pytest.raises(AnalysisError, match="declares 3000 frames, over the limit of 1000"):
        decode(path, MediaLimits(max_frames=1000))
    assert time.perf_counter() - started < 1.0


def test_decoding_stops_when_the_time_check_says_so(tmp_path):
    path = write_test_clip(tmp_path / "clip.mp4", gradient_frames(50))
    seen = []

    def out_of_time(stage: str) -> None:
        seen.append(stage)
        if len(seen) > 3:
            raise AnalysisError("the analysis took longer than the limit of 1 s (stopped at: decode).")

    with pytest.raises(AnalysisError, match="stopped at: decode"):
        decode(path, check_time=out_of_time)
    assert seen == ["decode"] * 4


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = write_test_clip(tmp_path / "good.mp4", gradient_frames(50))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    image = tmp_path / "image.mp4"
    av_frame = av.VideoFrame.from_ndarray(gradient_frames(1)[0], format="rgb24")
    av_frame.to_image().save(image, format="PNG")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    text_txt = tmp_path / "notes.txt"  # by extension FFmpeg would render it as a video of text
    text_txt.write_text("this is not a video either\n" * 50)
    audio_only = tmp_path / "audio_only.mp4"
    with av.open(str(audio_only), "w") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return {
        "empty": (empty, "empty (0 bytes)"),
        "truncated": (truncated, "truncated"),
        "image": (image, "still image"),
        "text": (text, "not a video file FFmpeg can read"),
        "text_txt": (text_txt, "is a text file"),
        "audio_only": (audio_only, "no video stream"),
    }


@pytest.mark.parametrize("kind", ["empty", "truncated", "image", "text", "text_txt", "audio_only"])
def test_bad_files_raise_the_project_error(tmp_path, kind):
    path, message = _bad_files(tmp_path)[kind]
    with pytest.raises(AnalysisError) as caught:
        decode(path)
    assert message in str(caught.value)
    assert str(caught.value).startswith(path.name)


@pytest.mark.parametrize("kind", ["empty", "truncated", "image", "text", "text_txt", "audio_only"])
def test_cli_prints_bad_file_errors_without_traceback(tmp_path, kind):
    path, message = _bad_files(tmp_path)[kind]
    run = run_cli("analyze", path, "--probe", "random@random-clip-vit-b16", "--out", tmp_path / "out")
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert f"error: {path.name}: " in run.stderr and message in run.stderr


def test_the_file_hash_is_remembered_but_follows_a_rewritten_file(tmp_path):
    path = tmp_path / "clip.bin"
    path.write_bytes(b"one")
    assert file_sha256(path) == hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"four")  # another size
    assert file_sha256(path) == hashlib.sha256(b"four").hexdigest()
    path.write_bytes(b"five")  # the same size, another modification time
    os.utime(path, ns=(10**18, 10**18))
    assert file_sha256(path) == hashlib.sha256(b"five").hexdigest()
