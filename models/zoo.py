"""The probe zoo: bundled probes (assets/probes), user-trained probes (the app home),
the released SSR-DFD probes (fetched from their public location, verified by SHA-256),
and untrained `random@ENCODER` heads for smoke tests."""
from __future__ import annotations

import json
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from models.cache import app_home, atomic_write
from models.encoders import get_spec, list_encoders
from models.errors import AnalysisError
from models.media import file_sha256
from models.probes import LinearProbe, load_lightning_checkpoint, load_probe_file, random_probe
from models.sync import SYNC_SCORER_ID

DEFAULT_PROBES = ("demo/audio-selfsplice", "demo/visual-selfblend")  # the offline probes the app and CLI start with
DEFAULT_SCORERS = (*DEFAULT_PROBES, SYNC_SCORER_ID)  # and the audio-visual sync scorer

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "assets" / "probes"
SSR_DFD_BASE = "https://github.com/bit-ml/ssr-dfd/raw/main/linear_probing/checkpoints"
SSR_DFD_CARD = {"source": "remote", "licence": "CC BY-NC-SA 4.0",
                "paper": "Boldisor et al., Investigating self-supervised representations for audio-visual "
                         "deepfake detection, arXiv 2511.17181 (CVPR 2026)"}


@dataclass(frozen=True)
class RemoteProbe:
    """A released probe: where it lives, its SHA-256, and the encoder it belongs to."""

    id: str
    url: str
    sha256: str
    encoder: str
    training_data: str

    @property
    def local_path(self) -> Path:
        return app_home() / "probes" / "ssr-dfd" / f"{self.id.split('/')[-1]}.ckpt"

    def card(self) -> dict:
        return {**SSR_DFD_CARD, "id": self.id, "encoder": self.encoder, "dim": get_spec(self.encoder).dim,
                "url": self.url, "sha256": self.sha256, "training_data": self.training_data}


REMOTE_PROBES = {probe.id: probe for probe in [
    RemoteProbe("ssr-dfd/wav2vec2", f"{SSR_DFD_BASE}/wav2vec2/model-epoch=48.ckpt",
                "8fe22ee83d529f6959be1c93b47ede7b3823d7b69fe43f9d39cba96a5c588119", "wav2vec2-xls-r-2b",
                "AV-Deepfake1M (SSR-DFD split)"),
    RemoteProbe("ssr-dfd/avh_multimodal", f"{SSR_DFD_BASE}/avh_multimodal/model-epoch=18.ckpt",
                "acbd82e9ae2731631e29dc59ca151681e7223ec8dc48cebad115c0d705a5f003", "avhubert-large-av",
                "AV-Deepfake1M (SSR-DFD split)"),
    RemoteProbe("ssr-dfd/braven_vsr", f"{SSR_DFD_BASE}/braven_vsr/model-epoch=37.ckpt",
                "aee6e9243e905b80393c5fb05304fc1f8c0586b7d51fde9c8659ae340ddd92af", "braven-large-v",
                "AV-Deepfake1M (SSR-DFD split)"),
]}


def user_probe_dir() -> Path:
    return app_home() / "probes" / "user"


def verify_sha256(path: Path, expected: str) -> None:
    actual = file_sha256(path)
    if actual != expected:
        raise AnalysisError(f"SHA-256 mismatch: expected {expected[:16]}…, got {actual[:16]}…; the file is "
                            "damaged or not the released one, so it was refused.", path=path,
                            hint="Download it again from its public location.")


def fetch_remote(probe_id: str, source: str | Path | None = None, progress=None) -> Path:
    """Put released probe `probe_id` in the local cache, from `source` (a local file) or by
    downloading it; either way it is verified by SHA-256 before it is kept."""
    remote = _remote(probe_id)
    if source is not None:
        source = Path(source)
        if not source.exists():
            raise AnalysisError("probe file not found.", path=source)
        verify_sha256(source, remote.sha256)
        atomic_write(remote.local_path, lambda tmp: shutil.copyfile(source, tmp))
        return remote.local_path
    if remote.local_path.exists():
        verify_sha256(remote.local_path, remote.sha256)
        return remote.local_path

    def download(tmp: Path) -> None:
        _download(remote.url, tmp, progress)
        verify_sha256(tmp, remote.sha256)

    atomic_write(remote.local_path, download)
    return remote.local_path


