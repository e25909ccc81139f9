"""Where the inspection stream is kept: one table of events in order, SQLite by default, any
SQLAlchemy URL (PostgreSQL) by QUALITY_EVENTS_URL. Writers are Rasa's broker and the phone
gateway (each through an `EventWriter`, off the turn); the inspection service reads it by cursor
(quality/cursor.py) and keeps beside it, in the same database, how far it has read and the hits
it found (`quality_progress`, `quality_hits`), so that a restart goes on where it stopped; and
the supervisors' reviews of those hits and the agents' appeals (`quality_reviews`, quality/reviews.py).

Works with SQLAlchemy 1.4 (Rasa's environment) and 2.x (the services'). Nothing is connected
before the first write or read, so a database that is down never fails a start.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from ivr_config.database import open_engine
from quality.events import StreamEvent

URL_ENV = "QUALITY_EVENTS_URL"
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "var" / "quality" / "events.sqlite3"

_METADATA = sa.MetaData()
# 64-bit positions on PostgreSQL; SQLite's rowid is already 64-bit and only INTEGER is its alias.
_POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
IN_CHUNK = 500  # ids per `IN (...)` (SQLite's variable limit, PostgreSQL's plan size)
EVENTS = sa.Table(
    "quality_events", _METADATA,
    # AUTOINCREMENT on SQLite: an id is never used twice, even once retention has deleted the
    # newest rows (plain rowids would start again below the inspection's cursor).
    sa.Column("id", _POSITION, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(255), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Index("quality_events_by_conversation", "conversation_id", "id"),
    sqlite_autoincrement=True,
    # The writers add events without reading any back (no RETURNING of the new id): on PostgreSQL
    # their role may insert and nothing else (deploy/postgres-init.sh).
    implicit_returning=False,
)
# What the inspection service found: every hit, with its alert's number when it raised one.
HITS = sa.Table(
    "quality_hits", _METADATA,
    sa.Column("id", _POSITION, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(255), nullable=False),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("event_id", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.Integer, nullable=True),
    sa.Index("quality_hits_by_conversation", "conversation_id"),
)
# How far each reader of the stream has read (one row per reader).
PROGRESS = sa.Table(
    "quality_progress", _METADATA,
    sa.Column("reader", sa.String(64), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("pending", sa.Text, nullable=False),  # JSON {id: when first missed}
    sa.Column("alerts", sa.Integer, nullable=False),
)
HIT_FIELDS = ("conversation_id", "rule", "severity", "at", "detail", "event_id", "seq")
# Every step of a hit's review, appeal and its decision: who, when, why. A hit is named by its
# number in its conversation (hits are only ever added, in order, and reloaded in that order) with
# its rule and event to check it is the same hit. One row per step and hit: of two supervisors
# deciding at once, the database lets one win.
REVIEWS = sa.Table(
    "quality_reviews", _METADATA,
    sa.Column("id", _POSITION, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(255), nullable=False),
    sa.Column("hit", sa.Integer, nullable=False),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("event_id", sa.BigInteger, nullable=False),
    sa.Column("step", sa.String(16), nullable=False),  # review, appeal, decision
    sa.Column("outcome", sa.String(16), nullable=False),  # confirmed/dismissed, appealed, upheld/rejected
    sa.Column("actor", sa.String(64), nullable=False),  # the desk login
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.UniqueConstraint("conversation_id", "hit", "step", name="quality_reviews_one_step_per_hit"),
)
REVIEW_FIELDS = ("conversation_id", "hit", "rule", "event_id", "step", "outcome", "actor", "at", "reason")


@dataclass
class Progress:
    """How far a reader has read: every position up to `position` is read except those `pending`
    (missing when read past: a write still in flight or one rolled back, with when it was first
    missed); and how many alerts it raised (their numbering goes on after a restart)."""

    position: int = 0
    pending: dict[int, float] = field(default_factory=dict)
    alerts: int = 0


def event_rows(events: Iterable[StreamEvent]) -> list[dict[str, Any]]:
    return [{"conversation_id": event.conversation_id, "source": event.source, "kind": event.kind,
             "at": event.at, "data": json.dumps(event.data, ensure_ascii=False)} for event in events]


def _chunks(ids: Sequence[Any]) -> Iterable[Sequence[Any]]:
    return (ids[start:start + IN_CHUNK] for start in range(0, len(ids), IN_CHUNK))


class EventStore(Protocol):
    def append(self, events: Sequence[StreamEvent]) -> None: ...

    def after(self, cursor: int, limit: int) -> list[StreamEvent]:
        """Up to `limit` events stored after position `cursor`, in order."""
        ...


class StoreNotReady(Exception):
    """The tables are not there and this role may not make them (a writer that started before the
    inspection service on PostgreSQL): try again later, as for a store that is down."""


def events_url(env: Mapping[str, str] = os.environ) -> str:
    return env.get(URL_ENV, "").strip() or f"sqlite:///{DEFAULT_PATH}"


class SqlEventStore:
    def __init__(self, url: str, writer_role: str | None = None) -> None:
        """`writer_role`: the inspection service's side on PostgreSQL, the role of the stream's
        writers (QUALITY_WRITER_ROLE), given INSERT on the events and nothing else once the tables exist."""
        # Rasa, the gateway and the inspection service share the file (WAL: readers never wait).
        self.engine = open_engine(url)
        self.writer_role = writer_role
        self._ready = False
        self._ready_lock = threading.Lock()

    def _prepare(self) -> None:
        with self._ready_lock:
            if not self._ready:
                try:
                    _METADATA.create_all(self.engine)
                except sa.exc.ProgrammingError as error:
                    raise StoreNotReady(f"the quality stream's tables are not made yet ({type(error.orig).__name__})"
                                        ) from error
                if self.writer_role and self.engine.dialect.name == "postgresql":
                    self._grant_writing(self.writer_role)
                self._ready = True

    def _grant_writing(self, role: str) -> None:
        quoted = self.engine.dialect.identifier_preparer.quote(role)
        with self.engine.begin() as connection:
            connection.execute(sa.text(f"GRANT INSERT ON {EVENTS.name} TO {quoted}"))
            sequence = connection.execute(sa.text(f"SELECT pg_get_serial_sequence('{EVENTS.name}', 'id')")).scalar()
            connection.execute(sa.text(f"GRANT USAGE ON SEQUENCE {sequence} TO {quoted}"))

    def append(self, events: Sequence[StreamEvent]) -> None:
        self._prepare()
        with self.engine.begin() as connection:
            connection.execute(EVENTS.insert(), event_rows(events))

    def after(self, cursor: int, limit: int) -> list[StreamEvent]:
        self._prepare()
        query = sa.select(EVENTS).where(EVENTS.c.id > cursor).order_by(EVENTS.c.id).limit(limit)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [_event(row) for row in rows]

    # --- the inspection service's side ------------------------------------------------------

    def among(self, ids: Sequence[int]) -> list[StreamEvent]:
        """The events at these positions that are there now, in order."""
        self._prepare()
        with self.engine.connect() as connection:
            rows = [row for chunk in _chunks(sorted(ids))
                    for row in connection.execute(sa.select(EVENTS).where(EVENTS.c.id.in_(chunk)))]
        return sorted((_event(row) for row in rows), key=lambda event: event.id)

    def first_position(self) -> int | None:
        self._prepare()
        with self.engine.connect() as connection:
            return connection.execute(sa.select(sa.func.min(EVENTS.c.id))).scalar()

    def progress(self, reader: str) -> Progress | None:
        """Where `reader` stopped; None when it never read."""
        self._prepare()
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(PROGRESS).where(PROGRESS.c.reader == reader)).first()
        if row is None:
            return None
        pending = {int(position): float(since) for position, since in json.loads(row.pending).items()}
        return Progress(row.position, pending, row.alerts)

    def hits(self) -> list[dict[str, Any]]:
        """Every hit kept, oldest first (`HIT_FIELDS`)."""
        self._prepare()
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(HITS).order_by(HITS.c.id)).all()
        return [{name: getattr(row, name) for name in HIT_FIELDS} for row in rows]

    def record(self, reader: str, progress: Progress, hits: Sequence[Mapping[str, Any]]) -> None:
        """The hits found and how far `reader` got, in one transaction: a restart never finds one
        without the other (no hit raised twice, none lost)."""
        self._prepare()
        values = {"position": progress.position, "alerts": progress.alerts,
                  "pending": json.dumps({str(position): since for position, since in progress.pending.items()})}
        with self.engine.begin() as connection:
            if hits:
                connection.execute(HITS.insert(), [{name: hit[name] for name in HIT_FIELDS} for hit in hits])
            updated = connection.execute(PROGRESS.update().where(PROGRESS.c.reader == reader).values(**values))
            if updated.rowcount == 0:  # one reader writes its own row: no race on the insert
                connection.execute(PROGRESS.insert().values(reader=reader, **values))

    def review_steps(self, conversation_id: str) -> list[dict[str, Any]]:
        """The conversation's review steps, oldest first (`REVIEW_FIELDS`)."""
        return self._review_steps(sa.select(REVIEWS).where(REVIEWS.c.conversation_id == conversation_id))

    def review_steps_by_conversation(self) -> dict[str, list[dict[str, Any]]]:
        """Every review step kept, by conversation, oldest first (retention bounds them)."""
        by_conversation: dict[str, list[dict[str, Any]]] = {}
        for step in self._review_steps(sa.select(REVIEWS)):
            by_conversation.setdefault(step["conversation_id"], []).append(step)
        return by_conversation

    def _review_steps(self, query: sa.Select[Any]) -> list[dict[str, Any]]:
        self._prepare()
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(REVIEWS.c.id)).all()
        return [{name: getattr(row, name) for name in REVIEW_FIELDS} for row in rows]

    def add_review_step(self, step: Mapping[str, Any]) -> bool:
        """Keep one step; False when this hit already has this step (someone else was first)."""
        self._prepare()
        try:
            with self.engine.begin() as connection:
                connection.execute(REVIEWS.insert().values(**{name: step[name] for name in REVIEW_FIELDS}))
        except sa.exc.IntegrityError:
            return False
        return True

    def forget(self, conversation_ids: Sequence[str], through: int) -> int:
        """Delete these conversations' events up to position `through` (what was read; a message
        that came since stays to be read), their hits and reviews (retention); how many events went."""
        self._prepare()
        deleted = 0
        with self.engine.begin() as connection:
            for chunk in _chunks(list(conversation_ids)):
                deleted += connection.execute(EVENTS.delete().where(
                    EVENTS.c.conversation_id.in_(chunk), EVENTS.c.id <= through)).rowcount
                connection.execute(HITS.delete().where(HITS.c.conversation_id.in_(chunk)))
                connection.execute(REVIEWS.delete().where(REVIEWS.c.conversation_id.in_(chunk)))
        return deleted

    def close(self) -> None:
        self.engine.dispose()


def _event(row: Any) -> StreamEvent:
    return StreamEvent(row.conversation_id, row.source, row.kind, row.at, json.loads(row.data), row.id)
