"""Ground truth: AV-Deepfake1M records (fake segments in seconds) for one video, read
from a file the user names or from beside the video. Plain JSON, no model libraries, so
the command line checks a truth file before anything heavy loads."""
from __future__ import annotations

import json
from pathlib import Path

from models.errors import AnalysisError


def truth_record(path: Path, video_name: str, any_single: bool = False) -> dict | None:
    """The record for `video_name` in an AV-Deepfake1M metadata file (a list of records
    with `file`, or one record); with `any_single`, a file of one record matches any name."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise AnalysisError(f"cannot read the ground-truth metadata ({error}).", path=path) from None
    records = [r for r in (data if isinstance(data, list) else [data]) if isinstance(r, dict)]
    if any_single and len(records) == 1:
        return validate_truth(records[0], path)
    matches = [r for r in records if Path(str(r.get("file", ""))).name == video_name]
    if len(matches) > 1:
        raise AnalysisError(f"holds {len(matches)} records named {video_name} (in different folders); which one "
                            "is this video cannot be told from its name.", path=path,
                            hint="Give a metadata file with this video's record alone (VIDEO.json beside it).")
    return validate_truth(matches[0], path) if matches else None


def read_truth(video: str | Path) -> dict | None:
    """Ground truth for `video` from beside it: `<stem>.json` holding its record, or a
    `*metadata.json` list in its folder with a record whose `file` matches."""
    video = Path(video)
    sidecar = video.with_suffix(".json")
    if sidecar.exists() and (record := truth_record(sidecar, video.name, any_single=True)) is not None:
        return record
    for path in sorted(video.parent.glob("*metadata.json")):
        if (record := truth_record(path, video.name)) is not None:
            return record
    return None


def validate_truth(record: dict, source: str | Path = "ground truth") -> dict:
    """Check the record has segments (or names its file) and that segment lists are
    [[start, end], ...] with 0 <= start < end."""
    keys = ("fake_segments", "visual_fake_segments", "audio_fake_segments")
    if not any(key in record for key in (*keys, "file")):
        raise AnalysisError("is not an AV-Deepfake1M record: it has no fake_segments and no file.", path=source,
                            hint="Give the dataset's metadata JSON (a list of records) or one record.")
    for key in keys:
        if not isinstance(record.get(key, []) or [], list):
            raise AnalysisError(f"{key} must be a list of [start, end] segments.", path=source)
        for segment in record.get(key, []) or []:
            if (not isinstance(segment, (list, tuple)) or len(segment) != 2
                    or not all(isinstance(v, (int, float)) for v in segment) or not 0 <= segment[0] < segment[1]):
                raise AnalysisError(f"{key} holds {segment!r}; segments are [start, end] in seconds with "
                                    "0 <= start < end.", path=source)
    return record


def load_truth_file(path: str | Path, video_name: str) -> dict:
    """Ground truth for `video_name` from an AV-Deepfake1M metadata file the user names: a
    list with a record whose `file` matches, or one record that names this video or no file."""
    record = truth_record(Path(path), video_name, any_single=True)
    if record is None:
        raise AnalysisError(f"has no record for {video_name}.", path=path,
                            hint="Give the metadata file of this video (its records name files in `file`).")
    named = Path(str(record.get("file") or "")).name
    if named and named != video_name:
        raise AnalysisError(f"is the ground truth of {named}, not of {video_name}.", path=path,
                            hint="Give the metadata file of this video, or leave --truth out.")
    return record
