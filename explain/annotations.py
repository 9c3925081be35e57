"""The annotation store: where human annotators' clicks on fake frames are kept.

Embedded SQLite by default (one file in the app home, WAL journal, synchronous=FULL, each
write one transaction, so a killed writer loses at most the transaction it was in); any
SQLAlchemy database URL (e.g. postgresql://…) for a team on a shared server. Import and
export ExDDV CSV exactly: one row per (video, annotator), `click_locations` a JSON object
keyed by frame index, coordinates normalised with the origin top-left.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import time as now

import sqlalchemy as sa

from models.cache import app_home, atomic_write
from models.errors import AnalysisError
from models.timing import STEP_RATE

EXDDV_COLUMNS = ("id", "username", "movie_name", "text", "dataset", "manipulation", "click_locations",
                 "difficulty", "split")
MAX_NOTE_CHARS = 4000
BUSY_TIMEOUT_S = 60


@dataclass
class Click:
    """One human click: where on which frame of which video an annotator saw a fake."""

    video_name: str
    frame_index: int
    x: float  # normalised, 0 = left edge
    y: float  # normalised, 0 = top edge
    annotator: str
    video_sha256: str | None = None  # None for imported clicks whose video is not at hand
    time: float | None = None  # seconds, when known
    note: str = ""
    difficulty: int = 1  # 1 easy … 3 hard
    created: float = field(default_factory=now)
    dataset: str = ""  # ExDDV row fields, kept so an export reproduces the rows
    manipulation: str = ""
    split: str = ""
    exddv_id: str | None = None
    id: int | None = None

    def validate(self, where: str = "click") -> "Click":
        """Raise AnalysisError naming `where` when a field is out of range."""
        for name in ("x", "y"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise AnalysisError(f"{where}: {name} = {value!r} is outside 0..1 (normalised coordinates).")
        if not isinstance(self.frame_index, int) or self.frame_index < 0:
            raise AnalysisError(f"{where}: frame index {self.frame_index!r} must be a whole number ≥ 0.")
        if self.difficulty not in (1, 2, 3):
            raise AnalysisError(f"{where}: difficulty {self.difficulty!r} must be 1, 2 or 3.")
        if not str(self.annotator).strip():
            raise AnalysisError(f"{where}: the annotator name is empty.", hint="Enter your name before clicking.")
        if not str(self.video_name).strip():
            raise AnalysisError(f"{where}: the video name is empty.")
        if len(self.note) > MAX_NOTE_CHARS:
            raise AnalysisError(f"{where}: the note is {len(self.note)} characters; at most {MAX_NOTE_CHARS}.")
        return self


def click_step(click: Click, fps: float, n_steps: int) -> int:
    """The analysis step of a click: from its time when known, else its frame index at `fps`."""
    seconds = click.time if click.time is not None else click.frame_index / fps
    return int(min(max(0, math.floor(seconds * STEP_RATE + 1e-9)), n_steps - 1))


def default_url() -> str:
    return f"sqlite:///{app_home() / 'annotations.sqlite'}"


class AnnotationStore:
    """Add, list and delete clicks in one database (SQLite file or any SQLAlchemy URL)."""

    def __init__(self, url: str | Path | None = None):
        url = str(url) if url is not None else default_url()
        if "://" not in url:  # a plain path means a SQLite file
            url = f"sqlite:///{Path(url).expanduser().resolve()}"
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite and url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": BUSY_TIMEOUT_S} if self.is_sqlite else {}
        self.engine = sa.create_engine(url, connect_args=connect_args, future=True)
        if self.is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.table = _clicks_table(sa.MetaData())
        try:
            self.table.metadata.create_all(self.engine)
        except sa.exc.OperationalError:  # another process or thread created it between check and create
            if not sa.inspect(self.engine).has_table("clicks"):
                raise
        if self.is_sqlite:
            self._never_reuse_ids()

    def _never_reuse_ids(self) -> None:
        """Move a table made before ids were AUTOINCREMENT (SQLite then hands a deleted last id
        out again) to one that never reuses an id: every row is copied in one transaction, so
        a crash leaves either the old table or the new one, never a mix."""
        with self.engine.begin() as connection:
            sql = connection.execute(sa.text("SELECT sql FROM sqlite_master WHERE type='table' AND name='clicks'"))
            if "AUTOINCREMENT" in (sql.scalar() or "").upper():
                return
            connection.execute(sa.text("ALTER TABLE clicks RENAME TO clicks_before_autoincrement"))
            for index in list(self.table.indexes):
                connection.execute(sa.text(f"DROP INDEX IF EXISTS {index.name}"))
            self.table.create(connection)
            columns = ", ".join(c.name for c in self.table.columns)
            connection.execute(sa.text(f"INSERT INTO clicks ({columns}) SELECT {columns} "
                                       "FROM clicks_before_autoincrement ORDER BY id"))
            connection.execute(sa.text("DROP TABLE clicks_before_autoincrement"))

    def add(self, click: Click) -> int:
        """Store one click (validated) in its own transaction; returns its id."""
        return self.add_many([click])[0]

    def add_many(self, clicks: list[Click]) -> list[int]:
        """Store clicks in one transaction: all or none."""
        rows = [_row(c.validate()) for c in clicks]
        with self.engine.begin() as connection:
            return [connection.execute(self.table.insert().values(**row)).inserted_primary_key[0] for row in rows]

    def list(self, video_sha256: str | None = None, video_name: str | None = None,
             annotator: str | None = None) -> list[Click]:
        """Clicks in insertion order, optionally for one video (by hash or name) and annotator."""
        query = self.table.select().order_by(self.table.c.id)
        for column, value in (("video_sha256", video_sha256), ("video_name", video_name), ("annotator", annotator)):
            if value is not None:
                query = query.where(self.table.c[column] == value)
        with self.engine.connect() as connection:
            return [Click(**row._asdict()) for row in connection.execute(query)]

    def list_for_video(self, video_sha256: str, video_name: str, annotator: str | None = None) -> list[Click]:
        """One video's clicks: those made on this file (by hash), and imported ones that name it
        but came without a hash (an ExDDV CSV carries only the file name)."""
        query = self.table.select().order_by(self.table.c.id).where(sa.or_(
            self.table.c.video_sha256 == video_sha256,
            sa.and_(self.table.c.video_sha256.is_(None), self.table.c.video_name == video_name)))
        if annotator is not None:
            query = query.where(self.table.c.annotator == annotator)
        with self.engine.connect() as connection:
            return [Click(**row._asdict()) for row in connection.execute(query)]

    def delete(self, click_id: int, annotator: str | None = None) -> bool:
        """Delete one click (only the annotator's own when `annotator` is given); True if deleted."""
        query = self.table.delete().where(self.table.c.id == int(click_id))
        if annotator is not None:
            query = query.where(self.table.c.annotator == annotator)
        with self.engine.begin() as connection:
            return connection.execute(query).rowcount > 0

    def count(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(self.table)).scalar())

    def integrity_check(self) -> str:
        """SQLite's PRAGMA integrity_check result ('ok' when sound); 'n/a' for other databases."""
        if not self.is_sqlite:
            return "n/a"

        with self.engine.connect() as connection:
            return str(connection.execute(sa.text("PRAGMA integrity_check")).scalar())


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
    cursor.close()


