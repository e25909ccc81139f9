"""The agent desk's hold on campaigns: start, pause and stop, which outlive a dialler restart; the
counts the desk shows; the CSV of outcomes; and the campaign routes' credential and contract."""

from __future__ import annotations

import csv
import io
from dataclasses import replace

import httpx
import pytest
from sqlalchemy import create_engine, text

from outbound.campaigns import Caps
from outbound.queue import SCHEMA_VERSION, Base, CampaignControl, Meta, Queue
from outbound.service import OutboundSettings, service_app
from tests.outbound.helpers import FixedClock, ScriptedOriginator, china, make_campaign
from tests.outbound.test_dialer import TUESDAY, customers, rig

DESK_TOKEN = "a-desk-token-for-the-dialler-tests"


async def test_a_paused_campaign_calls_nobody_even_after_a_restart_until_started_again(db_url: str) -> None:
    clock = FixedClock(china(TUESDAY, 10))
    originator = ScriptedOriginator(clock, lambda request, nth: "no_answer")
    campaign = make_campaign("c")
    dialer, queue, _ = rig(db_url, {"c": campaign}, clock, customers(clock), originator)
    await dialer.tick()
    await dialer.drain()
    assert len(originator.sent) == 3
    assert queue.control_campaign(campaign, "paused", "supervisor", clock.now()) == "paused"
    dialer.start()  # a restart reads the files again: the pause stands
    for _ in range(3):
        clock.advance(hours=1, minutes=1)  # the retries fall due
        await dialer.tick()
        await dialer.drain()
    assert len(originator.sent) == 3 and queue.campaign_states()["c"]["state"] == "paused"
    queue.control_campaign(campaign, "active", "supervisor", clock.now())
    await dialer.tick()
    await dialer.drain()
    assert len(originator.sent) == 6, "the retries that waited are made"


async def test_stopping_a_campaign_skips_what_was_queued_and_records_why(db_url: str) -> None:
    clock = FixedClock(china(TUESDAY, 7))  # before the window: everything waits in the queue
    campaign = make_campaign("c")
    dialer, queue, originator = rig(db_url, {"c": campaign}, clock, customers(clock))
    await dialer.tick()
    assert {attempt.status for attempt in queue.attempts()} == {"queued"}
    queue.control_campaign(campaign, "stopped", "supervisor", clock.now())
    clock.set(china(TUESDAY, 10))
    await dialer.tick()
    await dialer.drain()
    assert originator.sent == []
    assert {(attempt.status, attempt.rule) for attempt in queue.attempts()} == {("skipped", "campaign_stopped")}
    assert {(d.rule, d.owner, d.allowed) for d in queue.decisions()} == {("campaign_stopped", "supervisor", False)}
    report = queue.campaign_report("c")
    assert report["skipped"] == {"campaign_stopped": 3} and report["series"] == {"skipped": 3}


async def test_a_campaign_switched_off_in_its_file_cannot_be_started_from_the_desk(db_url: str) -> None:
    clock = FixedClock(china(TUESDAY, 10))
    campaign = make_campaign("c", enabled=False)
    _, queue, _ = rig(db_url, {"c": campaign}, clock, customers(clock))
    with pytest.raises(ValueError, match="enabled: false"):
        queue.control_campaign(campaign, "active", "supervisor", clock.now())
    with pytest.raises(KeyError):
        queue.control_campaign(make_campaign("never_synced"), "paused", "supervisor", clock.now())
    with pytest.raises(ValueError, match="unknown campaign state"):
        queue.control_campaign(campaign, "running", "supervisor", clock.now())


async def test_the_report_counts_series_calls_outcomes_and_deferrals(db_url: str) -> None:
    clock = FixedClock(china(TUESDAY, 10))
    results = {"C100000": "answered", "C100001": "busy", "C100002": "no_answer"}
    originator = ScriptedOriginator(clock, lambda request, nth: results[request.customer_id])
    campaign = make_campaign("c", caps=Caps(per_customer_per_day=1, per_customer_per_week=5))
    dialer, queue, _ = rig(db_url, {"c": campaign}, clock, customers(clock), originator)
    await dialer.tick()
    await dialer.drain()
    (answered,) = [sent for sent in originator.sent if sent.customer_id == "C100000"]
    await dialer.record_conversation_outcome(answered.attempt_id, "promise_to_pay")
    clock.advance(hours=2)  # the retries fall due: one call a day for this campaign, so tomorrow
    await dialer.tick()
    await dialer.drain()
    report = queue.campaign_report("c")
    assert report["series"] == {"answered": 1, "active": 2}
    assert report["calls"] == {"answered": 1, "busy": 1, "no_answer": 1}
    assert report["outcomes"] == {"promise_to_pay": 1}
    assert report["deferred"] == {"campaign_daily_cap": 2} and report["skipped"] == {}


