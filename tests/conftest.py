"""The real stack, started once per test session for every test that needs it: risk API,
action server and Rasa with the trained model.

Started on free loopback ports, with a fresh SQLite database and SMS outbox in a temporary
folder and fresh random secrets; logs land in that folder and are printed when a service fails.

Tests marked `postgres` (the risk API's, the dialler's, the quality stream's PostgreSQL variants)
run when RISK_API_TEST_PG_URL is set (`make test` starts a PostgreSQL); without it they are
deselected, never skipped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from stack.services import Ports, Secrets, stack, started
from tests.risk_api.helpers import PG_URL_ENV
from trust import chat_session


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(PG_URL_ENV):
        return
    deselected = [item for item in items if item.get_closest_marker("postgres")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("postgres")]

SECRETS = Secrets.generated()
RISK_ROLES = {"engine": SECRETS.risk_engine, "desk": SECRETS.risk_desk,
              "gateway": SECRETS.risk_gateway, "dialer": SECRETS.risk_dialer}


@dataclass
class Stack:
    rasa_url: str
    risk_url: str
    web_url: str
    actions_url: str
    outbox: Path
    log_dir: Path
    tracker_db: Path
    keys: Secrets = SECRETS

    def risk_api(self, role: str = "engine") -> httpx.Client:
        """The risk API as one of its callers sees it (engine, desk, gateway, dialer)."""
        return httpx.Client(base_url=self.risk_url, headers={"Authorization": f"Bearer {RISK_ROLES[role]}"},
                            timeout=10)

    def rasa_api(self) -> httpx.Client:
        """Rasa's HTTP API with the operators' token (trackers, status)."""
        return httpx.Client(base_url=self.rasa_url, params={"token": self.keys.rasa_api}, timeout=10)

    def tracker(self, sender: str) -> dict:
        with self.rasa_api() as rasa:
            response = rasa.get(f"/conversations/{sender}/tracker")
        assert response.status_code == 200, response.text
        return response.json()

    def chat_token(self) -> chat_session.ChatSession:
        """A chat session as the web server issues it (tests hold the signing secret)."""
        return chat_session.issue(self.keys.chat_session, time.time())

    def latest_otp(self, phone: str) -> str:
        """The newest one-time code the risk API 'texted' to this phone."""
        lines = self.outbox.read_text(encoding="utf-8").splitlines() if self.outbox.exists() else []
        for line in reversed(lines):
            message = json.loads(line)
            if message.get("to") == phone and message.get("code"):
                return str(message["code"])
        raise AssertionError(f"no one-time code was sent to {phone}")


@pytest.fixture(scope="session")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("stack")
    ports = Ports.free()
    outbox = workdir / "sms_outbox.jsonl"
    tracker_db = workdir / "tracker.sqlite3"
    risk_env = {
        "RISK_API_DATABASE_URL": f"sqlite:///{workdir / 'risk_api.sqlite3'}",
        "RISK_API_SMS_OUTBOX": str(outbox),
        # The suite runs dozens of flows on each demo customer within the hour; the limit itself is
        # tested in tests/risk_api.
        "RISK_API_OTP_SENDS_PER_CUSTOMER_HOUR": "1000",
    }
    try:
        with started(stack(ports, SECRETS, risk_env, tracker_db=tracker_db), workdir):
            yield Stack(f"http://127.0.0.1:{ports.rasa}", f"http://127.0.0.1:{ports.risk_api}",
                        f"http://127.0.0.1:{ports.web}", f"http://127.0.0.1:{ports.actions}", outbox, workdir,
                        tracker_db)
    except RuntimeError as error:
        pytest.fail(str(error))
