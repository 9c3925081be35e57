"""Readers for the labelled datasets probes are trained and evaluated on, into one record type.

Formats (METHODS.md §3): SSR-DFD split CSVs (`path`, `label`), AV-Deepfake1M
`*_metadata.json`, FakeAVCeleb `meta_data.csv` (`type`, `path`, `filename`), and a plain
`0_real/` `1_fake/` folder layout (AVLips). A dataset is described by a small JSON file:

    {"name": "av1m", "format": "av1m", "root": "/data/av1m",
     "splits": {"train": "train_metadata.json", "val": "val_metadata.json", "test": "test_metadata.json"},
     "features": null}

`root` and `features` are resolved against the description file's folder, and so are the
split files; for the folder format a split is a subfolder of `root`. `features`, when
given, is a folder of precomputed per-video features (`.npz` / `.npy` mirroring the video
paths, as SSR-DFD stores them) used instead of running an encoder.
"""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from models.errors import AnalysisError

FORMATS = ("ssr-csv", "av1m", "favc", "folder")
TARGETS = ("any", "audio", "visual")
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi"}
FAVC_CATEGORIES = {"RealVideo-RealAudio": 0, "RealVideo-FakeAudio": 1, "FakeVideo-RealAudio": 1,
                   "FakeVideo-FakeAudio": 1}


@dataclass
class Record:
    """One labelled video."""

    path: str  # absolute path of the video
    label: int  # 0 real, 1 fake
    dataset: str
    split: str
    relative: str  # path relative to the dataset root (the id used in reports)
    manipulation: str = "unknown"
    fake_segments: list | None = None
    visual_fake_segments: list | None = None
    audio_fake_segments: list | None = None

    def for_target(self, target: str) -> "Record":
        """This record labelled for one modality: 'audio' (fake when its audio is
        manipulated), 'visual' (when its frames are), or 'any' (the video label)."""
        if target == "any" or self.label == 0:
            return self
        segments = {"audio": self.audio_fake_segments, "visual": self.visual_fake_segments}[target]
        if segments is None:
            return self  # the format does not say which modality: keep the video label
        return replace(self, label=int(bool(segments)))

    def truth(self) -> dict | None:
        if self.fake_segments is None and self.visual_fake_segments is None and self.audio_fake_segments is None:
            return None
        return {"fake_segments": self.fake_segments or [], "visual_fake_segments": self.visual_fake_segments or [],
                "audio_fake_segments": self.audio_fake_segments or [], "modify_type": self.manipulation}

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DatasetSpec:
    name: str
    format: str
    root: Path
    splits: dict[str, str] = field(default_factory=dict)
    features: Path | None = None
    favc_pairs: str = "rr-ff"  # FakeAVCeleb: real-real vs fake-fake only (SSR-DFD), or "all"
    base: Path = Path(".")  # the description file's folder

    def read(self, split: str, target: str = "any") -> list[Record]:
        """The records of one split, labelled for `target` (any | audio | visual)."""
        if target not in TARGETS:
            raise AnalysisError(f"unknown target {target!r}.", hint=f"Use one of {', '.join(TARGETS)}.")
        if split not in self.splits:
            raise AnalysisError(f"dataset {self.name} has no {split!r} split (it has: {', '.join(self.splits)}).")
        source = (self.root if self.format == "folder" else self.base) / self.splits[split]
        reader = {"ssr-csv": read_ssr_csv, "av1m": read_av1m, "favc": read_favc, "folder": read_folder}[self.format]
        records = reader(source, self.root, self.name, split,
                         **({"pairs": self.favc_pairs} if self.format == "favc" else {}))
        if not records:
            raise AnalysisError(f"dataset {self.name}, split {split}: no videos found.", path=source)
        return [r.for_target(target) for r in records]


