"""Where the inspection stream is kept: one table of events in order, SQLite by default, any
SQLAlchemy URL (PostgreSQL) by QUALITY_EVENTS_URL. Writers are Rasa's broker and the phone
gateway (each through an `EventWriter`, off the turn); the inspection service reads it by cursor.

Works with SQLAlchemy 1.4 (Rasa's environment) and 2.x (the services'). Nothing is connected
before the first write or read, so a database that is down never fails a start.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from quality.events import StreamEvent

URL_ENV = "QUALITY_EVENTS_URL"
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "var" / "quality" / "events.sqlite3"

_METADATA = sa.MetaData()
EVENTS = sa.Table(
    "quality_events", _METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(255), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Index("quality_events_by_conversation", "conversation_id", "id"),
)


class EventStore(Protocol):
    def append(self, events: Sequence[StreamEvent]) -> None: ...

    def after(self, cursor: int, limit: int) -> list[StreamEvent]:
        """Up to `limit` events stored after position `cursor`, in order."""
        ...


def events_url(env: Mapping[str, str] = os.environ) -> str:
    return env.get(URL_ENV, "").strip() or f"sqlite:///{DEFAULT_PATH}"


def _sqlite_wal(dbapi_connection: Any, _: Any) -> None:
    # Rasa, the gateway and the inspection service share the file: readers never wait for a writer.
    dbapi_connection.execute("PRAGMA journal_mode=WAL")
    dbapi_connection.execute("PRAGMA busy_timeout=10000")


class SqlEventStore:
    def __init__(self, url: str) -> None:
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(url, connect_args={"check_same_thread": False})
            sa.event.listen(self.engine, "connect", _sqlite_wal)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        self._ready = False
        self._ready_lock = threading.Lock()

    def _prepare(self) -> None:
        with self._ready_lock:
            if not self._ready:
                _METADATA.create_all(self.engine)
                self._ready = True

    def append(self, events: Sequence[StreamEvent]) -> None:
        self._prepare()
        rows = [{"conversation_id": event.conversation_id, "source": event.source, "kind": event.kind,
                 "at": event.at, "data": json.dumps(event.data, ensure_ascii=False)} for event in events]
        with self.engine.begin() as connection:
            connection.execute(EVENTS.insert(), rows)

    def after(self, cursor: int, limit: int) -> list[StreamEvent]:
        self._prepare()
        query = sa.select(EVENTS).where(EVENTS.c.id > cursor).order_by(EVENTS.c.id).limit(limit)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [StreamEvent(row.conversation_id, row.source, row.kind, row.at, json.loads(row.data), row.id)
                for row in rows]

    def close(self) -> None:
        self.engine.dispose()
