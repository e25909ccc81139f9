"""The web server's /metrics on loopback, beside a real risk API and a stand-in for Rasa's
live-agent route: the monitoring token only; requests by route template, the relay of live-chat
lines to Rasa, and the agent desk's open event streams."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from risk_api.app import create_app as create_risk_api
from risk_api.config import Settings as RiskSettings
from tests.accounts import AGENT, PASSWORD, accounts_file
from tests.loopback import JsonPeer, serving, serving_asgi
from tests.observability.scrape import METRICS_TOKEN, refusals, scrape, value
from tests.risk_api.helpers import DESK_TOKEN, TOKEN, new_session, serve
from tests.waiting import until
from web.app import create_app
from web.config import Settings

RASA_DESK_TOKEN = f"test-rasa-desk-{uuid.uuid4().hex}"


class RasaLiveAgentRoute(JsonPeer):
    """Rasa's live-agent route as the web server calls it (bot/channels.py): every request answered."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.body()
        self.answer({"events": [], "last": 0})


@dataclass
class Desk:
    web_url: str
    risk_url: str


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    workdir: Path = tmp_path_factory.mktemp("web_metrics")
    risk_settings = RiskSettings(token=TOKEN, role_tokens={"desk": DESK_TOKEN},
                                 database_url=f"sqlite:///{workdir / 'risk.sqlite3'}",
                                 sms_outbox=workdir / "sms.jsonl")
    with serve(create_risk_api(risk_settings)) as risk_url, serving(RasaLiveAgentRoute) as rasa_url:
        settings = Settings(host="127.0.0.1", port=0, rasa_url=rasa_url, risk_api_url=risk_url,
                            risk_api_token=DESK_TOKEN, accounts_file=str(accounts_file()),
                            rasa_internal_url=rasa_url, rasa_desk_token=RASA_DESK_TOKEN,
                            session_secret=secrets.token_hex(32), chat_session_secret=secrets.token_hex(32),
                            chat_allowed_origins=frozenset(), metrics_token=METRICS_TOKEN)
        with serving_asgi(create_app(settings)) as web_url:
            yield Desk(web_url, risk_url)


@contextmanager
def logged_in(desk: Desk) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=desk.web_url, timeout=30) as client:
        answer = client.post("/desk/login", data={"user": AGENT, "password": PASSWORD})
        assert answer.status_code == 303 and answer.headers["location"] == "/desk", answer.text
        yield client


def test_metrics_need_the_monitoring_token(desk: Desk) -> None:
    assert refusals(desk.web_url, DESK_TOKEN) == [401, 401, 401]


def test_requests_and_relayed_lines_are_counted(desk: Desk) -> None:
    before = scrape(desk.web_url)
    assert httpx.post(f"{desk.web_url}/chat/session").status_code == 200
    with httpx.Client(base_url=desk.risk_url, headers={"Authorization": f"Bearer {TOKEN}"}) as engine:
        created = engine.post("/handoffs", json={"session_id": new_session(), "channel": "chat", "flow": "bill_inquiry",
                                                  "reason": "转人工", "priority": "normal", "summary": "客户要求人工"})
    assert created.status_code == 200, created.text
    with logged_in(desk) as agent:
        accepted = agent.post(f"/desk/api/handoffs/{created.json()['handoff_id']}/accept")
    assert accepted.status_code == 200 and accepted.json()["joined"] is True, accepted.text

    after = scrape(desk.web_url)
    issued = {"service": "web", "method": "POST", "route": "/chat/session", "status": "200"}
    assert value(after, "ivr_http_requests_total", **issued) == value(before, "ivr_http_requests_total", **issued) + 1
    assert value(after, "ivr_web_relay_requests_total", do="join", result="200") \
        == value(before, "ivr_web_relay_requests_total", do="join", result="200") + 1
    assert value(after, "ivr_web_relay_duration_seconds_count", do="join") \
        == value(before, "ivr_web_relay_duration_seconds_count", do="join") + 1


async def test_open_desk_streams_are_a_gauge(desk: Desk) -> None:
    with logged_in(desk) as agent:
        cookies = dict(agent.cookies)
    open_before = value(scrape(desk.web_url), "ivr_web_desk_streams")  # other tests' desks in this process
    async with httpx.AsyncClient(base_url=desk.web_url, cookies=cookies, timeout=30) as client, \
            client.stream("GET", "/desk/api/events") as stream:
        assert stream.status_code == 200
        lines = stream.aiter_lines()  # held: a dropped iterator closes the connection
        assert (await anext(lines)).startswith("retry:")
        assert value(await asyncio.to_thread(scrape, desk.web_url), "ivr_web_desk_streams") == open_before + 1
    # The server notices the page went away at its next check.
    await until(lambda: value(scrape(desk.web_url), "ivr_web_desk_streams") == open_before)