def _clicks_table(metadata):
    return sa.Table(
        "clicks", metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("video_sha256", sa.String(64), index=True),
        sa.Column("video_name", sa.String(1024), nullable=False, index=True),
        sa.Column("frame_index", sa.Integer, nullable=False),
        sa.Column("time", sa.Float),
        sa.Column("x", sa.Float, nullable=False),
        sa.Column("y", sa.Float, nullable=False),
        sa.Column("annotator", sa.String(256), nullable=False, index=True),
        sa.Column("note", sa.Text, nullable=False, default=""),
        sa.Column("difficulty", sa.Integer, nullable=False, default=1),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("dataset", sa.String(256), nullable=False, default=""),
        sa.Column("manipulation", sa.String(256), nullable=False, default=""),
        sa.Column("split", sa.String(64), nullable=False, default=""),
        sa.Column("exddv_id", sa.String(64)),
        sa.CheckConstraint("x >= 0 AND x <= 1 AND y >= 0 AND y <= 1", name="normalised_xy"),
        sa.CheckConstraint("difficulty BETWEEN 1 AND 3", name="difficulty_1_3"),
        sqlite_autoincrement=True,  # a deleted id is never handed out again
    )


def _row(click: Click) -> dict:
    row = asdict(click)
    row.pop("id")
    return row


