"""The real stack, started once per test session for every test that needs it: risk API,
action server and Rasa with the trained model.

Started on free loopback ports, with a fresh SQLite database and SMS outbox in a temporary
folder; logs land in that folder and are printed when a service fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from stack.services import Ports, stack, started

TOKEN = "test-risk-api-token"


@dataclass
class Stack:
    rasa_url: str
    risk_url: str
    outbox: Path
    log_dir: Path

    def risk_api(self) -> httpx.Client:
        return httpx.Client(base_url=self.risk_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

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
    risk_env = {
        "RISK_API_DATABASE_URL": f"sqlite:///{workdir / 'risk_api.sqlite3'}",
        "RISK_API_SMS_OUTBOX": str(outbox),
    }
    try:
        with started(stack(ports, TOKEN, risk_env, tracker_db=workdir / "tracker.sqlite3"), workdir):
            yield Stack(f"http://127.0.0.1:{ports.rasa}", f"http://127.0.0.1:{ports.risk_api}", outbox, workdir)
    except RuntimeError as error:
        pytest.fail(str(error))
