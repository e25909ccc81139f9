"""Throw-away PostgreSQL databases for the test suite and the bench."""
from __future__ import annotations

import time
import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

# DROP ... WITH (FORCE) may not end an autovacuum worker busy in the database (a non-superuser
# cannot signal it: "must be a member of the role whose process is being terminated"); it is
# done within seconds, so the drop is tried again.
DROP_TRIES = 40
DROP_RETRY_SECONDS = 0.5


def _run_outside_transaction(server_url: str, statement: str) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction block.
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()


def create_scratch_database(server_url: str, prefix: str) -> tuple[str, str]:
    """An empty database on the server of `server_url` (role needs CREATEDB): (url, name).
    Raises when the server is down: callers must fail, not skip."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _run_outside_transaction(server_url, f'CREATE DATABASE "{name}"')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False), name


def drop_scratch_database(server_url: str, name: str) -> None:
    for attempt in range(1, DROP_TRIES + 1):
        try:
            _run_outside_transaction(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except DBAPIError as error:
            if attempt == DROP_TRIES or "must be a member of the role" not in str(error.orig):
                raise
            time.sleep(DROP_RETRY_SECONDS)
