"""On-disk caches: the app's home folder, atomic writes, and the feature cache keyed by
(file SHA-256, encoder id, preprocessing version)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

HOME_ENV = "AVXPLAIN_HOME"


def app_home() -> Path:
    """Where caches and user probes live: $AVXPLAIN_HOME or ~/.cache/avxplain."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "avxplain")


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Write through a temporary file in the same folder, then rename: readers never see a
    half-written file and a crash leaves the old one intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class FeatureCache:
    """Features as .npy files under ROOT/SHA[:2]/SHA/ENCODER/VERSION.npy (no pickle)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else app_home() / "features"

    def path(self, sha256: str, encoder_id: str, version: str) -> Path:
        return self.root / sha256[:2] / sha256 / encoder_id / f"{version}.npy"

    def get(self, sha256: str, encoder_id: str, version: str) -> np.ndarray | None:
        path = self.path(sha256, encoder_id, version)
        if not path.exists():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError):
            path.unlink(missing_ok=True)  # a damaged entry is recomputed, not trusted
            return None

    def put(self, sha256: str, encoder_id: str, version: str, features: np.ndarray) -> Path:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.save(handle, np.ascontiguousarray(features, np.float32))
        return atomic_write(self.path(sha256, encoder_id, version), write)
