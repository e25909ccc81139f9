"""One way to open a service's database: SQLite by default (a file under var/), PostgreSQL by URL.

The risk API, the dialler's job queue, the quality stream and the knowledge base's proposals all
open theirs here, so a file's folder, SQLite's locking and PostgreSQL's dropped connections are
handled alike everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

SQLITE_BUSY_SECONDS = 30


def open_engine(url: str, *, serialise_writes: bool = False, **postgres_pool: Any) -> Engine:
    """An engine for `url`. On SQLite: the file's folder made, WAL (readers never wait for the
    writer; several processes share the file; one fsync a commit), connections kept open (SQLAlchemy
    1.4, Rasa's, would open one per session), a long busy timeout and foreign keys enforced;
    `serialise_writes` makes every transaction take the write lock at its start (BEGIN IMMEDIATE),
    so read-then-write sequences across threads or processes never lose an update. On PostgreSQL:
    connections checked before use (a restarted server costs one retry, not an error);
    `postgres_pool` sizes the pool."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True, **postgres_pool)
    pool: dict[str, Any] = {}
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        pool["poolclass"] = sa.pool.QueuePool
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False}, **pool)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        if serialise_writes:
            # Take transaction control from pysqlite so that BEGIN IMMEDIATE below is what runs.
            dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    if serialise_writes:
        @sa.event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
