"""How long analyses took on this machine, so a progress bar can say how long the next one
will take from measured rates rather than guess.

Each finished analysis records its wall time per second of clip under the set of probes it
ran; the estimate is the median of that set's last runs times the new clip's duration. The
history is one small JSON file in the app home, written atomically.
"""
from __future__ import annotations

import json
import statistics
import threading
from pathlib import Path

from models.cache import app_home, atomic_write

RUNS_KEPT = 7  # per probe set: enough for a stable median, few enough to follow a changed machine
_LOCK = threading.Lock()


def history_path() -> Path:
    return app_home() / "runtimes.json"


def _key(probe_ids: list[str]) -> str:
    return ",".join(sorted(set(probe_ids)))


def _read() -> dict[str, list[float]]:
    try:
        history = json.loads(history_path().read_text())
    except (OSError, ValueError):
        return {}
    return history if isinstance(history, dict) else {}


def record_runtime(probe_ids: list[str], clip_seconds: float, wall_seconds: float) -> None:
    """Remember that analysing `clip_seconds` of video with `probe_ids` took `wall_seconds`."""
    if clip_seconds <= 0 or wall_seconds <= 0:
        return
    with _LOCK:
        history = _read()
        rates = [r for r in history.get(_key(probe_ids), []) if isinstance(r, (int, float))]
        history[_key(probe_ids)] = (rates + [wall_seconds / clip_seconds])[-RUNS_KEPT:]
        atomic_write(history_path(), lambda tmp: tmp.write_text(json.dumps(history, indent=1)))


def estimate_seconds(probe_ids: list[str], clip_seconds: float) -> float | None:
    """The expected wall time of analysing `clip_seconds` with `probe_ids` here; None before
    the first such run on this machine."""
    rates = _read().get(_key(probe_ids))
    return statistics.median(rates) * clip_seconds if rates else None


def remaining_seconds(estimate: float | None, elapsed: float, fraction: float) -> float | None:
    """What is left, corrected as the run goes: the estimate minus the time spent, or, once the
    run is slower than estimated, what the rate so far predicts for the unfinished fraction."""
    by_rate = elapsed * (1 - fraction) / fraction if fraction > 0.05 else None
    if estimate is None:
        return by_rate
    left = estimate - elapsed
    return max(left, by_rate or 0.0) if left > 0 else by_rate
