"""`python -m quality` as the stack starts it, with METRICS_TOKEN and LOG_FORMAT=json: /metrics
answers the monitoring token only, the events it inspects move its counters, and every line it
logs is one JSON object."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from quality.store import URL_ENV, SqlEventStore
from stack.services import ROOT, free_port
from tests.observability.scrape import METRICS_TOKEN, refusals, scrape, value
from tests.quality.scripts import stream, verified_bill_chat

QUALITY_TOKEN = "test-quality-token-0123456789"
STARTUP_BOUND_SECONDS = 60


@dataclass
class Quality:
    url: str
    store: SqlEventStore
    process: subprocess.Popen[str]


@pytest.fixture(scope="module")
def quality(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Quality]:
    workdir: Path = tmp_path_factory.mktemp("quality_metrics")
    events_url = f"sqlite:///{workdir / 'events.sqlite3'}"
    store = SqlEventStore(events_url)  # the schema, before the service reads it
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QUALITY_API_TOKEN": QUALITY_TOKEN, URL_ENV: events_url,
           "QUALITY_PORT": str(port), "METRICS_TOKEN": METRICS_TOKEN, "LOG_FORMAT": "json"}
    process = subprocess.Popen([sys.executable, "-m", "quality"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_BOUND_SECONDS
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(f"{url}/health", timeout=2).json()["status"] == "ok":
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the inspection service did not start"
            time.sleep(0.1)
        yield Quality(url, store, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def test_metrics_need_the_monitoring_token(quality: Quality) -> None:
    assert refusals(quality.url, QUALITY_TOKEN) == [401, 401, 401]


def test_inspected_events_and_requests_are_counted(quality: Quality) -> None:
    before = scrape(quality.url)
    events = stream(verified_bill_chat("chat-metrics"))
    quality.store.append(events)
    deadline = time.monotonic() + STARTUP_BOUND_SECONDS
    while value(scrape(quality.url), "quality_events_consumed_total") < \
            value(before, "quality_events_consumed_total") + len(events):
        assert time.monotonic() < deadline, "the service did not inspect the events"
        time.sleep(0.1)
    assert httpx.get(f"{quality.url}/health", timeout=10).status_code == 200
    after = scrape(quality.url)
    health = {"service": "quality", "method": "GET", "route": "/health", "status": "200"}
    assert value(after, "ivr_http_requests_total", **health) == value(before, "ivr_http_requests_total", **health) + 1


def test_its_log_lines_are_json(quality: Quality) -> None:
    quality.process.send_signal(signal.SIGTERM)
    _, stderr = quality.process.communicate(timeout=30)
    assert quality.process.returncode == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert lines, "the service logged nothing"
    assert all(line["service"] == "quality" and line["level"] and line["time"] for line in lines)
