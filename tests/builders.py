"""Small labelled datasets written in the real formats, with known audio manipulations:
a fake clip has one segment re-voiced (another pitch, timbre and syllable rate); and tiny
random-init encoders of every face-crop family, for the explanation tests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.encoders import EncoderSpec
from models.media import write_test_clip
from models.timing import SAMPLE_RATE

TINY_VIT = {"patch_size": 32, "embed_dim": 32, "depth": 2, "num_heads": 2}
TINY_CLIP = {"embed_dim": 24, "vision_cfg": {"image_size": 224, "layers": 2, "width": 32, "patch_size": 32,
                                             "head_width": 16},
             "text_cfg": {"context_length": 16, "vocab_size": 100, "width": 16, "heads": 2, "layers": 1}}


def register_tiny_face_encoders(register, folder: Path) -> list[str]:
    """Register tiny random-init ViTs of both families (timm FSFM, open_clip CLIP) through the
    `register` fixture (open_clip's config written to `folder`); returns their ids and the
    project CNN's random twin: one encoder of every face-crop family."""
    import open_clip  # lazy: about 2 s to import, only the explanation tests need it

    (folder / "tiny-clip-spatial.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder)
    register(EncoderSpec("tiny-fsfm-spatial", "fsfm", "face", "random", 32, None, TINY_VIT, seed=1))
    register(EncoderSpec("tiny-clip-spatial", "clip", "face", "random", 24, None,
                         {"model_name": "tiny-clip-spatial"}, seed=1))
    return ["tiny-fsfm-spatial", "tiny-clip-spatial", "random-selfblend-cnn"]


def voice(duration_s: float, pitch: float, rate_hz: float, decay: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(pitch * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t + seed))) / SAMPLE_RATE
    harmonic = sum(np.sin(k * phase) / k ** decay for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * rate_hz * t + seed), 0, None) ** 2
    return (0.25 * envelope * harmonic + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def write_clip(path: Path, seed: int, fake_segment: tuple[float, float] | None, duration_s: float = 2.0) -> Path:
    rng = np.random.default_rng(seed)
    audio = voice(duration_s, rng.uniform(110, 160), rng.uniform(3.5, 4.5), 1.0, seed)
    if fake_segment is not None:  # re-voiced: a higher, breathier voice at another syllable rate
        start, end = (int(v * SAMPLE_RATE) for v in fake_segment)
        other = voice(duration_s, rng.uniform(220, 280), rng.uniform(6, 7), 2.0, seed + 1)
        breath = np.random.default_rng(seed + 2).standard_normal(len(other)).astype(np.float32)
        audio[start:end] = (other + 0.05 * breath * (np.abs(other) > 0.02))[start:end]
    steps = int(duration_s * 25)
    base = rng.integers(40, 200, 3)
    frames = np.broadcast_to(base.astype(np.uint8), (steps, 48, 64, 3)).copy()
    return write_test_clip(path, frames, audio=audio)


def write_av1m_dataset(root: Path, per_split: dict[str, int], seed: int = 0, name: str = "toy") -> Path:
    """Clips and AV-Deepfake1M metadata per split (half real, half audio-fake), plus a
    dataset description; returns the description's path."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = {}
    for split_index, (split, count) in enumerate(per_split.items()):
        records = []
        (root / split).mkdir(exist_ok=True)
        for index in range(count):
            fake = index % 2 == 1
            start = round(float(rng.uniform(0.3, 1.1)), 2)
            segment = (start, round(start + 0.6, 2)) if fake else None
            clip_seed = seed * 10_000 + split_index * 1000 + index
            write_clip(root / split / f"{index:04d}.mp4", clip_seed, segment)
            records.append({"file": f"{split}/{index:04d}.mp4", "original": None, "split": split,
                            "modify_type": "audio_modified" if fake else "real",
                            "fake_segments": [list(segment)] if fake else [],
                            "audio_fake_segments": [list(segment)] if fake else [], "visual_fake_segments": [],
                            "video_frames": 50, "audio_frames": 32000})
        (root / f"{split}_metadata.json").write_text(json.dumps(records))
        splits[split] = f"{split}_metadata.json"
    description = root / "dataset.json"
    description.write_text(json.dumps({"name": name, "format": "av1m", "root": ".", "splits": splits}))
    return description


def native_and_file_routes(template_id: str, family: str, modality: str, checkpoint: Path, clip_path: Path,
                           folder: Path):
    """A tiny 32-wide registry entry of a checkpoint family (AV-HuBERT, BRAVEn) run on a real
    clip both ways: natively from `checkpoint` (fp32, and bf16 within a tenth of the largest
    value), and from those features saved as a file, which must come back unchanged (the
    released probes then see identical inputs either way). Returns the bf16 encoder."""
    from dataclasses import replace

    from models.encoders import ClipInputs, create_encoder, get_spec, register_encoder, unregister_encoder
    from models.faces import track_faces
    from models.media import decode

    spec = register_encoder(replace(get_spec(template_id), id=f"tiny-{family}", family=family, modality=modality,
                                    dim=32))
    try:
        clip = decode(clip_path)
        inputs = ClipInputs(clip, track_faces(clip.frames))
        native = create_encoder(spec.id, str(checkpoint), "fp32").encode(inputs)
        assert native.shape == (clip.n_steps, 32) and np.isfinite(native).all()
        in_bf16 = create_encoder(spec.id, str(checkpoint), "bf16")
        assert np.abs(in_bf16.encode(inputs) - native).max() < 0.1 * np.abs(native).max()
        np.save(folder / "features.npy", native)
        from_file = create_encoder(spec.id).encode(ClipInputs(clip, None, {spec.id: str(folder / "features.npy")}))
        assert np.array_equal(from_file, native)
        return in_bf16
    finally:
        unregister_encoder(spec.id)
