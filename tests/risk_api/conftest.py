"""Runs the real risk API over loopback HTTP (uvicorn in a thread, fresh database per session).

Every HTTP test runs against SQLite and, when RISK_API_TEST_PG_URL is set, against PostgreSQL
(marker `postgres`). Without the URL the PostgreSQL variants are deselected, never skipped.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.scratch_db import create_scratch_database, drop_scratch_database
from risk_api.app import create_app
from risk_api.clock import ShiftedClock
from risk_api.config import Settings
from tests.risk_api.helpers import DESK_TOKEN, GATEWAY_TOKEN, PG_URL_ENV, TOKEN, Api, serve


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
    try:
        with serve(create_app(settings, clock=clock)) as base_url:
            client = Api(base_url, clock, settings.sms_outbox, database_url, request.param)
            try:
                yield client
            finally:
                client.close()
    finally:
        if pg_name:
            drop_scratch_database(pg_admin_url, pg_name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database of this test's own (SQLite file, or a scratch PostgreSQL one)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'risk_api.sqlite3'}"
        return
    admin_url = os.environ[PG_URL_ENV]
    url, name = create_scratch_database(admin_url, "risk_api_upgrade")
    try:
        yield url
    finally:
        drop_scratch_database(admin_url, name)
