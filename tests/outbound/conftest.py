"""The dialler's tests run on SQLite and, when RISK_API_TEST_PG_URL is set, on PostgreSQL too
(marker `postgres`); without the URL the PostgreSQL variants are deselected, never skipped."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.outbound.helpers import database_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh dialler database of this test's own."""
    with database_url(request.param, tmp_path) as url:
        yield url
