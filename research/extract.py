"""Feature extraction over a dataset into the feature cache: resumable, failures recorded
with their reason, in-process or as one Ray task per file (the same function either way).

Each file is encoded with `threads` torch threads (default 1, in-process and per Ray
task alike): float results depend on the thread count in their last bits, so equal
thread counts give byte-identical cache entries.

On a cluster, the cache folder must be on storage every node sees; the driver's encoder
registry entries travel with each task, so plug-in encoders work on workers too.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from models.analysis import AnalysisOptions, extract_features
from models.cache import FeatureCache
from models.encoders import get_spec, register_encoder
from models.encoders.base import EncoderSpec
from models.encoders.external import load_feature_file
from models.errors import AnalysisError
from models.media import file_sha256
from models.settings import Settings
from research.datasets import Record

RESEARCH_SETTINGS = Settings(precision="fp32")  # research caches are fp32 on every CPU: same features anywhere


@dataclass
class ExtractionReport:
    done: list[str] = field(default_factory=list)  # paths whose features are now cached
    cached: list[str] = field(default_factory=list)  # paths that were already cached (resumed)
    failed: dict[str, str] = field(default_factory=dict)  # path → reason

    def to_dict(self) -> dict:
        return {"done": len(self.done), "already_cached": len(self.cached), "failed": self.failed}


@dataclass(frozen=True)
class ExtractionJob:
    """Everything a worker needs, picklable."""

    encoder_specs: tuple[EncoderSpec, ...]
    cache_root: str
    settings: Settings = RESEARCH_SETTINGS
    threads: int = 1

    def options(self) -> AnalysisOptions:
        return AnalysisOptions(settings=self.settings, cache=FeatureCache(self.cache_root))


def extract_one(path: str, job: ExtractionJob) -> tuple[str, str, str]:
    """Cache the features of one file; returns (path, "done" | "skipped" | "failed", reason).
    Runs unchanged in-process and inside a Ray task."""
    torch.set_num_threads(job.threads)
    for spec in job.encoder_specs:
        if _registry_differs(spec):
            register_encoder(spec)
    try:
        extracted = extract_features(path, [s.id for s in job.encoder_specs], job.options())
    except AnalysisError as error:
        return path, "failed", str(error)
    except Exception as error:  # noqa: BLE001 - one bad file must not stop a dataset run
        return path, "failed", f"{type(error).__name__}: {error}"
    if extracted.skipped:
        return path, "skipped", "; ".join(f"{e}: {why}" for e, why in extracted.skipped.items())
    return path, "done", ""


def _registry_differs(spec: EncoderSpec) -> bool:
    try:
        return get_spec(spec.id) != spec
    except AnalysisError:
        return True


def is_cached(path: str, job: ExtractionJob, sha_index: "ShaIndex") -> bool:
    sha = sha_index.sha256(path)
    if sha is None:
        return False
    cache = FeatureCache(job.cache_root)
    return all(cache.path(sha, spec.id, job.settings.cache_key(spec)).exists()
               for spec in job.encoder_specs)


class ShaIndex:
    """SHA-256 of dataset files, remembered by (path, size, mtime) so large datasets are
    hashed once."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, str] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    item = json.loads(line)
                    self.entries[item["key"]] = item["sha256"]
                except (ValueError, KeyError):
                    continue

    @classmethod
    def for_cache(cls, cache: FeatureCache) -> "ShaIndex":
        """The index kept beside a feature cache."""
        return cls(cache.root / "sha_index.jsonl")

    @staticmethod
    def _key(path: str) -> str | None:
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}"

    def sha256(self, path: str) -> str | None:
        key = self._key(path)
        if key is None:
            return None
        if key not in self.entries:
            self.entries[key] = file_sha256(path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as handle:
                handle.write(json.dumps({"key": key, "sha256": self.entries[key]}) + "\n")
        return self.entries[key]


def extract_dataset(records: list[Record], encoder_ids: list[str], cache: FeatureCache | None = None,
                    settings: Settings = RESEARCH_SETTINGS, ray_address: str | None = None,
                    use_ray: bool = False, threads: int = 1,
                    progress: Callable[[int, int], None] | None = None,
                    sha_index: ShaIndex | None = None) -> ExtractionReport:
    """Cache features of every record for every encoder; files already cached are skipped
    (resume), files that fail are reported with their reason and the rest go on."""
    cache = cache or FeatureCache()
    job = ExtractionJob(tuple(get_spec(e) for e in dict.fromkeys(encoder_ids)), str(cache.root), settings, threads)
    report = ExtractionReport()
    sha_index = sha_index or ShaIndex.for_cache(cache)
    pending = []
    for record in records:
        (report.cached if is_cached(record.path, job, sha_index) else pending).append(record.path)
    outcomes = (_run_ray(pending, job, ray_address) if (use_ray or ray_address)
                else (extract_one(path, job) for path in pending))
    for index, (path, status, reason) in enumerate(outcomes):
        if status == "done":
            report.done.append(path)
        else:
            report.failed[path] = reason
        if progress:
            progress(index + 1, len(pending))
    return report


def _run_ray(paths: list[str], job: ExtractionJob, address: str | None):
    """One Ray task per file, results yielded as they finish."""
    try:
        import ray  # lazy: an optional dependency, for --ray only
    except ImportError:
        raise AnalysisError("Ray is not installed.", hint="pip install 'ray==2.60.0' to use --ray.") from None
    started_here = not ray.is_initialized()
    if started_here:
        root = str(Path(__file__).resolve().parents[1])
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": root, **_forwarded_env()}})
    task = ray.remote(num_cpus=job.threads)(extract_one)
    try:
        remaining = [task.remote(path, job) for path in paths]
        while remaining:
            finished, remaining = ray.wait(remaining, num_returns=1)
            yield ray.get(finished[0])
    finally:
        if started_here:
            ray.shutdown()


def _forwarded_env() -> dict[str, str]:
    names = ("HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "AVXPLAIN_HOME")
    return {name: os.environ[name] for name in names if name in os.environ}


def load_record_features(record: Record, encoder_id: str, cache: FeatureCache | None = None,
                         settings: Settings = RESEARCH_SETTINGS,
                         features_root: Path | None = None, sha_index: ShaIndex | None = None) -> np.ndarray | None:
    """A record's features: from a precomputed-features folder when the dataset has one,
    else from the cache (None when not extracted yet)."""
    spec = get_spec(encoder_id)
    if features_root is not None:
        stem = features_root / Path(record.relative).with_suffix("")
        for candidate in (stem.with_suffix(".npz"), stem.with_suffix(".npy")):
            if candidate.exists():
                return load_feature_file(candidate, spec)
        return None
    cache = cache or FeatureCache()
    sha = (sha_index or ShaIndex.for_cache(cache)).sha256(record.path)
    if sha is None:
        return None
    return cache.get(sha, encoder_id, settings.cache_key(spec))
