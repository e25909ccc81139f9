"""The risk API's /metrics on loopback: the monitoring token only, and real requests move its
counters (HTTP by route template, risk decisions, hand-overs, the waiting queue) with no customer,
session or number in any label."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from risk_api.app import create_app
from risk_api.clock import ShiftedClock
from risk_api.config import Settings
from tests.observability.scrape import METRICS_TOKEN, moved, refusals, scrape
from tests.risk_api.helpers import TOKEN, Api, new_session, serve


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    workdir: Path = tmp_path_factory.mktemp("risk_api_metrics")
    database_url = f"sqlite:///{workdir / 'risk_api.sqlite3'}"
    settings = Settings(token=TOKEN, database_url=database_url, sms_outbox=workdir / "sms_outbox.jsonl",
                        metrics_token=METRICS_TOKEN)
    clock = ShiftedClock()
    with serve(create_app(settings, clock=clock)) as base_url:
        client = Api(base_url, clock, settings.sms_outbox, database_url, "sqlite")
        try:
            yield client
        finally:
            client.close()


def test_metrics_need_the_monitoring_token(api: Api) -> None:
    # The engine's own token opens the API, not its metrics.
    assert refusals(api.base_url, TOKEN) == [401, 401, 401]
    assert api.http.post("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).status_code == 405


def test_without_a_token_set_no_one_reads_metrics(tmp_path: Path) -> None:
    settings = Settings(token=TOKEN, database_url=f"sqlite:///{tmp_path / 'risk.sqlite3'}",
                        sms_outbox=tmp_path / "sms.jsonl")
    with serve(create_app(settings)) as base_url:
        assert refusals(base_url, METRICS_TOKEN) == [401, 401, 401]


def test_decisions_handoffs_and_requests_are_counted_without_personal_data(api: Api) -> None:
    person = api.take_clean()
    session_id = api.verified(person, "L1")
    before = scrape(api.base_url)

    assert api.decide(person, session_id, "limit_increase").json()["decision"] == "allow"
    handoff_session = new_session()
    created = api.http.post("/handoffs", json={
        "session_id": handoff_session, "channel": "voice", "flow": "bill_inquiry", "reason": "转人工",
        "priority": "high", "summary": f"客户{person['name']}要求人工，电话{person['phone']}"})
    assert created.status_code == 200, created.text
    assert api.http.get(f"/customers/{uuid.uuid4().hex[:8]}/profile").status_code in (404, 422)

    after = scrape(api.base_url)
    assert moved(before, after, "ivr_risk_decisions_total", action="limit_increase", decision="allow") == 1
    assert moved(before, after, "ivr_handoffs_created_total", priority="high", channel="voice") == 1
    assert moved(before, after, "ivr_handoffs_waiting", priority="high") == 1
    route = "/customers/{customer_id}/decisions"
    assert moved(before, after, "ivr_http_requests_total", service="risk_api", method="POST", route=route,
                 status="200") == 1
    assert moved(before, after, "ivr_http_request_duration_seconds_count", service="risk_api", route=route) == 1

    text = "\n".join(f"{name}{sorted(labels)}" for name, labels in after)
    for personal in (person["customer_id"], person["phone"], person["name"], session_id, handoff_session):
        assert personal not in text


def test_unknown_paths_share_one_label(api: Api) -> None:
    assert api.http.get("/13800001111").status_code == 404  # a path a client made up: a phone number
    routes = {dict(labels)["route"] for name, labels in scrape(api.base_url) if name == "ivr_http_requests_total"}
    assert "unmatched" in routes and not any("13800001111" in route for route in routes)