def _download(url: str, dest: Path, progress=None, timeout_s: float = 30.0) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=Path(url).name, disable=progress is not None) as bar:
                done = 0
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    done += len(chunk)
                    bar.update(len(chunk))
                    if progress and total:
                        progress(done / total)
    except OSError as error:
        raise AnalysisError(f"cannot download {url} ({error}).",
                            hint="Download it on a machine with internet and pass it with --from FILE.") from None


def _remote(probe_id: str) -> RemoteProbe:
    if probe_id not in REMOTE_PROBES:
        raise AnalysisError(f"{probe_id!r} is not a released probe.",
                            hint=f"Released probes: {', '.join(REMOTE_PROBES)}.")
    return REMOTE_PROBES[probe_id]


@dataclass(frozen=True)
class ProbeEntry:
    id: str
    encoder: str
    source: str  # bundled | user | remote | random
    available: bool  # usable now without a download
    card: dict

    @property
    def stand_in(self) -> bool:
        """True when the probe is no real-world detector: its encoder is a random-init, packaged
        or project stand-in, its head is untrained, or it was trained on synthetic data."""
        return get_spec(self.encoder).source in ("random", "project", "package") or bool(
            self.card.get("synthetic")) or self.source == "random"


def _card_probes(folder: Path, source: str) -> list[ProbeEntry]:
    entries = []
    for card_path in sorted(folder.glob("*.json")) if folder.exists() else []:
        try:
            card = json.loads(card_path.read_text())
            entries.append(ProbeEntry(card["id"], card["encoder"], source,
                                      card_path.with_suffix(".safetensors").exists(),
                                      {**card, "path": str(card_path)}))
        except (ValueError, KeyError, TypeError):
            continue  # a broken card is reported when loaded by path, not listed
    return entries


def list_probes(include_random: bool = False) -> list[ProbeEntry]:
    """Every probe the app knows: bundled, user-trained, released (and random heads)."""
    entries = _card_probes(BUNDLED_DIR, "bundled") + _card_probes(user_probe_dir(), "user")
    entries += [ProbeEntry(r.id, r.encoder, "remote", r.local_path.exists(), r.card()) for r in REMOTE_PROBES.values()]
    if include_random:
        entries += [ProbeEntry(f"random@{e}", e, "random", True, random_probe(e).card) for e in list_encoders()]
    return entries


def load_probe(probe_id: str) -> LinearProbe:
    """Resolve a probe id (or a path to a card / checkpoint) to a LinearProbe."""
    if probe_id.startswith("random@"):
        return random_probe(probe_id.removeprefix("random@"))
    if probe_id in REMOTE_PROBES:
        remote = REMOTE_PROBES[probe_id]
        if not remote.local_path.exists():
            raise AnalysisError(f"released probe {probe_id} is not downloaded yet.",
                                hint=f"Run `python cli.py probes fetch {probe_id}` (online) or "
                                     f"`python cli.py probes fetch {probe_id} --from FILE`.")
        verify_sha256(remote.local_path, remote.sha256)
        return load_lightning_checkpoint(remote.local_path, remote.card())
    for entry in _card_probes(BUNDLED_DIR, "bundled") + _card_probes(user_probe_dir(), "user"):
        if entry.id == probe_id:
            return load_probe_file(entry.card["path"])
    path = Path(probe_id)
    if path.suffix in (".json", ".safetensors") and path.exists():
        return load_probe_file(path)
    known = ", ".join(entry.id for entry in list_probes())
    raise AnalysisError(f"unknown probe {probe_id!r}.",
                        hint=f"Known probes: {known}; or random@ENCODER, or a path to NAME.json.")


def usable_probes() -> list[ProbeEntry]:
    """Probes that run here now: downloaded or bundled ones, and random heads over the
    offline (random-init) encoders."""
    return [entry for entry in list_probes(include_random=True)
            if entry.available and (entry.source != "random" or get_spec(entry.encoder).source == "random")]


def describe_probe(entry: ProbeEntry) -> str:
    """One line for a probe picker: id, modality, encoder, and whether it is a stand-in."""
    spec = get_spec(entry.encoder)
    notes = []
    if spec.source == "random":
        notes.append("random-init encoder (offline stand-in)")
    if entry.source == "random":
        notes.append("untrained head")
    if entry.card.get("real_model"):
        notes.append("plus a next-step model of real clips")
    if entry.card.get("synthetic"):
        notes.append("trained on synthetic data")
    suffix = f" — {', '.join(notes)}" if notes else ""
    return f"[{spec.modality}] {entry.id} · {spec.id}{suffix}"
