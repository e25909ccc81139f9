"""The dialler's /metrics, its HTTP app on loopback over a real queue database (a scripted
originator and directory stand in for Asterisk and the risk API, as in tests/outbound/): the
monitoring token only; dial attempts by campaign and result, and the outcomes the gateway reports."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from outbound.compliance import Compliance
from outbound.dialer import Dialer, DialerSettings
from outbound.queue import Queue
from outbound.service import OutboundSettings, service_app
from tests.loopback import serving_asgi
from tests.observability.scrape import METRICS_TOKEN, refusals, scrape, value
from tests.outbound.helpers import (
    NUMBER_KEY,
    FixedClock,
    Person,
    ScriptedOriginator,
    SyntheticDirectory,
    china,
    make_campaign,
)

GATEWAY_TOKEN = f"test-gateway-{uuid.uuid4().hex}"
TUESDAY = date(2026, 3, 10)
CAMPAIGN = "metrics_campaign"


@dataclass
class Dialling:
    url: str
    dialer: Dialer
    originator: ScriptedOriginator


@pytest.fixture
def dialling(tmp_path: Path) -> Iterator[Dialling]:
    clock = FixedClock(china(TUESDAY, 10))
    directory = SyntheticDirectory(clock)
    for n in range(3):
        directory.add(Person(f"C10000{n}", f"1990000000{n}", TUESDAY + timedelta(days=3)))
    queue = Queue(f"sqlite:///{tmp_path / 'outbound.sqlite3'}")
    queue.prepare()
    # One line is busy: two results to tell apart.
    originator = ScriptedOriginator(clock, script=lambda request, nth: "busy" if request.customer_id == "C100001"
                                    else "answered")
    dialer = Dialer(queue=queue, campaigns={CAMPAIGN: make_campaign(CAMPAIGN)}, compliance=Compliance(),
                    directory=directory, originator=originator, clock=clock, number_key=NUMBER_KEY,
                    settings=DialerSettings(owner="metrics-test"))
    dialer.start()
    settings = OutboundSettings(risk_api_url="http://127.0.0.1:9", risk_api_token="unused-0123456789abcdef",
                                number_key=NUMBER_KEY, gateway_token=GATEWAY_TOKEN, metrics_token=METRICS_TOKEN)
    with serving_asgi(service_app(dialer, settings)) as url:
        yield Dialling(url, dialer, originator)


def test_metrics_need_the_monitoring_token(dialling: Dialling) -> None:
    assert refusals(dialling.url, GATEWAY_TOKEN) == [401, 401, 401]


async def test_attempts_and_conversation_outcomes_are_counted_by_campaign(dialling: Dialling) -> None:
    before = scrape(dialling.url)
    await dialling.dialer.tick()
    await dialling.dialer.drain()
    assert len(dialling.originator.sent) == 3
    answered = next(sent for sent in dialling.originator.sent if sent.customer_id != "C100001")
    reported = httpx.post(f"{dialling.url}/attempts/{answered.attempt_id}/outcome", json={"outcome": "promise_to_pay"},
                          headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"})
    assert reported.status_code == 200, reported.text

    after = scrape(dialling.url)
    for result, count in (("answered", 2), ("busy", 1)):
        labels = {"campaign": CAMPAIGN, "result": result}
        assert value(after, "ivr_outbound_attempts_total", **labels) \
            == value(before, "ivr_outbound_attempts_total", **labels) + count
    outcome = {"campaign": CAMPAIGN, "outcome": "promise_to_pay"}
    assert value(after, "ivr_outbound_conversation_outcomes_total", **outcome) \
        == value(before, "ivr_outbound_conversation_outcomes_total", **outcome) + 1
    route = {"service": "outbound", "method": "POST", "route": "/attempts/{attempt_id}/outcome", "status": "200"}
    assert value(after, "ivr_http_requests_total", **route) == value(before, "ivr_http_requests_total", **route) + 1
    text = repr(after)
    assert answered.attempt_id not in text and "19900000000" not in text and "C100000" not in text
    # The other answered call was an answering machine (AMD, after the OriginateResponse): still one
    # of the answered attempts, and counted as a machine, once however often it is said.
    machine = next(sent for sent in dialling.originator.sent if sent.customer_id not in ("C100001",
                                                                                         answered.customer_id))
    dialling.originator.machine(machine.attempt_id)
    dialling.originator.machine(machine.attempt_id)
    later = scrape(dialling.url)
    assert value(later, "ivr_outbound_answering_machines_total", campaign=CAMPAIGN) \
        == value(before, "ivr_outbound_answering_machines_total", campaign=CAMPAIGN) + 1
    assert value(later, "ivr_outbound_attempts_total", campaign=CAMPAIGN, result="answered") \
        == value(after, "ivr_outbound_attempts_total", campaign=CAMPAIGN, result="answered")
