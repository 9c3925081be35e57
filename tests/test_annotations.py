"""The annotation store and ExDDV import/export."""
from __future__ import annotations

import csv
import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from explain.annotations import AnnotationStore, Click, exddv_text, export_exddv, import_exddv, read_exddv
from models.errors import AnalysisError

ROOT = Path(__file__).resolve().parent.parent


def click(**overrides) -> Click:
    values = {"video_name": "clip.mp4", "frame_index": 3, "x": 0.25, "y": 0.75, "annotator": "ana",
              "video_sha256": "ab" * 32, "time": 0.12, "note": "mouth", "difficulty": 2}
    return Click(**{**values, **overrides})


def test_add_list_delete(tmp_path):
    store = AnnotationStore(tmp_path / "a.sqlite")
    first = store.add(click())
    store.add(click(annotator="bob", x=0.5))
    assert [c.annotator for c in store.list()] == ["ana", "bob"]
    assert [c.x for c in store.list(annotator="bob")] == [0.5]
    assert store.list(video_sha256="ab" * 32)[0].id == first
    assert not store.delete(first, annotator="bob")  # not bob's click
    assert store.delete(first, annotator="ana")
    assert store.count() == 1 and store.integrity_check() == "ok"


def test_store_uses_wal(tmp_path):
    AnnotationStore(tmp_path / "a.sqlite").add(click())
    assert sqlite3.connect(tmp_path / "a.sqlite").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("bad, message", [({"x": 1.5}, "x = 1.5 is outside 0..1"), ({"y": -0.1}, "outside 0..1"),
                                          ({"difficulty": 4}, "difficulty"), ({"annotator": " "}, "annotator"),
                                          ({"frame_index": -1}, "frame index"), ({"x": float("nan")}, "outside")])
def test_invalid_clicks_are_refused(tmp_path, bad, message):
    store = AnnotationStore(tmp_path / "a.sqlite")
    with pytest.raises(AnalysisError, match=message):
        store.add(click(**bad))
    assert store.count() == 0


def test_html_notes_are_stored_as_text(tmp_path):
    store = AnnotationStore(tmp_path / "a.sqlite")
    note = '<script>alert("x")</script> & <b>teeth</b>'
    store.add(click(note=note))
    assert store.list()[0].note == note


def test_exddv_sample_round_trips_exactly(fixtures_dir, tmp_path):
    sample = fixtures_dir / "exddv" / "sample.csv"
    store = AnnotationStore(tmp_path / "a.sqlite")
    report = import_exddv(store, sample)
    assert (report.imported_rows, report.bad_rows) == (5, [])
    out = export_exddv(store, tmp_path / "out.csv")
    original = list(csv.DictReader(sample.open(newline="")))
    exported = list(csv.DictReader(out.open(newline="")))
    assert len(exported) == len(original) == 5
    for before, after in zip(original, exported):
        assert {k: v for k, v in before.items() if k != "click_locations"} == \
               {k: v for k, v in after.items() if k != "click_locations"}
        points_before, points_after = json.loads(before["click_locations"]), json.loads(after["click_locations"])
        assert list(points_before) == list(points_after)  # frame keys, in their (unsorted) order
        for key in points_before:
            assert abs(points_before[key]["x"] - points_after[key]["x"]) <= 1e-12
            assert abs(points_before[key]["y"] - points_after[key]["y"]) <= 1e-12
    assert out.read_text() == sample.read_text()  # and in fact byte for byte


def _write_rows(path: Path, fixtures_dir: Path, edit) -> Path:
    rows = list(csv.DictReader((fixtures_dir / "exddv" / "sample.csv").open(newline="")))
    edit(rows)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.security("ExDDV import: bad rows are named and refused; good rows imported only when asked")
@pytest.mark.parametrize("edit, message", [
    (lambda rows: rows[2].update(click_locations="{not json"), "row 3 .*click_locations is not valid JSON"),
    (lambda rows: rows[1].update(click_locations='{"5": {"x": 1.2, "y": 0.5}}'), "row 2 .*x = 1.2 is outside"),
    (lambda rows: rows[0].update(click_locations='{"five": {"x": 0.2, "y": 0.5}}'), "row 1 .*not a frame index"),
    (lambda rows: rows[4].update(click_locations='[0.2, 0.5]'), "row 5 .*JSON object"),
])
def test_bad_exddv_rows_are_named(fixtures_dir, tmp_path, edit, message):
    path = _write_rows(tmp_path / "bad.csv", fixtures_dir, edit)
    store = AnnotationStore(tmp_path / "a.sqlite")
    with pytest.raises(AnalysisError, match=message):
        import_exddv(store, path)
    assert store.count() == 0  # nothing imported
    report = import_exddv(store, path, skip_bad=True)  # only when asked: the good rows
    assert report.imported_rows == 4 and len(report.bad_rows) == 1


def test_missing_column_is_named(fixtures_dir, tmp_path):
    path = tmp_path / "cols.csv"
    lines = (fixtures_dir / "exddv" / "sample.csv").read_text().splitlines()
    path.write_text(lines[0].replace(",difficulty", "") + "\n")
    with pytest.raises(AnalysisError, match="missing column.*difficulty"):
        read_exddv(path)


def test_export_of_app_clicks_reimports(tmp_path):
    store = AnnotationStore(tmp_path / "a.sqlite")
    store.add_many([click(frame_index=f, x=f / 10) for f in (4, 1, 7)] + [click(annotator="bob")])
    text = exddv_text(store.list())
    path = tmp_path / "x.csv"
    path.write_text(text)
    rows, bad = read_exddv(path)
    assert bad == [] and [[c.frame_index for c in row] for row in rows] == [[4, 1, 7], [3]]


def _writer(url: str, worker: int, count: int) -> None:
    store = AnnotationStore(url)
    for index in range(count):
        store.add(click(annotator=f"w{worker}", frame_index=index, note=f"{worker}-{index}"))


def test_eight_concurrent_writers_lose_nothing(tmp_path):
    url = str(tmp_path / "shared.sqlite")
    AnnotationStore(url)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(url, w, 500)) for w in range(8)]
    started = time.time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=600)
    assert all(w.exitcode == 0 for w in workers)
    store = AnnotationStore(url)
    assert store.count() == 4000
    assert store.integrity_check() == "ok"
    assert {c.annotator for c in store.list()} == {f"w{w}" for w in range(8)}
    print(f"8 writers × 500 clicks in {time.time() - started:.1f} s")


KILLED_WRITER = """
import time
from explain.annotations import AnnotationStore, Click
store = AnnotationStore({url!r})
store.add(Click("v.mp4", 0, 0.1, 0.1, "committed"))
print("committed", flush=True)
with store.engine.begin() as connection:  # a transaction that never finishes
    for index in range(100):
        connection.execute(store.table.insert().values(video_name="v.mp4", frame_index=index, x=0.5, y=0.5,
                                                       annotator="in-flight", note="", difficulty=1,
                                                       created=0.0, dataset="", manipulation="", split=""))
    print("inside", flush=True)
    time.sleep(60)
"""


def test_killed_writer_loses_only_its_open_transaction(tmp_path):
    url = str(tmp_path / "k.sqlite")
    process = subprocess.Popen([sys.executable, "-c", KILLED_WRITER.format(url=url)],
                               stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout.readline().strip() == "committed"
    assert process.stdout.readline().strip() == "inside"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    store = AnnotationStore(url)
    assert [c.annotator for c in store.list()] == ["committed"]
    assert store.integrity_check() == "ok"
    store.add(click())  # and the store keeps working
    assert store.count() == 2
