"""deploy/postgres-init.sh on a real PostgreSQL (the test cluster, as its superuser, the way the
official image runs it): each service's role gets into its own database only, the quality stream's
writers may add events and do nothing else, passwords with quotes in them are taken as written.
Names carry a prefix of this run's own; everything made is dropped after."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from quality.events import StreamEvent
from quality.store import Progress, SqlEventStore, StoreNotReady
from quality.writer import store_unavailable
from tests.risk_api.helpers import PG_URL_ENV

pytestmark = pytest.mark.postgres
SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "postgres-init.sh"
SERVICES = ("rasa", "risk", "outbound", "quality", "quality_writer")
DATABASES = ("rasa", "risk", "outbound", "quality")


@dataclass(frozen=True)
class Cluster:
    host: str
    port: int
    prefix: str
    passwords: dict[str, str]

    def url(self, role: str, database: str) -> sa.engine.URL:
        return sa.engine.URL.create("postgresql+psycopg2", username=self.prefix + role, password=self.passwords[role],
                                    host=self.host, port=self.port, database=self.prefix + database)


def as_superuser(port: int, script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`script` (shell, on stdin) as the cluster's superuser over its local socket."""
    settings = [f"{name}={value}" for name, value in {"PGHOST": "/var/run/postgresql", "PGPORT": str(port),
                                                      "POSTGRES_USER": "postgres", "POSTGRES_DB": "postgres",
                                                      **(env or {})}.items()]
    return subprocess.run(["runuser", "-u", "postgres", "--", "env", *settings, "sh", "-s"], input=script,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    admin = sa.engine.make_url(os.environ[PG_URL_ENV])
    prefix = f"t{secrets.token_hex(4)}_"
    # A quote, a semicolon and a backslash: psql's :'variable' quoting, not string pasting.
    passwords = {role: f"{role}'s; pass\\word {secrets.token_hex(4)}" for role in SERVICES}
    env = {"IVR_DATABASE_PREFIX": prefix, **{f"POSTGRES_{role.upper()}_PASSWORD": passwords[role] for role in SERVICES}}
    port = int(admin.port or 5432)
    made = as_superuser(port, SCRIPT.read_text(encoding="utf-8"), env)
    try:
        assert made.returncode == 0, made.stderr
        yield Cluster(admin.host or "127.0.0.1", port, prefix, passwords)
    finally:
        drops = [f'DROP DATABASE IF EXISTS "{prefix}{database}" WITH (FORCE);' for database in DATABASES]
        drops += [f'DROP ROLE IF EXISTS "{prefix}{role}";' for role in SERVICES]
        dropped = as_superuser(port, "psql -v ON_ERROR_STOP=1 -q <<'SQL'\n" + "\n".join(drops) + "\nSQL\n")
        assert dropped.returncode == 0, dropped.stderr


def reaches(url: sa.engine.URL) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError as error:
        assert "permission denied for database" in str(error), error
        return False
    finally:
        engine.dispose()


def test_each_service_reaches_its_own_database_only(cluster: Cluster) -> None:
    owners = {"rasa": "rasa", "risk": "risk", "outbound": "outbound", "quality": "quality",
              "quality_writer": "quality"}
    for role, own in owners.items():
        for database in DATABASES:
            assert reaches(cluster.url(role, database)) is (database == own), (role, database)
    risk = sa.create_engine(cluster.url("risk", "risk"))
    try:
        with risk.begin() as connection:  # the owner makes its own tables
            connection.execute(sa.text("CREATE TABLE customers_probe (id int)"))
    finally:
        risk.dispose()


def test_the_quality_streams_writers_add_events_and_nothing_else(cluster: Cluster) -> None:
    writer = SqlEventStore(cluster.url("quality_writer", "quality").render_as_string(hide_password=False))
    event = StreamEvent("conversation-1", "call", "call_started", time.time(), {"channel": "phone"})
    try:
        with pytest.raises(StoreNotReady) as too_early:
            writer.append([event])  # before the inspection made its tables: it may not make them …
        assert "permission denied for schema public" in str(too_early.value.__cause__)
        assert store_unavailable(too_early.value)  # … so the stream's writer keeps the events for later
        inspection = SqlEventStore(cluster.url("quality", "quality").render_as_string(hide_password=False),
                                   writer_role=cluster.prefix + "quality_writer")
        try:
            assert inspection.first_position() is None  # its tables made, the writers granted
            writer.append([event])
            writer.append([event, event])  # one event and several: neither reads an id back
            assert [stored.kind for stored in inspection.after(0, 10)] == ["call_started"] * 3
            for reading in (lambda: writer.after(0, 10), lambda: writer.hits(),
                            lambda: writer.record("forged", Progress(), []),
                            lambda: writer.forget(["conversation-1"], 10)):
                with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                    reading()
            assert len(inspection.after(0, 10)) == 3
        finally:
            inspection.close()
    finally:
        writer.close()
