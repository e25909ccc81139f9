"""The desk's outbound campaigns page: supervisors only; the supervisor logged in is the one the
dialler records, never a name from the browser; every code in Chinese; the CSV passed through;
the dialler's own refusals and its absence said plainly. Against the real web app and the real
dialler service (its queue on SQLite) on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from outbound.queue import Queue
from outbound.service import OutboundSettings, service_app
from stack.services import free_port
from tests.accounts import AGENT, PASSWORD, REVIEWER, SUPERVISOR
from tests.loopback import serving_asgi
from tests.outbound.helpers import FixedClock, china, make_campaign
from tests.outbound.test_dialer import TUESDAY, customers, rig
from tests.security.test_web_desk import Clock, FakeRiskApi, client, fake_risk_api, log_in, settings_for
from web.app import create_app

DIALLER_TOKEN = "a-dialler-desk-token-for-tests"


@pytest.fixture
def risk_api() -> Iterator[FakeRiskApi]:
    with fake_risk_api() as record:
        yield record


@pytest.fixture
def dialler(tmp_path: Path) -> Iterator[tuple[str, Queue]]:
    with serving_dialler(tmp_path) as served:
        yield served


@contextmanager
def serving_dialler(tmp_path: Path) -> Iterator[tuple[str, Queue]]:
    """The dialler service after a morning's calls of campaign `c` (three customers, all answered)
    and with campaign `off` switched off in its file: its URL and its queue."""
    clock = FixedClock(china(TUESDAY, 10))
    dialer, queue, _ = rig(f"sqlite:///{tmp_path / 'outbound.sqlite3'}",
                           {"c": make_campaign("c"), "off": make_campaign("off", enabled=False)}, clock,
                           customers(clock))

    async def morning() -> None:
        await dialer.tick()
        await dialer.drain()

    with ThreadPoolExecutor(1) as worker:  # its own thread: a browser test's thread runs a loop already
        worker.submit(asyncio.run, morning()).result()
    settings = OutboundSettings(risk_api_url="http://127.0.0.1:9", risk_api_token="t", number_key=b"k",
                                desk_token=DIALLER_TOKEN)
    with serving_asgi(service_app(dialer, settings)) as url:
        yield url, queue
    queue.close()


def web_for(risk_api: FakeRiskApi, dialler_url: str, token: str | None = DIALLER_TOKEN) -> object:
    return create_app(replace(settings_for(risk_api), outbound_url=dialler_url, outbound_desk_token=token), Clock())


async def test_a_supervisor_sees_the_campaigns_in_chinese_and_pauses_one_as_themselves(
        risk_api: FakeRiskApi, dialler: tuple[str, Queue]) -> None:
    url, queue = dialler
    async with client(web_for(risk_api, url)) as browser:
        await log_in(browser, SUPERVISOR, PASSWORD)
        page = await browser.get("/desk/campaigns")
        assert page.status_code == 200 and "/static/campaigns.js" in page.text
        assert 'href="/desk/campaigns"' in (await browser.get("/desk")).text
        listed = (await browser.get("/desk/api/campaigns")).json()
        by_id = {campaign["id"]: campaign for campaign in listed}
        assert (by_id["c"]["state_name"], by_id["c"]["flow_name"]) == ("进行中", "到期还款提醒")
        assert by_id["c"]["series"] == [["已接通", 3]] and by_id["c"]["calls"] == [["接通", 3]]
        assert by_id["off"]["state_name"] == "已暂停" and by_id["off"]["enabled"] is False
        forged = await browser.post("/desk/api/campaigns/c/control", json={"state": "paused", "by": "mallory"})
        assert forged.status_code == 422, "the name is the one logged in"
        paused = await browser.post("/desk/api/campaigns/c/control", json={"state": "paused"})
        assert paused.json() == {"id": "c", "state": "paused", "state_name": "已暂停"}
        refused = await browser.post("/desk/api/campaigns/off/control", json={"state": "active"})
        assert refused.status_code == 409 and "enabled: false" in refused.json()["detail"]["message"]
        for crafted in ("C", "c%2F..", "c;x", "a" * 49):
            answer = await browser.post(f"/desk/api/campaigns/{crafted}/control", json={"state": "paused"})
            assert answer.status_code in (404, 422), crafted
        assert (await browser.post("/desk/api/campaigns/nope/control", json={"state": "paused"})).status_code == 404
        exported = await browser.get("/desk/campaigns/c/outcomes.csv")
    assert queue.campaign_states()["c"]["state"] == "paused"
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert 'filename="c-outcomes.csv"' in exported.headers["content-disposition"]
    assert exported.text.splitlines()[0].lstrip("\ufeff").startswith("campaign,customer_id,")
    assert len(exported.text.splitlines()) == 4


async def test_only_supervisors_reach_the_campaigns(risk_api: FakeRiskApi, dialler: tuple[str, Queue]) -> None:
    url, queue = dialler
    app = web_for(risk_api, url)
    async with client(app) as anonymous:
        assert (await anonymous.get("/desk/api/campaigns")).status_code == 401
        assert (await anonymous.get("/desk/campaigns")).headers["location"] == "/desk"
    for login in (AGENT, REVIEWER):
        async with client(app) as browser:
            await log_in(browser, login, PASSWORD)
            assert (await browser.get("/desk/campaigns")).status_code == 403
            assert (await browser.get("/desk/api/campaigns")).status_code == 403
            assert (await browser.post("/desk/api/campaigns/c/control", json={"state": "stopped"})).status_code == 403
            assert (await browser.get("/desk/campaigns/c/outcomes.csv")).status_code == 403
            assert 'href="/desk/campaigns"' not in (await browser.get("/desk")).text
    assert queue.campaign_states()["c"]["state"] == "active"


async def test_a_dialler_not_configured_or_down_is_said_plainly(risk_api: FakeRiskApi) -> None:
    for token, status, code in ((None, 503, "not_configured"), (DIALLER_TOKEN, 502, "dialler_unavailable")):
        app = web_for(risk_api, f"http://127.0.0.1:{free_port()}", token)
        async with client(app) as browser:
            await log_in(browser, SUPERVISOR, PASSWORD)
            answer = await browser.get("/desk/api/campaigns")
            assert (answer.status_code, answer.json()["detail"]["code"]) == (status, code)