def load_dataset_spec(path: str | Path) -> DatasetSpec:
    """Read and check a dataset description file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise AnalysisError("dataset description not found.", path=path) from None
    except (ValueError, UnicodeDecodeError) as error:
        raise AnalysisError(f"the dataset description is not valid JSON ({error}).", path=path) from None
    missing = [key for key in ("name", "format", "root", "splits") if key not in data]
    if missing:
        raise AnalysisError(f"the dataset description lacks {', '.join(missing)}.", path=path,
                            hint='It needs {"name", "format", "root", "splits": {"train": ..., "test": ...}}.')
    if data["format"] not in FORMATS:
        raise AnalysisError(f"unknown dataset format {data['format']!r}.", path=path,
                            hint=f"Formats: {', '.join(FORMATS)}.")
    root = (path.parent / data["root"]).resolve()
    if not root.is_dir():
        raise AnalysisError(f"the dataset root {root} does not exist.", path=path, hint="Fix `root`.")
    features = (path.parent / data["features"]).resolve() if data.get("features") else None
    return DatasetSpec(name=str(data["name"]), format=data["format"], root=root, splits=dict(data["splits"]),
                       features=features, favc_pairs=data.get("favc_pairs", "rr-ff"), base=path.parent.resolve())


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict]:
    if not path.exists():
        raise AnalysisError("CSV file not found.", path=path)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [c for c in required if c not in columns]
        if missing:
            raise AnalysisError(f"the CSV lacks the column(s) {', '.join(missing)} (it has: {', '.join(columns)}).",
                                path=path)
        return list(reader)


def _label(value: str, path: Path, row: int) -> int:
    if str(value).strip() not in ("0", "1"):
        raise AnalysisError(f"row {row}: label {value!r} is not 0 (real) or 1 (fake).", path=path)
    return int(value)


def read_ssr_csv(csv_path: Path, root: Path, name: str, split: str) -> list[Record]:
    """SSR-DFD split CSV: `path` (relative to root) and `label`."""
    rows = _read_csv(csv_path, ("path", "label"))
    records = []
    for index, row in enumerate(rows, start=2):  # row 1 is the header
        label = _label(row["label"], csv_path, index)
        records.append(Record(str(root / row["path"]), label, name, split, row["path"],
                              manipulation="real" if label == 0 else "fake"))
    return records


def read_av1m(json_path: Path, root: Path, name: str, split: str) -> list[Record]:
    """AV-Deepfake1M metadata: a list of records with `file`, `modify_type` and segments."""
    try:
        data = json.loads(Path(json_path).read_text())
    except FileNotFoundError:
        raise AnalysisError("metadata file not found.", path=json_path) from None
    except ValueError as error:
        raise AnalysisError(f"the metadata is not valid JSON ({error}).", path=json_path) from None
    if not isinstance(data, list):
        raise AnalysisError("AV-Deepfake1M metadata must be a list of records.", path=json_path)
    records = []
    for index, item in enumerate(data):
        if not isinstance(item, dict) or "file" not in item:
            raise AnalysisError(f"record {index} has no `file`.", path=json_path)
        modify = item.get("modify_type") or ("real" if not item.get("fake_segments") else "fake")
        label = 0 if modify == "real" else 1
        records.append(Record(str(root / item["file"]), label, name, split, item["file"], modify,
                              item.get("fake_segments", []), item.get("visual_fake_segments", []),
                              item.get("audio_fake_segments", [])))
    return records


def read_favc(csv_path: Path, root: Path, name: str, split: str, pairs: str = "rr-ff") -> list[Record]:
    """FakeAVCeleb metadata CSV (`type`, `path`, `filename`); by default only
    RealVideo-RealAudio (real) and FakeVideo-FakeAudio (fake), as SSR-DFD uses it."""
    rows = _read_csv(csv_path, ("type", "path", "filename"))
    records = []
    for index, row in enumerate(rows, start=2):
        category = row["type"].strip()
        if category not in FAVC_CATEGORIES:
            raise AnalysisError(f"row {index}: unknown category {category!r} "
                                f"(expected one of {', '.join(FAVC_CATEGORIES)}).", path=csv_path)
        if pairs == "rr-ff" and category not in ("RealVideo-RealAudio", "FakeVideo-FakeAudio"):
            continue
        folder = Path(row["path"])
        if folder.parts and folder.parts[0] == root.name:  # paths often start with the dataset folder itself
            folder = Path(*folder.parts[1:])
        relative = str(folder / row["filename"])
        records.append(Record(str(root / relative), FAVC_CATEGORIES[category], name, split, relative, category))
    return records


def read_folder(folder: Path, root: Path, name: str, split: str) -> list[Record]:
    """`0_real/` and `1_fake/` subfolders (searched recursively for videos)."""
    if not folder.is_dir():
        raise AnalysisError("folder not found.", path=folder)
    records = []
    for sub, label in (("0_real", 0), ("1_fake", 1)):
        for path in sorted((folder / sub).rglob("*")) if (folder / sub).is_dir() else []:
            if path.suffix.lower() in VIDEO_SUFFIXES:
                records.append(Record(str(path), label, name, split, str(path.relative_to(root)),
                                      "real" if label == 0 else "fake"))
    if not records and not any((folder / sub).is_dir() for sub in ("0_real", "1_fake")):
        raise AnalysisError("has neither a 0_real/ nor a 1_fake/ subfolder.", path=folder)
    return records
