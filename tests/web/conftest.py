"""The whole stack with the web server, and headless Debian Chromium driven by Playwright.

The stack is this package's own (fresh risk API database, SMS outbox and Rasa tracker store in a
temporary folder) because one test restarts Rasa under it. Screenshots go to var/test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from stack.services import ROOT, Ports, Running, Service, quality_inspection, stack, started
from tests.accounts import ACCOUNTS, accounts_file
from tests.conftest import SECRETS, Stack
from web.chromium import launch

ARTIFACTS = ROOT / "var" / "test-artifacts"


def artifact(name: str) -> Path:
    """Where a screenshot named `name` goes."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"


@dataclass
class WebStack(Stack):
    """The shared stack's helpers (risk API clients, SMS outbox) plus the processes, to restart one."""

    services: list[Service] = field(default_factory=list)
    running: Running = field(default_factory=Running)

    def restart(self, name: str) -> None:
        """Stop one service and start it again on the same port and state, healthy before returning."""
        service = next(service for service in self.services if service.name == name)
        old = self.running.processes[name]
        old.terminate()
        old.wait(timeout=30)
        process = service.start(self.log_dir)
        self.running.processes[name] = process
        service.wait_healthy(process)


def set_presence(web_stack: WebStack, state: str, *logins: str) -> None:
    """Agents on- or offline (all test accounts by default), as their desks' heartbeats say."""
    with web_stack.risk_api("desk") as risk:
        for login in logins or ACCOUNTS:
            assert risk.put(f"/agents/{login}/presence", json={"state": state}).status_code == 200


@pytest.fixture(scope="session")
def web_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebStack]:
    workdir = tmp_path_factory.mktemp("web-stack")
    ports = Ports.free()
    outbox = workdir / "sms_outbox.jsonl"
    risk_env = {"RISK_API_DATABASE_URL": f"sqlite:///{workdir / 'risk_api.sqlite3'}",
                "RISK_API_SMS_OUTBOX": str(outbox)}
    tracker_db = workdir / "tracker.sqlite3"
    services = stack(ports, SECRETS, risk_env, tracker_db=tracker_db,
                     web_env={"AGENT_ACCOUNTS_FILE": str(accounts_file()), "CHAT_WAIT_LIMIT_SECONDS": "0"})
    services.append(quality_inspection(ports, SECRETS, tracker_db))  # the supervisors' live board
    try:
        with started(services, workdir) as running:
            yield WebStack(f"http://127.0.0.1:{ports.rasa}", f"http://127.0.0.1:{ports.risk_api}",
                           f"http://127.0.0.1:{ports.web}", f"http://127.0.0.1:{ports.actions}", outbox, workdir,
                           tracker_db, services=services, running=running)
    except RuntimeError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    # Closed with this package: Playwright's event loop must not outlive it into other tests' asyncio.
    with sync_playwright() as playwright:
        try:
            launched = launch(playwright)
        except RuntimeError as error:
            pytest.fail(str(error))
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser profile per test (its own storage, so its own chat session)."""
    context = browser.new_context(locale="zh-CN", viewport={"width": 1024, "height": 768})
    context.set_default_timeout(30_000)
    opened = context.new_page()
    yield opened
    for number, each in enumerate(context.pages):
        each.screenshot(path=str(artifact(f"{request.node.name}-end-{number}")), full_page=True)
    context.close()
