"""`make run SCALE=n`'s databases on the real PostgreSQL: scripts/ensure_service_databases.sh makes
them as deploy/postgres-init.sh makes a deployment's (again: it only sets the passwords anew), and
the scaled plan logs each service in as its own role — the risk API, the dialler and the quality
inspection make their tables, the quality stream's writers (Rasa, the gateways, the dialler) add
events, and no role reaches another service's database. Names carry a prefix of this run's own;
everything made is dropped after."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from outbound.queue import Queue
from quality.events import StreamEvent
from quality.store import SqlEventStore
from risk_api.db import Database
from stack.run import stages
from stack.scaled import ServiceDatabases
from stack.services import Ports, Service
from tests.conftest import SECRETS
from tests.deploy.test_postgres_roles import DATABASES, SERVICES, as_superuser, reaches

pytestmark = pytest.mark.postgres
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ensure_service_databases.sh"
DROP_SCRIPT = SCRIPT.with_name("drop_service_databases.sh")


def passwords_env(prefix: str, passwords: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "IVR_DATABASE_PREFIX": prefix,
            **{f"POSTGRES_{role.upper()}_PASSWORD": password for role, password in passwords.items()}}


def ensure(env: dict[str, str]) -> int:
    made = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=180, check=False)
    assert made.returncode == 0, made.stderr
    return int(made.stdout.strip())


@pytest.fixture(scope="module")
def databases() -> Iterator[ServiceDatabases]:
    prefix = f"s{secrets.token_hex(4)}_"
    passwords = {role: f"{role}-password-{secrets.token_hex(8)}" for role in SERVICES}
    port = ensure(passwords_env(prefix, passwords))
    made = ServiceDatabases.from_env({**passwords_env(prefix, passwords), "IVR_DATABASE_PORT": str(port)})
    try:
        yield made
    finally:
        # `make clean-scale`'s script, while a connection is still open: nothing of the prefix is left.
        open_connection = sa.create_engine(made.url("risk"))
        with open_connection.connect():
            dropped = subprocess.run(["bash", str(DROP_SCRIPT)], env=passwords_env(prefix, passwords),
                                     capture_output=True, text=True, timeout=180, check=False)
        open_connection.dispose()
        assert dropped.returncode == 0, dropped.stderr
        left = as_superuser(port, f"psql -qtA -c \"SELECT datname FROM pg_database WHERE datname LIKE '{prefix}%' "
                                  f"UNION ALL SELECT rolname FROM pg_roles WHERE rolname LIKE '{prefix}%'\"")
        assert left.returncode == 0 and left.stdout.strip() == "", (left.stdout, left.stderr)


def test_run_again_the_script_keeps_the_databases_and_takes_a_changed_password(databases: ServiceDatabases) -> None:
    changed = {**databases.passwords, "risk": f"risk-password-{secrets.token_hex(8)}"}
    assert ensure(passwords_env(databases.prefix, changed)) == databases.port
    assert reaches(sa.engine.make_url(ServiceDatabases(databases.host, databases.port, databases.prefix,
                                                       changed).url("risk")))
    old = sa.create_engine(databases.url("risk"))
    with pytest.raises(sa.exc.OperationalError, match="password authentication failed"), old.connect():
        pass
    old.dispose()
    assert ensure(passwords_env(databases.prefix, dict(databases.passwords))) == databases.port
    assert reaches(sa.engine.make_url(databases.url("risk")))


def test_each_service_keeps_its_data_as_its_own_role(databases: ServiceDatabases) -> None:
    risk = Database(databases.url("risk"))
    try:
        assert risk.prepare_schema(lambda session: None) is True  # its tables, made by its own role
    finally:
        risk.engine.dispose()
    queue = Queue(databases.url("outbound"))
    try:
        queue.prepare()
    finally:
        queue.close()
    inspection = SqlEventStore(**_store_args(databases.quality_inspection))
    writer = SqlEventStore(databases.quality_writer["QUALITY_EVENTS_URL"])
    try:
        assert inspection.first_position() is None  # the stream's tables, the writers granted INSERT
        writer.append([StreamEvent("conversation-1", "call", "call_started", time.time(), {"channel": "voice"})])
        assert [event.kind for event in inspection.after(0, 10)] == ["call_started"]
    finally:
        writer.engine.dispose()
        inspection.engine.dispose()
    for role, own in {"rasa": "rasa", "risk": "risk", "outbound": "outbound", "quality_writer": "quality"}.items():
        for database in DATABASES:
            url = sa.engine.make_url(databases.url(role, database))
            assert reaches(url) is (database == own), (role, database)


def _store_args(env: dict[str, str]) -> dict[str, str]:
    return {"url": env["QUALITY_EVENTS_URL"], "writer_role": env["QUALITY_WRITER_ROLE"]}


def test_the_scaled_plan_logs_each_service_in_as_its_own_role(monkeypatch: pytest.MonkeyPatch,
                                                              databases: ServiceDatabases) -> None:
    monkeypatch.setenv("IVR_DATABASE_PREFIX", databases.prefix)
    monkeypatch.setenv("IVR_DATABASE_PORT", str(databases.port))
    for role, password in databases.passwords.items():
        monkeypatch.setenv(f"POSTGRES_{role.upper()}_PASSWORD", password)
    monkeypatch.setenv("REDIS_PASSWORD", "a-redis-password-for-the-plan")
    plan = stages(Ports.free(), SECRETS, 2)
    services: dict[str, Service] = {service.name: service for stage in plan
                                    for service in (stage if isinstance(stage, tuple) else (stage,))}
    writer = databases.quality_writer["QUALITY_EVENTS_URL"]
    assert services["risk_api"].env["RISK_API_DATABASE_URL"] == databases.url("risk")
    assert services["outbound"].env["OUTBOUND_DATABASE_URL"] == databases.url("outbound")
    for name in ("rasa1", "rasa2", "phone_gateway1", "phone_gateway2", "outbound"):
        assert services[name].env["QUALITY_EVENTS_URL"] == writer, name
    assert services["rasa1"].env["RASA_TRACKER_DB_USER"] == databases.prefix + "rasa"
    assert services["quality"].env["QUALITY_EVENTS_URL"] == databases.url("quality")
    assert services["quality"].env["QUALITY_WRITER_ROLE"] == databases.prefix + "quality_writer"
    # Each service logs in as its own roles only; the others get no database at all.
    roles = {"risk_api": {"risk"}, "outbound": {"outbound", "quality_writer"}, "quality": {"quality"},
             **{name: {"quality_writer"} for name in ("rasa1", "rasa2", "phone_gateway1", "phone_gateway2")}}
    for name, service in services.items():
        logins = {sa.engine.make_url(value).username for value in service.env.values()
                  if value.startswith("postgresql")}
        assert logins == {databases.prefix + role for role in roles.get(name, set())}, name