# -- ExDDV CSV -------------------------------------------------------------------------------

@dataclass
class ImportReport:
    imported_rows: int
    imported_clicks: int
    bad_rows: list[str]  # one message per refused row


def read_exddv(path: str | Path) -> tuple[list[list[Click]], list[str]]:
    """Parse an ExDDV CSV into one click list per row, and a message per bad row."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise AnalysisError(f"cannot read the ExDDV file ({error}).", path=path) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in EXDDV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise AnalysisError(f"not an ExDDV CSV: missing column(s) {', '.join(missing)}.", path=path,
                            hint=f"The header must be: {','.join(EXDDV_COLUMNS)}")
    rows, bad = [], []
    for line, record in enumerate(reader, start=2):
        where = f"{path.name} row {line - 1} (line {line}, id {record.get('id')!r})"
        try:
            rows.append(_clicks_of_row(record, where))
        except AnalysisError as error:
            bad.append(error.problem)
    return rows, bad


def _clicks_of_row(record: dict, where: str) -> list[Click]:
    try:
        locations = json.loads(record["click_locations"] or "")
    except ValueError as error:
        raise AnalysisError(f"{where}: click_locations is not valid JSON ({error}).") from None
    if not isinstance(locations, dict):
        raise AnalysisError(f"{where}: click_locations must be a JSON object keyed by frame index.")
    try:
        difficulty = int(record["difficulty"])
    except (TypeError, ValueError):
        raise AnalysisError(f"{where}: difficulty {record['difficulty']!r} is not 1, 2 or 3.") from None
    clicks = []
    for key, point in locations.items():
        if not str(key).isdigit():
            raise AnalysisError(f"{where}: frame key {key!r} is not a frame index.")
        if not isinstance(point, dict) or set(point) != {"x", "y"}:
            raise AnalysisError(f"{where}: frame {key} must map to {{\"x\": .., \"y\": ..}}, got {point!r}.")
        clicks.append(Click(video_name=record["movie_name"], frame_index=int(key), x=point["x"], y=point["y"],
                            annotator=record["username"], note=record["text"], difficulty=difficulty,
                            dataset=record["dataset"], manipulation=record["manipulation"], split=record["split"],
                            exddv_id=record["id"]).validate(f"{where}, frame {key}"))
    if not clicks:
        raise AnalysisError(f"{where}: no clicks in click_locations.")
    return clicks


def import_exddv(store: AnnotationStore, path: str | Path, skip_bad: bool = False) -> ImportReport:
    """Import every row in one transaction. Bad rows stop the import (nothing is stored)
    unless `skip_bad`, which stores the good rows and reports the bad ones."""
    rows, bad = read_exddv(path)
    if bad and not skip_bad:
        raise AnalysisError(f"{len(bad)} bad row(s), nothing imported. First: {bad[0]}",
                            hint="Fix the rows, or import the good rows only (skip bad rows).")
    store.add_many([click for row in rows for click in row])
    return ImportReport(len(rows), sum(len(r) for r in rows), bad)


def exddv_text(clicks: list[Click]) -> str:
    """ExDDV CSV text, clicks in insertion order. An ExDDV row holds one note, difficulty and
    label for many frames, so clicks share a row when they share all of those (and the video,
    the annotator and an imported row's id): every note is kept. A row made here is named by
    its first click's id, which is never reused; an imported row keeps its own id, so export,
    import and export again give the same file."""
    groups: dict[tuple, list[Click]] = {}
    for click in clicks:
        key = (click.exddv_id, click.video_name, click.annotator, click.note, click.difficulty, click.dataset,
               click.manipulation, click.split)
        groups.setdefault(key, []).append(click)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXDDV_COLUMNS)
    for (row_id, video, annotator, note, difficulty, dataset, manipulation, split), group in groups.items():
        locations = {str(c.frame_index): {"x": c.x, "y": c.y} for c in group}
        writer.writerow([row_id if row_id is not None else group[0].id, annotator, video, note, dataset,
                         manipulation, json.dumps(locations), difficulty, split])
    return buffer.getvalue()


def export_exddv(store: AnnotationStore, path: str | Path, video_name: str | None = None,
                 annotator: str | None = None) -> Path:
    """Write the (filtered) clicks as an ExDDV CSV, atomically."""
    path = Path(path)
    text = exddv_text(store.list(video_name=video_name, annotator=annotator))
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path