def test_a_version_1_dialler_database_gains_the_controls_in_place(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'v1.sqlite3'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        for table in Base.metadata.sorted_tables:
            if table.name != CampaignControl.__tablename__:
                table.create(connection)
        connection.execute(Meta.__table__.insert().values(key="schema_version", value="1"))
    engine.dispose()
    queue = Queue(url)
    queue.prepare()
    queue.close()
    engine = create_engine(url)
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT value FROM outbound_meta WHERE key = 'schema_version'")) == str(
            SCHEMA_VERSION)
        assert connection.scalar(text("SELECT count(*) FROM outbound_campaign_controls")) == 0
    engine.dispose()


def settings(desk_token: str | None = DESK_TOKEN) -> OutboundSettings:
    return OutboundSettings(risk_api_url="http://127.0.0.1:9", risk_api_token="t", number_key=b"k",
                            desk_token=desk_token)


async def test_the_campaign_routes_answer_the_desk_token_only_and_keep_to_their_contract(db_url: str) -> None:
    clock = FixedClock(china(TUESDAY, 10))
    dialer, queue, originator = rig(db_url, {"c": make_campaign("c")}, clock, customers(clock))
    await dialer.tick()
    await dialer.drain()
    transport = httpx.ASGITransport(service_app(dialer, settings()))
    desk = {"Authorization": f"Bearer {DESK_TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://dialler") as http:
        assert (await http.get("/health")).status_code == 200, "health needs no credential"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {DESK_TOKEN}"}):
            assert (await http.get("/campaigns", headers=headers)).status_code == 401
            assert (await http.post("/campaigns/c/control", headers=headers,
                                    json={"state": "stopped", "by": "x"})).status_code == 401
        listed = (await http.get("/campaigns", headers=desk)).json()
        assert [(c["id"], c["state"], c["series"], c["calls"]) for c in listed] == [
            ("c", "active", {"answered": 3}, {"answered": 3})]
        for body in ({"state": "running", "by": "x"}, {"state": "paused"}, {"state": "paused", "by": " "},
                     {"state": "paused", "by": "x", "extra": 1}, {"state": "paused", "by": "x" * 65}):
            assert (await http.post("/campaigns/c/control", headers=desk, json=body)).status_code == 422, body
        huge = await http.post("/campaigns/c/control", headers=desk, content=b"{" + b" " * 100_000 + b"}")
        assert huge.status_code == 413
        assert (await http.post("/campaigns/nope/control", headers=desk,
                                json={"state": "paused", "by": "x"})).status_code == 404
        assert (await http.post("/campaigns/..%2Fx/control", headers=desk,
                                json={"state": "paused", "by": "x"})).status_code in (404, 422)
        paused = await http.post("/campaigns/c/control", headers=desk, json={"state": "paused", "by": "supervisor"})
        assert paused.json() == {"id": "c", "state": "paused"}
        exported = await http.get("/campaigns/c/outcomes.csv", headers=desk)
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff"))))
    assert sorted(row["customer_id"] for row in rows) == ["C100000", "C100001", "C100002"]
    assert {(row["status"], row["calls"], row["result"]) for row in rows} == {("answered", "1", "answered")}
    assert not any(sent.number in exported.text for sent in originator.sent), "no phone number in the export"
    assert queue.campaign_states()["c"]["state"] == "paused"


async def test_without_a_desk_token_the_campaign_routes_are_closed(db_url: str) -> None:
    clock = FixedClock(china(TUESDAY, 10))
    dialer, _, _ = rig(db_url, {"c": make_campaign("c")}, clock, customers(clock))
    transport = httpx.ASGITransport(service_app(dialer, replace(settings(), desk_token=None)))
    async with httpx.AsyncClient(transport=transport, base_url="http://dialler") as http:
        assert (await http.get("/campaigns", headers={"Authorization": "Bearer "})).status_code == 401
        assert (await http.get("/health")).status_code == 200
