"""The dialler end to end at a fixed clock: the real risk API (dialer token, over loopback HTTP),
the shipped due_date_reminder campaign, the queue, and AMI through the AMI test peer, which
answers each Originate with the OriginateResponse fields a real Asterisk 22 sent (recording)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from flowspec.model import load_flowset
from outbound.campaigns import Selection, load_campaigns
from outbound.compliance import Compliance
from outbound.dialer import Dialer, DialerSettings
from outbound.directory import RiskApiDirectory
from outbound.originator import AmiOriginator, DialSettings
from outbound.queue import Queue
from risk_api import demo
from risk_api.app import create_app
from risk_api.config import Settings
from telephony.ami import AmiClient, AmiConfig
from tests.outbound.helpers import NUMBER_KEY, FixedClock, china, make_campaign
from tests.risk_api.helpers import serve
from tests.telephony.peers import AmiPeer
from tests.telephony.replay import load_session

TODAY = date(2026, 3, 10)
DIALER_TOKEN = f"test-dialer-{uuid.uuid4().hex}"
DESK_TOKEN = f"test-desk-{uuid.uuid4().hex}"
ENGINE_TOKEN = f"test-engine-{uuid.uuid4().hex}"
PHONES = {person.customer_id: person.phone for person in demo.identities()}
RECORDED = {message.get("Response"): message.fields
            for message in load_session("originate-outbound.ami.txt", "originator").events("OriginateResponse")}
TIMEOUT = 20.0


@pytest.fixture(scope="module")
def clock() -> FixedClock:
    return FixedClock(china(TODAY, 10))


@pytest.fixture(scope="module")
def risk_api(tmp_path_factory: pytest.TempPathFactory, clock: FixedClock) -> Iterator[str]:
    workdir: Path = tmp_path_factory.mktemp("risk_api_for_dialer")
    settings = Settings(token=ENGINE_TOKEN,
                        role_tokens={"dialer": DIALER_TOKEN, "desk": DESK_TOKEN},
                        database_url=f"sqlite:///{workdir / 'risk.sqlite3'}", sms_outbox=workdir / "sms.jsonl")
    with serve(create_app(settings, clock=clock)) as base_url:
        yield base_url


@dataclass
class Rig:
    dialer: Dialer
    queue: Queue
    peer: AmiPeer
    client: AmiClient
    clock: FixedClock


@pytest.fixture
async def rig(db_url: str, risk_api: str, clock: FixedClock) -> AsyncIterator[Rig]:
    clock.set(china(TODAY, 10))
    peer = await AmiPeer().start()
    client = AmiClient(AmiConfig(host="127.0.0.1", port=peer.port, username="ivr-bot", secret="s3cret",
                                 action_timeout_seconds=2.0, reconnect_min_seconds=0.05,
                                 reconnect_max_seconds=0.2, keepalive_seconds=5))
    originator = AmiOriginator(client, DialSettings("PJSIP/{number}@trunk", "4008001234", ring_seconds=30))
    originator.start()
    await client.connect()
    campaigns = {c.id: c for c in load_campaigns(load_flowset()).values() if c.id == "due_date_reminder"}
    queue = Queue(db_url)
    queue.prepare()
    directory = RiskApiDirectory(risk_api, DIALER_TOKEN)
    dialer = Dialer(queue=queue, campaigns=campaigns, compliance=Compliance(), directory=directory,
                    originator=originator, clock=clock, number_key=NUMBER_KEY, settings=DialerSettings(owner="e2e"))
    dialer.start()
    yield Rig(dialer, queue, peer, client, clock)
    await dialer.close()
    await originator.close()
    await client.close()
    await directory.close()
    await peer.stop()
    queue.close()


async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), TIMEOUT)


def variables(action: dict[str, str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in action["Variable"].split("|"))


async def answer(peer: AmiPeer, action: dict[str, str], response: str, reason: str, uniqueid: str) -> None:
    fields = {key: value for key, value in RECORDED[response].items() if key not in ("Event", "ActionID")}
    fields.update(Reason=reason, Channel=f"{action['Channel']}-0000001", Uniqueid=uniqueid if response == "Success"
                  else "<unknown>")
    await peer.emit("OriginateResponse", ActionID=action["ActionID"], **fields)


async def test_a_campaign_day_through_the_risk_api_and_ami(rig: Rig, risk_api: str) -> None:
    due_soon = sorted(person["customer_id"] for person in demo.customers_with_tag("due_soon"))
    opted_out = due_soon[0]
    async with httpx.AsyncClient(base_url=risk_api, headers={"Authorization": f"Bearer {DIALER_TOKEN}"}) as http:
        assert (await http.post("/outbound/do-not-call", json={"customer_id": opted_out,
                                                               "source": "agent"})).status_code == 200
    await rig.dialer.tick()
    members = rig.queue.members()
    assert sorted(m.customer_id for m in members) == due_soon  # due in 3 days, per the risk API
    assert {m.cycle for m in members} == {(TODAY + timedelta(days=3)).isoformat()}
    # Pacing: 10 channels. The opted-out customer is skipped (and recorded); 9 Originates go out.
    await until(lambda: len(rig.peer.actions_named("Originate")) == 9)
    originates = rig.peer.actions_named("Originate")
    for action in originates:
        sent = variables(action)
        assert set(sent) == {"IVR_FLOW", "IVR_CUSTOMER_ID", "IVR_ORIGINATE_ID", "IVR_CALL_UUID", "IVR_CAMPAIGN",
                             "IVR_MACHINE", "IVR_MACHINE_PROMPT"}
        assert (sent["IVR_FLOW"], sent["IVR_CAMPAIGN"]) == ("due_date_reminder", "due_date_reminder")
        assert (sent["IVR_MACHINE"], sent["IVR_MACHINE_PROMPT"]) == (
            "message", rig.dialer.campaigns["due_date_reminder"].machine.prompt)
        assert sent["IVR_ORIGINATE_ID"] == f"due_date_reminder:{sent['IVR_CUSTOMER_ID']}:2026-03-13:1"
        assert action["Channel"] == f"PJSIP/{PHONES[sent['IVR_CUSTOMER_ID']]}@trunk"
        assert (action["Context"], action["Exten"], action["Async"]) == ("ivr-outbound", "s", "true")
    assert opted_out not in {variables(action)["IVR_CUSTOMER_ID"] for action in originates}
    # Each call its own conversation id: a random UUID, nothing of the customer.
    call_ids = {variables(action)["IVR_CALL_UUID"] for action in originates}
    assert len(call_ids) == 9 and all(re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", i) for i in call_ids)
    (skip,) = [d for d in rig.queue.decisions() if not d.allowed]
    assert (skip.customer_id, skip.rule, skip.retry_at) == (opted_out, "do_not_call", None)

    busy, failed, *answered = originates
    await answer(rig.peer, busy, "Failure", "5", "")
    await answer(rig.peer, failed, "Failure", "0", "")
    for number, action in enumerate(answered):
        await answer(rig.peer, action, "Success", "4", f"1796110481.{number}")
    await asyncio.wait_for(rig.dialer.drain(), TIMEOUT)

    by_customer = {a.customer_id: a for a in rig.queue.attempts() if a.number == 1}
    assert by_customer[variables(busy)["IVR_CUSTOMER_ID"]].result == "busy"
    assert by_customer[variables(failed)["IVR_CUSTOMER_ID"]].result == "failed"
    for number, action in enumerate(answered):
        attempt = by_customer[variables(action)["IVR_CUSTOMER_ID"]]
        assert (attempt.result, attempt.uniqueid, attempt.action_id) == (
            "answered", f"1796110481.{number}", action["ActionID"])
    retries = {a.customer_id: a for a in rig.queue.attempts() if a.number == 2}
    assert set(retries) == {variables(busy)["IVR_CUSTOMER_ID"], variables(failed)["IVR_CUSTOMER_ID"]}
    assert retries[variables(busy)["IVR_CUSTOMER_ID"]].not_before == rig.clock.now() + timedelta(minutes=30)

    # The 7 answered calls are still in conversation: 3 channels are free for the next customers.
    await rig.dialer.tick()
    await until(lambda: len(rig.peer.actions_named("Originate")) == 12)
    # Two callers hang up: their channels free up for two more.
    for uniqueid in ("1796110481.0", "1796110481.1"):
        await rig.peer.emit("Hangup", Channel="PJSIP/trunk-0000001", Uniqueid=uniqueid, Cause="16")
    await until(lambda: sum(a.call_ended_at is not None for a in rig.queue.attempts()) == 2)
    await rig.dialer.tick()
    await until(lambda: len(rig.peer.actions_named("Originate")) == 14)
    ids = [variables(action)["IVR_ORIGINATE_ID"] for action in rig.peer.actions_named("Originate")]
    assert len(ids) == len(set(ids))
    for action in rig.peer.actions_named("Originate")[9:]:
        await answer(rig.peer, action, "Failure", "3", "")
    await asyncio.wait_for(rig.dialer.drain(), TIMEOUT)

    # Every number given out was audited, masked.
    async with httpx.AsyncClient(base_url=risk_api, headers={"Authorization": f"Bearer {DESK_TOKEN}"}) as desk:
        entries = (await desk.get("/audit", params={"limit": 500})).json()
    released = [e for e in entries if e["kind"] == "outbound_contact"]
    assert len(released) >= 15 and all("****" in e["inputs"]["phone"] for e in released)


async def test_a_satisfaction_callback_calls_the_customers_verified_in_their_own_chats_that_day(
        rig: Rig, risk_api: str) -> None:
    """`selection: {contacted_days_ago: 0}`: the risk API selects whom it verified today in a chat
    or call of their own; the call's cycle is the contact's day."""
    chatted, not_verified = demo.customers_with_tag("normal")[:2]  # both in China time
    async with httpx.AsyncClient(base_url=risk_api, headers={"Authorization": f"Bearer {ENGINE_TOKEN}"}) as http:
        for person, name in ((chatted, chatted["name"]), (not_verified, "王错名")):
            answer = await http.post("/verification/l1", json={
                "phone": person["phone"], "name": name, "id_last4": person["id_last4"],
                "session_id": uuid.uuid4().hex, "channel": "chat"})
            assert answer.json()["verified"] is (person is chatted)
    survey = make_campaign("satisfaction_callback", flow="satisfaction_survey",
                           selection=Selection(contacted_days_ago=0))
    rig.dialer.campaigns = {survey.id: survey}
    rig.dialer.start()  # the dialler's campaigns, as loaded at its start
    await rig.dialer.tick()
    assert [(m.customer_id, m.cycle) for m in rig.queue.members()] == [(chatted["customer_id"], TODAY.isoformat())]
    (action,) = await rig.peer.wait_for_action("Originate", 1)
    sent = variables(action)
    assert (sent["IVR_CUSTOMER_ID"], sent["IVR_FLOW"], sent["IVR_CAMPAIGN"]) == (
        chatted["customer_id"], "satisfaction_survey", "satisfaction_callback")
    assert action["Channel"] == f"PJSIP/{PHONES[chatted['customer_id']]}@trunk"


async def test_ami_down_at_start_and_mid_campaign_loses_nothing_and_dials_nothing_twice(rig: Rig) -> None:
    port = rig.peer.port
    await rig.peer.stop()
    await until(lambda: not rig.client.connected)
    await rig.dialer.tick()  # plans: the queue fills, nothing is claimed while AMI is down
    assert len(rig.queue.members()) == 40
    assert rig.dialer.tasks == {} and {a.status for a in rig.queue.attempts()} == {"queued"}

    peer = await AmiPeer(port=port).start()  # Asterisk back: the client logs in again by itself
    try:
        await until(lambda: rig.client.connected)
        await rig.dialer.tick()
        # Each claimed attempt has sent its Originate, or was skipped by a rule and is done.
        await until(lambda: len(rig.dialer.tasks) == len(peer.actions_named("Originate")) >= 9)
        first = peer.actions_named("Originate")
        for number, action in enumerate(first[:4]):
            await answer(peer, action, "Success", "4", f"1796110482.{number}")
        await until(lambda: sum(a.result == "answered" for a in rig.queue.attempts()) == 4)
        await peer.stop()  # AMI drops with the other calls ringing: their OriginateResponse never comes
    finally:
        await peer.stop()
    # Those dials end as unknown when the wait for their response runs out; shortened here.
    for task in list(rig.dialer.tasks.values()):
        task.cancel()  # as if this dialler were killed while they rang
    await asyncio.gather(*rig.dialer.tasks.values(), return_exceptions=True)
    rig.clock.advance(minutes=4)  # past the lease
    await rig.dialer.tick()
    lost = [a for a in rig.queue.attempts() if a.result == "unknown"]
    assert len(lost) == len(first) - 4 and all(a.number == 1 for a in lost)
    retries = [a for a in rig.queue.attempts() if a.number == 2]
    assert len(retries) == len(lost) and all(a.status == "queued" for a in retries)

    peer = await AmiPeer(port=port).start()
    try:
        await until(lambda: rig.client.connected)
        rig.clock.advance(minutes=61)  # the retries are due, after the first attempts still queued
        answered: set[str] = set()
        while True:
            before = len(peer.actions_named("Originate"))
            await rig.dialer.tick()
            # Every attempt claimed has sent its Originate (or was skipped by a rule and is done).
            await until(lambda: len(rig.dialer.tasks) == len(peer.actions_named("Originate")) - len(answered))
            if len(peer.actions_named("Originate")) == before:
                break
            for action in peer.actions_named("Originate"):
                if action["ActionID"] not in answered:
                    answered.add(action["ActionID"])
                    await answer(peer, action, "Failure", "3", "")
            await asyncio.wait_for(rig.dialer.drain(), TIMEOUT)
        ids = [variables(action)["IVR_ORIGINATE_ID"] for action in first + peer.actions_named("Originate")]
        assert len(ids) == len(set(ids)), "no attempt was dialled twice"
        assert sorted(i.removesuffix(":2") for i in ids if i.endswith(":2")) == sorted(
            a.id.removesuffix(":1") for a in lost), "each lost call got its second attempt, once"
        skipped = {d.customer_id for d in rig.queue.decisions() if d.rule == "do_not_call"}
        # 11:05 in Beijing is 03:05 in London: the customer living there is planned for their morning.
        waiting = {a.customer_id for a in rig.queue.attempts() if a.number == 1 and a.status == "queued"}
        assert waiting == {person["customer_id"] for occurrence, person in enumerate(demo.customers_with_tag(
            "due_soon")) if demo.TIMEZONE_BY_OCCURRENCE.get(occurrence) == "Europe/London"}
        # Every customer once (but those on the do-not-call list and those asleep), and the lost calls' retries.
        assert len(ids) == 40 - len(skipped) - len(waiting) + len(lost)
    finally:
        await peer.stop()
