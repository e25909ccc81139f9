"""Runs the real risk API over loopback HTTP (uvicorn in a thread, fresh database per session).

Every HTTP test runs against SQLite and, when RISK_API_TEST_PG_URL is set, against PostgreSQL
(marker `postgres`). Without the URL the PostgreSQL variants are deselected, never skipped.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from risk_api.app import create_app
from risk_api.clock import ShiftedClock
from risk_api.config import Settings
from risk_api.scratch_db import create_scratch_database, drop_scratch_database
from tests.risk_api.helpers import DESK_TOKEN, GATEWAY_TOKEN, TOKEN, Api

PG_URL_ENV = "RISK_API_TEST_PG_URL"
STARTUP_TIMEOUT_S = 60


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(PG_URL_ENV):
        return
    deselected = [item for item in items if item.get_closest_marker("postgres")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("postgres")]


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres",
                                                                marks=pytest.mark.postgres)])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Api]:
    workdir: Path = tmp_path_factory.mktemp(f"risk_api_{request.param}")
    pg_admin_url = os.environ.get(PG_URL_ENV, "")
    pg_name = None
    if request.param == "postgres":
        database_url, pg_name = create_scratch_database(pg_admin_url, "risk_api_test")
    else:
        database_url = f"sqlite:///{workdir / 'risk_api.sqlite3'}"
    settings = Settings(token=TOKEN, role_tokens={"desk": DESK_TOKEN, "gateway": GATEWAY_TOKEN},
                        database_url=database_url, sms_outbox=workdir / "sms_outbox.jsonl")
    clock = ShiftedClock()
    app = create_app(settings, clock=clock)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("risk API test server did not start")
        time.sleep(0.05)
    client = Api(f"http://127.0.0.1:{port}", clock, settings.sms_outbox, database_url,
                 request.param)
    try:
        yield client
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        app.state.service.db.engine.dispose()
        if pg_name:
            drop_scratch_database(pg_admin_url, pg_name)
