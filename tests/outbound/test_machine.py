"""Answering machines, from the campaign file to the dialplan to the dialler, at a fixed clock.

The shipped campaigns (due_date_reminder leaves a message, overdue_reminder hangs up) dial through
the AMI test peer. Each Originate it receives is answered with the OriginateResponse fields a real
Asterisk 22 sent (recording), and its channel is then run through ivr_config/asterisk/extensions.conf
(tests/telephony/dialplan_run.py) with the Originate's own variables and an AMD() verdict; the
UserEvents that run raises go back to the dialler through the peer, with the channel fields of the
recorded IvrCall UserEvent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from flowspec.model import FlowSet, load_flowset
from outbound.campaigns import (
    CAMPAIGNS_DIR,
    MACHINE_MESSAGE_MAX_CHARACTERS,
    CampaignError,
    debt_words,
    load_campaign,
    load_campaigns,
    machine_prompt,
)
from outbound.compliance import Compliance
from outbound.dialer import Dialer, DialerSettings
from outbound.originator import AmiOriginator, DialSettings
from outbound.queue import Queue
from quality.events import DIALLER
from quality.figures import daily_figures
from quality.publisher import StreamPublisher
from quality.rules import FlowFacts, Inspector, load_rules
from quality.store import SqlEventStore
from telephony.ami import AmiClient, AmiConfig
from tests.outbound.helpers import (
    NUMBER_KEY,
    FixedClock,
    Person,
    ScriptedOriginator,
    SyntheticDirectory,
    china,
    make_campaign,
)
from tests.telephony.dialplan_run import ChannelRun, run_channel
from tests.telephony.peers import AmiPeer
from tests.telephony.replay import load_session
from tests.telephony.test_asterisk_config import FAILOVER_FOR, walk
from tests.waiting import until, within

TODAY = date(2026, 3, 10)
RECORDING = load_session("originate-outbound.ami.txt", "originator")
(RECORDED_RESPONSE,) = [m.fields for m in RECORDING.events("OriginateResponse") if m.get("Response") == "Success"]
(RECORDED_USER_EVENT,) = [m.fields for m in RECORDING.events("UserEvent")]
# The channel snapshot AMI puts on every UserEvent (the recorded IvrCall's), without its own fields.
CHANNEL_FIELDS = {key: value for key, value in RECORDED_USER_EVENT.items()
                  if key not in ("Event", "UserEvent", "Uuid", "Direction", "Flow", "CustomerId", "OriginateId")}
MACHINE_CAUSE = "LONGGREETING-1500-1500"


@pytest.fixture(scope="module")
def flows() -> FlowSet:
    return load_flowset()


# --- the campaign file -----------------------------------------------------------------------------


def campaign_file(tmp_path: Path, machine: object) -> Path:
    data = yaml.safe_load((CAMPAIGNS_DIR / "due_date_reminder.yaml").read_text(encoding="utf-8"))
    data.pop("machine", None)
    if machine is not None:
        data["machine"] = machine
    path = tmp_path / "due_date_reminder.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def refusal(path: Path, flows: FlowSet) -> str:
    with pytest.raises(CampaignError) as error:
        load_campaign(path, flows)
    return str(error.value)


def test_a_campaign_without_machine_settings_hangs_up_on_a_machine(tmp_path: Path, flows: FlowSet) -> None:
    machine = load_campaign(campaign_file(tmp_path, None), flows).machine
    assert (machine.behaviour, machine.text, machine.prompt) == ("hangup", "", "")


def test_the_shipped_campaigns_say_what_a_machine_gets(flows: FlowSet) -> None:
    campaigns = load_campaigns(flows)
    reminder, collection = campaigns["due_date_reminder"].machine, campaigns["overdue_reminder"].machine
    assert collection.behaviour == "hangup"
    assert reminder.behaviour == "message"
    assert reminder.prompt == machine_prompt("due_date_reminder", reminder.text)
    assert not [word for word in debt_words() if word in reminder.text]


def test_a_machine_message_with_a_debt_word_is_refused_naming_the_word(tmp_path: Path, flows: FlowSet) -> None:
    path = campaign_file(tmp_path, {"behaviour": "message", "message": "您好，您的账单即将到期，请及时处理。"})
    message = refusal(path, flows)
    assert message.startswith(f"{path}: machine.message: contains the debt detail")
    assert "账单" in message and "到期" in message and "phrases.yaml" in message


def test_a_long_machine_message_is_refused(tmp_path: Path, flows: FlowSet) -> None:
    text = "您好，这里是消费金融客服中心。" * 5
    assert len(text) > MACHINE_MESSAGE_MAX_CHARACTERS
    message = refusal(campaign_file(tmp_path, {"behaviour": "message", "message": text}), flows)
    assert f"machine.message: {len(text)} characters" in message
    assert f"at most {MACHINE_MESSAGE_MAX_CHARACTERS}" in message


@pytest.mark.parametrize(("machine", "field", "says"), [
    ({"behaviour": "message"}, "machine.message", "needs the text"),
    ({"behaviour": "hangup", "message": "您好，请回电。"}, "machine.message", "behaviour is 'hangup'"),
    ({"behaviour": "voicemail"}, "machine.behaviour", "voicemail"),
    ({"behaviour": "hangup", "prompt": "x"}, "machine", "prompt"),
])
def test_inconsistent_machine_settings_are_refused(tmp_path: Path, flows: FlowSet, machine: dict, field: str,
                                                   says: str) -> None:
    message = refusal(campaign_file(tmp_path, machine), flows)
    assert field in message and says in message, message


def test_the_sound_name_changes_with_the_words() -> None:
    # A message edited but not rendered again has no sound: the machine hears nothing, not the old words.
    before = machine_prompt("due_date_reminder", "您好，请回电。")
    after = machine_prompt("due_date_reminder", "您好，请您回电。")
    assert before != after
    assert before.startswith("ivr-machine-due_date_reminder-")


# --- the dialplan ----------------------------------------------------------------------------------


def test_ivr_outbound_runs_amd_before_anything_reaches_the_bot() -> None:
    apps = [step.app for step in walk("ivr-outbound", "s")]
    to_bot = next(index for index, step in enumerate(walk("ivr-outbound", "s"))
                  if step.app == "TryExec" and step.data.startswith("AudioSocket("))
    assert "AMD" in apps[:to_bot]
    assert apps.index("AMD") < apps.index("UserEvent"), "the gateway must not hear of a machine's call"
    assert FAILOVER_FOR["ivr-outbound"] == "ivr-failover,outbound,1"


OUTBOUND_VARIABLES = {"IVR_FLOW": "due_date_reminder", "IVR_CUSTOMER_ID": "C100001",
                      "IVR_ORIGINATE_ID": "due_date_reminder:C100001:2026-03-13:1", "IVR_CAMPAIGN": "due_date_reminder",
                      "IVR_CALL_UUID": "0b7c6a1e-3f4d-4e2a-9c1b-5d6e7f809a1b"}


@pytest.mark.parametrize("verdict", ["HUMAN", "NOTSURE"])
def test_a_person_or_an_unsure_verdict_goes_on_to_the_bot(verdict: str) -> None:
    run = run_channel("ivr-outbound", "s", OUTBOUND_VARIABLES | {"IVR_MACHINE": "message",
                                                                 "IVR_MACHINE_PROMPT": "ivr-machine-x-00000000"},
                      amd_status=verdict, amd_cause=f"{verdict}-300-800")
    assert run.reached_bot and run.played == []
    assert [event["UserEvent"] for event in run.user_events] == ["IvrCall"]
    assert run.user_events[0]["OriginateId"] == OUTBOUND_VARIABLES["IVR_ORIGINATE_ID"]


def test_a_machine_with_behaviour_hangup_hears_nothing_and_the_dialler_is_told() -> None:
    run = run_channel("ivr-outbound", "s", OUTBOUND_VARIABLES | {"IVR_MACHINE": "hangup"},
                      amd_status="MACHINE", amd_cause=MACHINE_CAUSE)
    assert not run.reached_bot and run.hung_up and run.played == []
    assert run.user_events == [{"UserEvent": "IvrMachine", "OriginateId": OUTBOUND_VARIABLES["IVR_ORIGINATE_ID"],
                                "Uuid": OUTBOUND_VARIABLES["IVR_CALL_UUID"], "Campaign": "due_date_reminder",
                                "AmdCause": MACHINE_CAUSE, "Behaviour": "hangup"}]


def test_a_machine_with_behaviour_message_hears_the_prompt_after_its_greeting() -> None:
    run = run_channel("ivr-outbound", "s", OUTBOUND_VARIABLES | {"IVR_MACHINE": "message",
                                                                 "IVR_MACHINE_PROMPT": "ivr-machine-x-00000000"},
                      amd_status="MACHINE", amd_cause=MACHINE_CAUSE)
    assert not run.reached_bot and run.hung_up
    assert run.played == ["ivr-machine-x-00000000"]
    apps = run.apps()
    assert apps.index("UserEvent") < apps.index("WaitForSilence") < apps.index("Playback")


def test_message_without_a_prompt_hangs_up_rather_than_playing_an_empty_name() -> None:
    run = run_channel("ivr-outbound", "s", OUTBOUND_VARIABLES | {"IVR_MACHINE": "message"}, amd_status="MACHINE")
    assert run.hung_up and run.played == [] and "Playback" not in run.apps()


# --- the dialler, through AMI ----------------------------------------------------------------------


@dataclass
class Rig:
    dialer: Dialer
    queue: Queue
    peer: AmiPeer
    clock: FixedClock
    directory: SyntheticDirectory


@dataclass
class AmiDialler:
    """A dialler process: its AMI connection, originator and dialler."""
    dialer: Dialer
    originator: AmiOriginator
    client: AmiClient

    async def close(self) -> None:
        await self.dialer.close()
        await self.originator.close()
        await self.client.close()


async def ami_dialler(peer: AmiPeer, queue: Queue, directory: SyntheticDirectory, clock: FixedClock,
                      owner: str) -> AmiDialler:
    client = AmiClient(AmiConfig(host="127.0.0.1", port=peer.port, username="ivr-bot", secret="s3cret",
                                 action_timeout_seconds=5.0, keepalive_seconds=30))
    originator = AmiOriginator(client, DialSettings("PJSIP/{number}@trunk", "4008001234", ring_seconds=30))
    originator.start()
    await within(client.connect())
    dialer = Dialer(queue=queue, campaigns=load_campaigns(load_flowset()), compliance=Compliance(),
                    directory=directory, originator=originator, clock=clock, number_key=NUMBER_KEY,
                    settings=DialerSettings(owner=owner))
    dialer.start()
    return AmiDialler(dialer, originator, client)


@pytest.fixture
async def rig(db_url: str) -> AsyncIterator[Rig]:
    clock = FixedClock(china(TODAY, 10))
    directory = SyntheticDirectory(clock)
    for n in range(3):  # due in 3 days: due_date_reminder (message)
        directory.add(Person(f"C10000{n}", f"1990000000{n}", TODAY + timedelta(days=3)))
    for n in range(3, 5):  # overdue 2 days: overdue_reminder (hang up)
        directory.add(Person(f"C10000{n}", f"1990000000{n}", TODAY - timedelta(days=2)))
    peer = await AmiPeer().start()
    queue = Queue(db_url)
    queue.prepare()
    process = await ami_dialler(peer, queue, directory, clock, "machine-test")
    yield Rig(process.dialer, queue, peer, clock, directory)
    await process.close()
    await peer.stop()
    queue.close()


def variables(action: dict[str, str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in action["Variable"].split("|"))


async def originate_response(peer: AmiPeer, action: dict[str, str], uniqueid: str) -> None:
    fields = {key: value for key, value in RECORDED_RESPONSE.items() if key not in ("Event", "ActionID")}
    fields.update(Channel=f"{action['Channel']}-00000001", Uniqueid=uniqueid)
    await peer.emit("OriginateResponse", ActionID=action["ActionID"], **fields)


async def run_dialplan(peer: AmiPeer, action: dict[str, str], uniqueid: str, verdict: str) -> ChannelRun:
    """The answered channel through the dialplan; its UserEvents to AMI as Asterisk sends them."""
    run = run_channel("ivr-outbound", "s", variables(action), amd_status=verdict,
                      amd_cause=MACHINE_CAUSE if verdict == "MACHINE" else "HUMAN-300-800")
    for event in run.user_events:
        await peer.emit("UserEvent", **(CHANNEL_FIELDS | {"Uniqueid": uniqueid, "Linkedid": uniqueid}), **event)
    return run


def attempt_of(rig: Rig, customer_id: str, number: int = 1):  # type: ignore[no-untyped-def]
    return next(a for a in rig.queue.attempts() if a.customer_id == customer_id and a.number == number)


async def test_machines_get_their_campaigns_behaviour_and_are_retried_people_reach_the_bot(
        rig: Rig, tmp_path: Path) -> None:
    store = SqlEventStore(f"sqlite:///{tmp_path / 'events.sqlite3'}")
    rig.dialer.events = events = StreamPublisher(store, DIALLER)
    await rig.dialer.tick()
    originates = await rig.peer.wait_for_action("Originate", 5)
    assert len(originates) == 5
    by_customer = {variables(action)["IVR_CUSTOMER_ID"]: action for action in originates}
    reminder = rig.dialer.campaigns["due_date_reminder"]
    for customer, action in by_customer.items():
        sent = variables(action)
        if sent["IVR_CAMPAIGN"] == "due_date_reminder":
            assert (sent["IVR_MACHINE"], sent["IVR_MACHINE_PROMPT"]) == ("message", reminder.machine.prompt)
        else:
            assert sent["IVR_MACHINE"] == "hangup" and "IVR_MACHINE_PROMPT" not in sent, customer

    machines = {"C100000": "message", "C100003": "hangup"}
    # C100000: the usual order, answered then AMD's verdict. C100003: the verdict first.
    await originate_response(rig.peer, by_customer["C100000"], "1796200000.0")
    await until(lambda: attempt_of(rig, "C100000").result == "answered")
    runs = {"C100000": await run_dialplan(rig.peer, by_customer["C100000"], "1796200000.0", "MACHINE"),
            "C100003": await run_dialplan(rig.peer, by_customer["C100003"], "1796200000.3", "MACHINE")}
    await until(lambda: attempt_of(rig, "C100003").result == "machine")
    await originate_response(rig.peer, by_customer["C100003"], "1796200000.3")
    for number, customer in enumerate(("C100001", "C100002", "C100004"), 1):
        uniqueid = f"1796200001.{number}"
        await originate_response(rig.peer, by_customer[customer], uniqueid)
        runs[customer] = await run_dialplan(rig.peer, by_customer[customer], uniqueid, "HUMAN")
    await within(rig.dialer.drain())
    await until(lambda: attempt_of(rig, "C100000").result == "machine")

    # On the quality stream, each machine is its call's `dial_result` under the call's conversation id,
    # whether it came before the OriginateResponse or after: the figures count it placed, not answered.
    assert events.writer.flush()
    stored = store.after(0, 100)
    events.close()
    machine_calls = {event.conversation_id for event in stored if event.data.get("result") == "machine"}
    assert machine_calls == {variables(by_customer[customer])["IVR_CALL_UUID"] for customer in machines}
    inspector = Inspector(load_rules(), FlowFacts.from_repository())
    for event in stored:
        inspector.feed(event)
    assert {inspector.conversations[call].dial_result for call in machine_calls} == {"machine"}
    (day,) = daily_figures(inspector.conversations.values(), "Asia/Shanghai", top=5)
    assert (day.outbound_dials, day.outbound_answered) == (5, 3)

    for customer, behaviour in machines.items():
        run, attempt = runs[customer], attempt_of(rig, customer)
        assert not run.reached_bot
        assert run.played == ([reminder.machine.prompt] if behaviour == "message" else [])
        assert attempt.result == "machine" and attempt.status == "ended"
        assert attempt.reason == (f"answering machine (AMD {MACHINE_CAUSE}), behaviour {behaviour}: "
                                  "the call never reached the bot")
        assert attempt.uniqueid == f"1796200000.{customer[-1]}", "the late OriginateResponse keeps its ids"
        campaign = rig.dialer.campaigns[attempt.campaign_id]
        (member,) = [m for m in rig.queue.members() if m.customer_id == customer]
        assert (member.status, member.result) == ("active", "machine")
        retry = attempt_of(rig, customer, 2)
        assert retry.status == "queued"
        assert retry.not_before == rig.clock.now() + campaign.attempts.backoff("machine", 1)
    for customer in ("C100001", "C100002", "C100004"):
        assert runs[customer].reached_bot and runs[customer].played == []
        assert attempt_of(rig, customer).result == "answered"
        assert [m.status for m in rig.queue.members() if m.customer_id == customer] == ["answered"]
        assert await rig.dialer.record_conversation_outcome(attempt_of(rig, customer).id, "completed")

    # Asterisk repeats nothing, but two diallers both hear the event: the second changes nothing.
    before = [(a.id, a.status, a.result, a.not_before) for a in rig.queue.attempts()]
    await run_dialplan(rig.peer, by_customer["C100000"], "1796200000.0", "MACHINE")
    await rig.peer.emit("UserEvent", UserEvent="IvrMachine", OriginateId="due_date_reminder:C999999:2026-03-13:1")
    await rig.peer.emit("Hangup", Uniqueid="1796200000.0", Channel="PJSIP/trunk-00000001", Cause="16")
    await until(lambda: attempt_of(rig, "C100000").call_ended_at is not None)
    assert [(a.id, a.status, a.result, a.not_before) for a in rig.queue.attempts()] == before

    # The retries come at the campaign's time, with the next attempt's id; the people are not called again.
    rig.clock.advance(minutes=30)
    await rig.dialer.tick()
    assert rig.dialer.tasks == {}, "nothing is due yet"
    rig.clock.set(max(attempt_of(rig, c, 2).not_before for c in machines))
    await rig.dialer.tick()
    await rig.peer.wait_for_action("Originate", 7)
    again = [variables(a)["IVR_ORIGINATE_ID"] for a in rig.peer.actions_named("Originate")[5:]]
    assert sorted(again) == sorted(attempt_of(rig, c, 2).id for c in machines)


async def test_a_machine_heard_after_the_dialler_that_placed_the_call_stopped_is_on_the_stream(
        db_url: str, tmp_path: Path) -> None:
    clock = FixedClock(china(TODAY, 10))
    directory = SyntheticDirectory(clock)
    directory.add(Person("C100000", "19900000000", TODAY + timedelta(days=3)))
    store = SqlEventStore(f"sqlite:///{tmp_path / 'events.sqlite3'}")
    peer = await AmiPeer().start()
    queue = Queue(db_url)
    queue.prepare()
    try:
        first = await ami_dialler(peer, queue, directory, clock, "dialler-1")
        first.dialer.events = placed_by = StreamPublisher(store, DIALLER)
        await first.dialer.tick()
        (action,) = await peer.wait_for_action("Originate", 1)
        await originate_response(peer, action, "1796200000.0")
        await within(first.dialer.drain())
        (attempt,) = queue.attempts()
        assert attempt.result == "answered"
        assert placed_by.writer.flush()
        placed_by.close()
        await first.close()  # a restart: the process that placed the call knows nothing any more

        second = await ami_dialler(peer, queue, directory, clock, "dialler-2")
        second.dialer.events = heard_by = StreamPublisher(store, DIALLER)
        await run_dialplan(peer, action, "1796200000.0", "MACHINE")
        await until(lambda: queue.attempts()[0].result == "machine")
        assert heard_by.writer.flush()
        heard_by.close()
        await second.close()
    finally:
        await peer.stop()
        queue.close()

    stored = store.after(0, 100)
    call = variables(action)["IVR_CALL_UUID"]
    assert [(event.conversation_id, event.kind, event.data.get("result")) for event in stored
            if event.kind == "dial_result"] == [(call, "dial_result", "answered"), (call, "dial_result", "machine")]
    inspector = Inspector(load_rules(), FlowFacts.from_repository())
    for event in stored:
        inspector.feed(event)
    assert inspector.conversations[call].dial_result == "machine"
    (day,) = daily_figures(inspector.conversations.values(), "Asia/Shanghai", top=5)
    assert (day.outbound_dials, day.outbound_answered) == (1, 0)


async def test_a_machine_on_the_last_attempt_ends_the_series(db_url: str) -> None:
    clock = FixedClock(china(TODAY, 10))
    directory = SyntheticDirectory(clock)
    directory.add(Person("C100001", "19900000001", TODAY + timedelta(days=3)))
    queue = Queue(db_url)
    queue.prepare()
    originator = ScriptedOriginator(clock)
    campaign = replace(make_campaign(), attempts=replace(make_campaign().attempts, max_attempts=1))
    dialer = Dialer(queue=queue, campaigns={campaign.id: campaign}, compliance=Compliance(), directory=directory,
                    originator=originator, clock=clock, number_key=NUMBER_KEY, settings=DialerSettings(owner="t"))
    dialer.start()
    try:
        await dialer.tick()
        await within(dialer.drain())
        (attempt,) = queue.attempts()
        assert attempt.result == "answered"
        originator.machine(attempt.id)
        (attempt,) = queue.attempts()
        (member,) = queue.members()
        assert (attempt.result, member.status, member.result) == ("machine", "exhausted", "machine")
    finally:
        await dialer.close()
        queue.close()
