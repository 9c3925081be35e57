"""Self-supervised pretext training of the project's own encoders (models/encoders/project.py).

Both tasks use real material only and make their own labels; neither sees a manipulated
clip of the synthetic benchmark nor any held-out face or voice.

- Self-blended faces (after Shiohara & Yamasaki, CVPR 2022): a real face crop is blended,
  inside a random feathered ellipse anywhere on the crop, with a copy of itself that was
  re-rendered (down- and up-sampled, colour-shifted, JPEG-compressed, shifted by a few
  pixels). The CNN learns, per cell of its last map, whether the cell was blended. Unblended crops
  get the same global degradations, so only local inconsistency is informative.
- Spliced speech (recording consistency): an utterance has a random segment replaced by a
  piece of another real recording of the pool (another of 600 espeak-ng voices: every
  English accent × voice variant except the held-out ones), or by its own voice
  re-synthesised at another pitch and speed, with a short or no cross-fade. The conv + GRU
  learns, per 25 Hz step, whether the step belongs to the recording around it. This is
  close to the benchmark's audio manipulation (a splice of another voice), so benchmark
  figures measure the pipeline, not how well this transfers to real deepfakes.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import cv2
import librosa
import numpy as np
import torch
from safetensors.torch import save_file
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import nn

from models.encoders import get_spec
from models.encoders.base import ClipInputs, EncoderSpec
from models.encoders.project import BlendCNN, SpliceNet, crop_pixels, load_project_weights, splice_net_input
from models.errors import AnalysisError
from models.faces import track_faces
from models.media import decode, file_sha256
from models.timing import SAMPLE_RATE, STEP_RATE, step_centre
from research.datasets import load_dataset_spec
from research.generator import HELDOUT_VOICES, WORDS, pretraining_voices, speech
from research.sources import load_audio, manifest, sources

Progress = Callable[[int, int, float], None] | None  # (step, total, loss)
SPLICES_PER_UTTERANCE = 3  # training variants drawn from each utterance
RECORDED_SHARE = 4  # one recorded piece for every 4 espeak utterances
PRETEXTS = {
    "selfblend": "self-blended faces: real face crops blended inside a random feathered ellipse with a re-rendered "
                 "copy of themselves (resampled, colour-shifted, JPEG, shifted); per-cell target on the last map",
    "selfsplice": "spliced speech: a segment of a real utterance replaced by a piece of another real recording "
                  "(70 %, any voice of the pretraining pool) or by the same voice at another pitch and speed "
                  "(30 %, half the time formant-shifted by resampling); per-25 Hz-step target",
}


@dataclass
class PretextConfig:
    steps: int = 1500
    batch_size: int = 32
    lr: float = 5e-4
    seed: int = 7
    blended_share: float = 0.6  # share of each batch that is blended / spliced
    init: str | None = None  # continue from these weights (a project encoder's safetensors) instead of from scratch

    def to_dict(self) -> dict:
        return asdict(self)


# -- material --------------------------------------------------------------------------------

def real_face_crops(data: str, split: str, every: int = 3) -> np.ndarray:
    """Face crops (N, 224, 224, 3) of every `every`-th step that is not visually manipulated,
    from the videos of one split of a dataset description."""
    records = load_dataset_spec(data).read(split)
    crops = []
    for record in records:
        clip = decode(record.path)
        inputs = ClipInputs(clip, track_faces(clip.frames, stride=2))
        fake = record.visual_fake_segments or []
        keep = [t for t in range(0, clip.n_steps, every)
                if not any(start <= step_centre(t) < end for start, end in fake)]
        crops.append(inputs.face_crops[keep])
    if not crops:
        raise AnalysisError(f"no videos in split {split!r} to take face crops from.", path=data)
    return np.concatenate(crops)


def real_utterances(n: int, seed: int, voices: tuple[str, ...]) -> list[tuple[np.ndarray, str, int, int]]:
    """`n` utterances (audio, voice, speed, pitch) of the given voices, with the generator's
    leading and trailing silence."""
    rng = np.random.default_rng(seed)
    out = []
    for index in range(n):
        voice, speed, pitch = str(rng.choice(voices)), int(rng.integers(140, 175)), int(rng.integers(35, 70))
        audio = speech(" ".join(rng.choice(WORDS, size=int(rng.integers(7, 10)))), voice, speed, pitch,
                       seed * 1000 + index)
        lead = np.zeros(int(rng.uniform(0.1, 0.5) * SAMPLE_RATE), np.float32)
        out.append((np.concatenate([lead, audio, np.zeros(int(0.3 * SAMPLE_RATE), np.float32)]), voice, speed,
                    pitch))
    return out


def recorded_utterances(n: int, seed: int) -> list[tuple[np.ndarray, None, int, int]]:
    """`n` pieces (2.5–5 s) of the real speech recordings of the training split, each at a
    random level, half of them over a noise or music bed, with the generator's silences: real
    human voices in the pool, so a real recording is not new to the encoder."""
    rng = np.random.default_rng(seed)
    recordings = [load_audio(s.id) for s in sources("speech", "train")]
    music = [load_audio(s.id) for s in sources("music", "train")]
    out = []
    for _ in range(n):
        recording = recordings[int(rng.integers(len(recordings)))]
        length = min(len(recording), int(rng.uniform(2.5, 5.0) * SAMPLE_RATE))
        start = int(rng.integers(0, len(recording) - length + 1))
        piece = recording[start:start + length] * rng.uniform(0.5, 1.5)
        if rng.random() < 0.5:
            bed = rng.standard_normal(length) if rng.random() < 0.5 else np.resize(music[int(rng.integers(len(music)))],
                                                                                 length)
            level = np.sqrt((piece ** 2).mean()) * 10 ** (-rng.uniform(15, 25) / 20)
            piece = piece + level * bed / (np.sqrt((bed ** 2).mean()) + 1e-9)
        lead = np.zeros(int(rng.uniform(0.1, 0.5) * SAMPLE_RATE), np.float32)
        out.append((np.concatenate([lead, piece.astype(np.float32), np.zeros(int(0.3 * SAMPLE_RATE), np.float32)]),
                    None, 0, 0))
    return out


# -- the two pretext transformations ---------------------------------------------------------

def rerender(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What swap pipelines do to pasted pixels: at least one of resampling, colour shift, JPEG."""
    out = image
    ops = rng.random(3) < (0.7, 0.6, 0.6)
    if not ops.any():
        ops[int(rng.integers(3))] = True
    if ops[0]:
        factor = rng.uniform(1.8, 4.0)
        small = cv2.resize(out, (max(8, int(out.shape[1] / factor)), max(8, int(out.shape[0] / factor))),
                           interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    if ops[1]:
        shift = rng.uniform(-35, 35, 3)
        shift[int(rng.integers(3))] = rng.choice([-1, 1]) * rng.uniform(10, 35)
        out = np.clip(out.astype(np.float32) + shift, 0, 255).astype(np.uint8)
    if ops[2]:
        out = jpeg(out, int(rng.integers(12, 60)))
    return out


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]


