"""The CPU the benchmarks divide by the work done (stack/services.py), read from /proc: a service's
own with its children's, the ones it waited for included, and the local PostgreSQL's, which the
scaled topology's turns spend in the database's backends."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from stack.services import family_cpu_seconds, postgres_cpu_seconds

# A parent that starts a child burning 0.4 s of CPU (counted in CPU time, not on the clock, so a
# busy machine only makes it slower), waits for it, then waits for its stdin to close.
PARENT = """
import subprocess, sys
subprocess.run([sys.executable, "-c",
                "import time\\nwhile time.process_time() < 0.4: pass"], check=True)
print("done", flush=True)
sys.stdin.read()
"""


def test_a_service_counts_the_children_it_waited_for() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "done"
        used = family_cpu_seconds({"parent": parent.pid, "nobody": 2 ** 22 + 1})
    finally:
        parent.communicate("", timeout=30)
    assert used["parent"] >= 0.35
    assert used["nobody"] == 0.0


@pytest.mark.postgres
def test_postgres_cpu_grows_with_the_work_its_backends_do() -> None:
    engine = sa.create_engine(os.environ["RISK_API_TEST_PG_URL"])
    try:
        with engine.connect() as connection:
            before = postgres_cpu_seconds()
            connection.execute(sa.text("SELECT count(*) FROM generate_series(1, 5000000)")).scalar_one()
            after = postgres_cpu_seconds()  # the backend still lives: its own ticks
    finally:
        engine.dispose()
    assert after - before >= 0.05
