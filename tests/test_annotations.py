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


def _without_ids(text: str) -> list[list[str]]:
    return [row[1:] for row in csv.reader(text.splitlines())]


def test_exddv_export_import_export_is_a_round_trip_that_keeps_every_note(fixtures_dir, tmp_path):
    """The fixture's rows come back byte for byte (their ids too); clicks made here with
    different notes stay in separate rows, each with its own note, under distinct ids."""
    store = AnnotationStore(tmp_path / "a.sqlite")
    import_exddv(store, fixtures_dir / "exddv" / "sample.csv")
    store.add_many([click(frame_index=1, note="teeth blur"), click(frame_index=9, note="lip edge"),
                    click(frame_index=12, note="lip edge")])
    first = exddv_text(store.list())
    assert first.startswith((fixtures_dir / "exddv" / "sample.csv").read_text(encoding="utf-8-sig").rstrip("\n"))
    path = tmp_path / "first.csv"
    path.write_text(first)
    again = AnnotationStore(tmp_path / "b.sqlite")
    import_exddv(again, path)
    assert exddv_text(again.list()) == first
    rows = list(csv.DictReader(first.splitlines()))
    mine = [r for r in rows if r["movie_name"] == "clip.mp4"]
    assert [r["text"] for r in mine] == ["teeth blur", "lip edge"]
    assert json.loads(mine[1]["click_locations"]).keys() == {"9", "12"}
    assert len({r["id"] for r in rows}) == len(rows)


def test_deleted_ids_are_never_reused(tmp_path):
    store = AnnotationStore(tmp_path / "a.sqlite")
    first, last = store.add(click()), store.add(click())
    assert store.delete(last)
    assert store.add(click()) > last and first < last


def test_a_database_made_before_autoincrement_is_moved_without_losing_a_click(tmp_path):
    """A clicks table from before (plain INTEGER PRIMARY KEY) is rebuilt on open: same rows,
    same ids, and from then on a deleted last id is not handed out again."""
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE clicks (id INTEGER NOT NULL PRIMARY KEY, video_sha256 VARCHAR(64), "
                           "video_name VARCHAR(1024) NOT NULL, frame_index INTEGER NOT NULL, time FLOAT, x FLOAT NOT "
                           "NULL, y FLOAT NOT NULL, annotator VARCHAR(256) NOT NULL, note TEXT NOT NULL, difficulty "
                           "INTEGER NOT NULL, created FLOAT NOT NULL, dataset VARCHAR(256) NOT NULL, manipulation "
                           "VARCHAR(256) NOT NULL, split VARCHAR(64) NOT NULL, exddv_id VARCHAR(64))")
        connection.execute("CREATE INDEX ix_clicks_annotator ON clicks (annotator)")
        connection.executemany("INSERT INTO clicks VALUES (?, NULL, 'v.mp4', ?, NULL, 0.5, 0.5, ?, ?, 1, 0, '', '', "
                               "'', NULL)", [(i, i, "old", f"note {i}") for i in (1, 2, 7)])
    store = AnnotationStore(path)
    assert [(c.id, c.note) for c in store.list(annotator="old")] == [(1, "note 1"), (2, "note 2"), (7, "note 7")]
    assert store.delete(7) and store.add(click()) == 8
    assert AnnotationStore(path).count() == 3 and store.integrity_check() == "ok"


def test_imported_clicks_belong_to_the_video_they_name(fixtures_dir, tmp_path):
    """An ExDDV row carries a file name, not a hash: its clicks are listed with that video's
    own (hashed) clicks, and no other video's."""
    store = AnnotationStore(tmp_path / "a.sqlite")
    import_exddv(store, fixtures_dir / "exddv" / "sample.csv")
    store.add(click(video_name="553_W040.mp4", video_sha256="cd" * 32, frame_index=5))
    store.add(click(video_name="553_W040.mp4", video_sha256="ef" * 32, frame_index=6))  # another file, same name
    listed = store.list_for_video("cd" * 32, "553_W040.mp4")
    assert [c.frame_index for c in listed] == [100, 123, 149, 5]
    assert [c.frame_index for c in store.list_for_video("cd" * 32, "553_W040.mp4", annotator="ana")] == [5]