def self_blend(crop: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The crop blended with a re-rendered copy of itself inside a random feathered ellipse;
    returns the image and the blend weight map (H × W, 0..1)."""
    height, width = crop.shape[:2]
    source = rerender(crop, rng)
    dx, dy = rng.integers(-3, 4, 2)
    source = cv2.warpAffine(source, np.float32([[1, 0, dx], [0, 1, dy]]), (width, height),
                            borderMode=cv2.BORDER_REFLECT)
    mask = np.zeros((height, width), np.float32)
    centre = (int(rng.uniform(0.2, 0.8) * width), int(rng.uniform(0.2, 0.85) * height))
    axes = (int(rng.uniform(0.08, 0.3) * width), int(rng.uniform(0.06, 0.25) * height))
    cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), rng.uniform(0.01, 0.05) * width) * rng.uniform(0.75, 1.0)
    blended = crop.astype(np.float32) * (1 - mask[..., None]) + source.astype(np.float32) * mask[..., None]
    return np.clip(blended, 0, 255).astype(np.uint8), mask


def degrade_globally(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Whole-crop degradations shared by blended and unblended crops, so they carry no label."""
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = np.clip(crop.astype(np.float32) * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20), 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        crop = jpeg(crop, int(rng.integers(30, 90)))
    return np.ascontiguousarray(crop)


def recompress(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What the video codec does to every crop afterwards: sometimes a mild blur, often JPEG."""
    if rng.random() < 0.3:
        crop = cv2.GaussianBlur(crop, (0, 0), rng.uniform(0.3, 1.0))
    if rng.random() < 0.5:
        crop = jpeg(crop, int(rng.integers(50, 95)))
    return np.ascontiguousarray(crop)


def token_labels(masks: np.ndarray, grid: int, threshold: float = 0.3) -> np.ndarray:
    """(N, H, W) blend weights → (N, grid²) 0/1 patch labels (mean weight above threshold)."""
    n, height, width = masks.shape
    pooled = masks.reshape(n, grid, height // grid, grid, width // grid).mean((2, 4))
    return (pooled > threshold).reshape(n, grid * grid).astype(np.float32)


def self_splice(utterance: tuple[np.ndarray, str, int, int], rng: np.random.Generator, seed: int,
                pool: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The utterance with a random segment replaced by a piece of another real recording
    (from `pool`, any voice of the pretraining pool) or by the same voice re-synthesised at another
    pitch and speed (sometimes formant-shifted); returns audio and the per-step 0/1 labels."""
    audio = utterance[0]
    n_steps = len(audio) * STEP_RATE // SAMPLE_RATE
    length = int(rng.uniform(0.4, 1.2) * SAMPLE_RATE)
    start = int(rng.uniform(0.3 * SAMPLE_RATE, max(0.31 * SAMPLE_RATE, len(audio) - length - 0.3 * SAMPLE_RATE)))
    if pool and rng.random() < 0.7:
        other = pool[int(rng.integers(len(pool)))][0]
        offset = int(rng.integers(0, max(1, len(other) - length)))
        other = other[offset:offset + length]
    else:
        other = resynthesised(utterance, rng, seed)
    other = np.pad(other, (0, max(0, length - len(other))))[:length] * rng.uniform(0.6, 1.5)
    fade = np.linspace(0, 1, int(rng.integers(1, 320)))
    piece = other.astype(np.float32)
    piece[: len(fade)] = other[: len(fade)] * fade + audio[start:start + len(fade)] * (1 - fade)
    out = audio.copy()
    out[start:start + length] = piece[: len(out) - start]
    centres = (np.arange(n_steps) + 0.5) * SAMPLE_RATE / STEP_RATE
    labels = ((centres >= start) & (centres < start + length)).astype(np.float32)
    return out, labels


def resynthesised(utterance: tuple[np.ndarray, str | None, int, int], rng: np.random.Generator,
                  seed: int) -> np.ndarray:
    """New words in the utterance's voice at another pitch and speed, half the time
    formant-shifted; for a recording (no espeak voice), the recording itself played at
    another pitch and speed."""
    audio, voice, speed, pitch = utterance
    if voice is None:
        rate = float(rng.uniform(0.8, 1.25))
        other = librosa.effects.pitch_shift(audio, sr=SAMPLE_RATE, n_steps=float(rng.choice([-1, 1]) * rng.uniform(2, 6)))
        return librosa.effects.time_stretch(other, rate=rate)
    new_pitch = int(np.clip(pitch + rng.choice([-1, 1]) * rng.integers(6, 30), 0, 99))
    new_speed = int(np.clip(speed + rng.choice([-1, 1]) * rng.integers(8, 40), 90, 260))
    other = speech(" ".join(rng.choice(WORDS, size=8)), voice, new_speed, new_pitch, seed)
    if rng.random() < 0.5:
        other = librosa.resample(other, orig_sr=SAMPLE_RATE, target_sr=int(SAMPLE_RATE * rng.uniform(0.85, 1.18)))
    return other


# -- training --------------------------------------------------------------------------------

def initial_network(network: nn.Module, spec: EncoderSpec, config: PretextConfig) -> nn.Module:
    """The network to train: as initialised, or with `config.init`'s weights (checked against
    their card) to continue an earlier pretraining on new material."""
    if config.init:
        load_project_weights(network, spec, config.init)
    return network


def pretrain_selfblend(spec: EncoderSpec, train_crops: np.ndarray, val_crops: np.ndarray,
                       config: PretextConfig, progress: Progress = None) -> tuple[nn.Module, dict]:
    """Train the CNN and a per-cell head (1×1 conv on its last map) on self-blended crops;
    returns the CNN and metrics."""
    torch.manual_seed(config.seed)  # before the layers are built: their initial weights follow the seed
    network = initial_network(BlendCNN(tuple(spec.arch["widths"])), spec, config)
    head = nn.Conv2d(spec.arch["widths"][-1], 1, 1)
    size = spec.arch["input_size"]
    grid = size // 8  # three stride-2 stages
    rng = np.random.default_rng(config.seed)

    def cell_logits(images: np.ndarray) -> torch.Tensor:
        return head(network.feature_map(crop_pixels(images, size))).flatten(1)

    def batch(crops: np.ndarray, count: int, generator: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        images, masks = [], []
        for index in generator.integers(len(crops), size=count):
            crop = degrade_globally(crops[index], generator)
            if generator.random() < config.blended_share:
                crop, mask = self_blend(crop, generator)
            else:
                mask = np.zeros(crop.shape[:2], np.float32)
            images.append(recompress(crop, generator))
            masks.append(mask)
        return np.stack(images), token_labels(np.stack(masks), grid)

    def batch_loss() -> torch.Tensor:
        images, labels = batch(train_crops, config.batch_size, rng)
        return nn.functional.binary_cross_entropy_with_logits(cell_logits(images), torch.from_numpy(labels))

    started = time.time()
    history = optimise(network, head, batch_loss, config, progress)
    val_images, val_labels = batch(val_crops, 256, np.random.default_rng(config.seed + 1))
    with torch.no_grad():
        scores = torch.cat([cell_logits(val_images[i:i + 32]) for i in range(0, len(val_images), 32)]).numpy()
    metrics = pretext_metrics(val_labels, scores, time.time() - started, history)
    return network, metrics


def pretrain_selfsplice(spec: EncoderSpec, train_utterances: list, val_utterances: list,
                        config: PretextConfig, progress: Progress = None) -> tuple[nn.Module, dict]:
    """Train the conv + GRU and a per-step head on self-spliced utterances."""
    torch.manual_seed(config.seed)  # before the layers are built: their initial weights follow the seed
    network = initial_network(SpliceNet(**spec.arch), spec, config)
    head = nn.Linear(2 * spec.arch["hidden"], 1)
    rng = np.random.default_rng(config.seed)
    started = time.time()
    train = [example(u, rng, config, config.seed * 10_000 + SPLICES_PER_UTTERANCE * i + k, train_utterances)
             for i, u in enumerate(train_utterances) for k in range(SPLICES_PER_UTTERANCE)]
    val_rng = np.random.default_rng(config.seed + 1)
    val = [example(u, val_rng, config, config.seed * 20_000 + i, val_utterances) for i, u in enumerate(val_utterances)]

    def batch_loss() -> torch.Tensor:
        mels, labels, valid = padded_batch([train[i] for i in rng.integers(len(train), size=config.batch_size)])
        logits = head(network(mels)).squeeze(-1)[:, :labels.shape[1]]
        return (nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none") * valid).sum() \
            / valid.sum()

    history = optimise(network, head, batch_loss, config, progress, clip_norm=5.0)
    with torch.no_grad():
        scores = np.concatenate([head(network(torch.from_numpy(mel)[None]))[0, :len(y), 0].numpy() for mel, y in val])
    metrics = pretext_metrics(np.concatenate([y for _, y in val]), scores, time.time() - started, history)
    return network, metrics


def optimise(network: nn.Module, head: nn.Module, batch_loss: Callable[[], torch.Tensor], config: PretextConfig,
             progress: Progress = None, clip_norm: float | None = None) -> list[float]:
    """The pretext training loop both encoders share: AdamW (weight decay 0.01) on the
    network and its head, warm-up + cosine schedule, optional gradient clipping of the
    network; leaves the network in eval mode and returns the loss history."""
    optimiser = torch.optim.AdamW(list(network.parameters()) + list(head.parameters()), lr=config.lr,
                                  weight_decay=0.01)
    schedule = warmup_cosine(optimiser, config.steps)
    history: list[float] = []
    network.train()
    for step in range(config.steps):
        loss = batch_loss()
        optimiser.zero_grad()
        loss.backward()
        if clip_norm is not None:
            nn.utils.clip_grad_norm_(network.parameters(), clip_norm)
        optimiser.step()
        schedule.step()
        history.append(loss.item())
        if progress:
            progress(step + 1, config.steps, float(np.mean(history[-50:])))
    network.eval()
    return history


def warmup_cosine(optimiser: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first tenth of training, then cosine decay to zero."""
    warmup = max(1, steps // 10)
    return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (
        1 + np.cos(np.pi * min(1.0, max(0, step - warmup) / max(1, steps - warmup)))))


def padded_batch(examples: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack variable-length (mel, labels) pairs: mels padded with silence (-1), labels
    with zeros, and a 0/1 mask of the real steps."""
    frames = max(mel.shape[1] for mel, _ in examples)
    steps = max(len(y) for _, y in examples)
    mels = np.full((len(examples), examples[0][0].shape[0], frames), -1.0, np.float32)
    labels = np.zeros((len(examples), steps), np.float32)
    valid = np.zeros_like(labels)
    for row, (mel, y) in enumerate(examples):
        mels[row, :, :mel.shape[1]] = mel
        labels[row, :len(y)] = y
        valid[row, :len(y)] = 1
    return torch.from_numpy(mels), torch.from_numpy(labels), torch.from_numpy(valid)


def example(utterance: tuple, rng: np.random.Generator, config: PretextConfig, seed: int, pool: list) -> tuple:
    """(normalised log-mel, per-step labels) of one utterance, spliced (from `pool` or
    re-synthesised) or left real."""
    if rng.random() < config.blended_share:
        audio, labels = self_splice(utterance, rng, seed, [u for u in pool if u is not utterance])
    else:
        audio = utterance[0]
        labels = np.zeros(len(audio) * STEP_RATE // SAMPLE_RATE, np.float32)
    mel = splice_net_input(audio)
    return mel, labels[: (mel.shape[1] + 3) // 4]


def pretext_metrics(labels: np.ndarray, scores: np.ndarray, seconds: float, history: list[float]) -> dict:
    labels, scores = labels.ravel(), scores.ravel()
    both = 0 < labels.sum() < len(labels)
    return {"val_token_auc": round(float(roc_auc_score(labels, scores)), 4) if both else None,
            "val_token_ap": round(float(average_precision_score(labels, scores)), 4) if both else None,
            "final_train_loss": round(float(np.mean(history[-50:])), 4), "train_seconds": round(seconds, 1)}


# -- saving and the one entry point ----------------------------------------------------------

def save_project_encoder(network: nn.Module, spec: EncoderSpec, out_dir: str | Path, card: dict) -> Path:
    """Write `{id}.safetensors` (fp16) and `{id}.json` (card with SHA-256) into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{spec.id}.safetensors"
    save_file({k: v.detach().to(torch.float16).contiguous() for k, v in network.state_dict().items()}, str(weights))
    card = {"id": spec.id, "family": spec.family, "arch": spec.arch, "dim": spec.dim, "licence": spec.licence,
            **card, "sha256": file_sha256(weights)}
    path = weights.with_suffix(".json")
    path.write_text(json.dumps(card, indent=1))
    return path


def pretrain(encoder_id: str, data: str, out_dir: str | Path, config: PretextConfig = PretextConfig(),
             utterances: int = 600, progress: Progress = None) -> Path:
    """Pretrain project encoder `encoder_id` on the real material of dataset `data` (faces)
    or on fresh utterances of the wide pretraining voice pool (speech); write it to out_dir."""
    spec = get_spec(encoder_id)
    if spec.source != "project":
        raise AnalysisError(f"{encoder_id} is not one of this project's own encoders.",
                            hint="Pretrain selfblend-cnn or selfsplice-gru.")
    if spec.family == "selfblend":
        train, val = real_face_crops(data, "train"), real_face_crops(data, "val", every=9)
        network, metrics = pretrain_selfblend(spec, train, val, config, progress)
        material = {"dataset": str(data), "face_crops": {"train": len(train), "val": len(val)},
                    "what": "real (not visually manipulated) steps of the generator's training identities"}
    else:
        voices = pretraining_voices()
        recorded = recorded_utterances(utterances // RECORDED_SHARE, config.seed + 2)
        train = real_utterances(utterances, config.seed, voices) + recorded
        val = real_utterances(max(20, utterances // 10), config.seed + 1, voices)
        network, metrics = pretrain_selfsplice(spec, train, val, config, progress)
        used = [s.id for s in sources("speech", "train") + sources("music", "train")]
        material = {"utterances": {"train": len(train), "val": len(val), "recorded": len(recorded)},
                    "voices": len(voices),
                    "what": f"espeak-ng speech of {len(voices)} voices: every English accent with every voice "
                            f"variant, except the held-out ones ({', '.join(HELDOUT_VOICES)}): no held-out accent "
                            "or variant is heard in pretraining; and pieces of the training split's real speech "
                            "recordings (over noise or music half the time); no held-out speaker is heard",
                    "sources": manifest(used)}
    card = {"pretext": PRETEXTS[spec.family], "material": material, "config": config.to_dict(),
            "continued_from": {"weights": Path(config.init).name, "sha256": file_sha256(config.init)}
            if config.init else None,
            "metrics": metrics, "synthetic": True,
            "warning": "trained on synthetic material; knowledge of blending and splicing artefacts only, "
                       "not a real-world detector"}
    return save_project_encoder(network, spec, out_dir, card)
