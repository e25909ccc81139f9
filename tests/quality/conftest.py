"""The stream's store is tested on SQLite and, when RISK_API_TEST_PG_URL is set, on PostgreSQL too
(marker `postgres`); without the URL the PostgreSQL variants are deselected, never skipped."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from quality.store import SqlEventStore
from tests.outbound.helpers import database_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlEventStore]:
    """An empty event store of this test's own, on each backend."""
    with database_url(request.param, tmp_path, "quality") as url:
        store = SqlEventStore(url)
        yield store
        store.close()


@pytest.fixture
def pg_store(tmp_path: Path) -> Iterator[SqlEventStore]:
    """An empty event store on PostgreSQL (tests marked `postgres`)."""
    with database_url("postgres", tmp_path, "quality") as url:
        store = SqlEventStore(url)
        yield store
        store.close()
