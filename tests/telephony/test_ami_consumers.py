"""The gateway's and the dialler's AMI watchers: one event they fail on does not end the watch,
and after a reconnect the queue state is asked of Asterisk again (QueueStatus), since the events
sent while the connection was down are lost. Against AmiPeer, the fake Asterisk Manager."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from telephony.ami import RESYNC_TRIES, AmiClient, AmiError, Event, consume_events
from telephony.gateway import AGENT_QUEUE, NotQueued, QueuedCalls, QueueOutcomes, QueueWatch
from telephony.priority import load_priority_rules
from tests.telephony.peers import AmiPeer
from tests.telephony.test_ami import config_for
from tests.waiting import until, within

CALLER = "13812345678"


@pytest.fixture
async def client(peer: AmiPeer) -> AsyncIterator[AmiClient]:
    ami = AmiClient(config_for(peer, action_timeout_seconds=2.0))
    await ami.connect()
    yield ami
    await ami.close()


async def test_an_event_the_handler_fails_on_is_logged_without_its_fields_and_the_next_is_handled(
        caplog: pytest.LogCaptureFixture) -> None:
    events: asyncio.Queue[Event] = asyncio.Queue()
    handled: list[str] = []

    async def handle(event: Event) -> None:
        if event.get("Event") == "QueueCallerJoin" and "Position" not in event:
            raise KeyError(event["CallerIDNum"])  # an error whose text would carry the number
        handled.append(event["Event"])

    watch = asyncio.create_task(consume_events(events, handle, "test watch"))
    for event in ({"Event": "QueueCallerJoin", "CallerIDNum": CALLER}, {"Event": "QueueCallerLeave"}):
        events.put_nowait(event)
    with caplog.at_level(logging.ERROR, logger="telephony.ami"):
        await until(lambda: handled == ["QueueCallerLeave"])
    watch.cancel()
    [record] = [record for record in caplog.records if "test watch" in record.getMessage()]
    assert "QueueCallerJoin" in record.getMessage() and "KeyError" in record.getMessage()
    assert CALLER not in record.getMessage() and not record.exc_info


async def test_a_list_action_collects_only_its_own_events_up_to_the_completion(
        peer: AmiPeer, client: AmiClient) -> None:
    peer.queues = {AGENT_QUEUE: ["PJSIP/caller-1", "PJSIP/caller-2"], "vip": ["PJSIP/caller-3"]}
    listed = await within(client.list_action("QueueStatus", {"Queue": AGENT_QUEUE}, "QueueStatusComplete"))
    assert [(event["Event"], event.get("Channel")) for event in listed] == [
        ("QueueParams", None), ("QueueEntry", "PJSIP/caller-1"), ("QueueEntry", "PJSIP/caller-2")]
    (action,) = peer.actions_named("QueueStatus")
    assert {event["ActionID"] for event in listed} == {action["ActionID"]}


async def test_a_list_that_never_completes_is_an_error_not_a_hang(peer: AmiPeer, client: AmiClient) -> None:
    with pytest.raises(AmiError, match="did not end with NoSuchComplete"):
        await within(client.list_action("QueueStatus", None, "NoSuchComplete", timeout=0.3))


async def test_after_a_reconnect_the_queue_is_what_asterisk_says_not_what_was_missed(
        peer: AmiPeer, client: AmiClient) -> None:
    class Risk:
        reported: list[tuple[str, str]] = []

        async def handoff_call_state(self, handoff_id: str, state: str, agent: str | None) -> None:
            Risk.reported.append((handoff_id, state))

    calls = QueuedCalls(client, load_priority_rules().tiers[0])
    queues = QueueWatch(client)
    outcomes = QueueOutcomes(client, Risk())  # type: ignore[arg-type]
    try:
        calls.handed_over("call-left", "PJSIP/left-1")
        calls.handed_over("call-joined", "PJSIP/joined-1")
        outcomes.queued("PJSIP/left-1", "H-left")
        await peer.emit("QueueCallerJoin", Queue=AGENT_QUEUE, Channel="PJSIP/left-1", Position="1", Count="1")
        await until(lambda: calls.waiting("PJSIP/left-1") and queues.waiting.get(AGENT_QUEUE) == 1)
        # AMI drops; meanwhile the first caller leaves the queue and another joins: no events reach us.
        await peer.drop_connections()
        await until(lambda: not client.connected)
        peer.queues = {AGENT_QUEUE: ["PJSIP/joined-1"], "vip": ["PJSIP/vip-1"]}
        await until(lambda: client.connected and client.reconnects == 1)
        await until(lambda: calls.waiting("PJSIP/joined-1"))
        assert not calls.waiting("PJSIP/left-1") and not calls.waiting("PJSIP/vip-1"), "the agents' queue only"
        await until(lambda: queues.waiting == {AGENT_QUEUE: 1, "vip": 1} and Risk.reported == [("H-left", "unknown")])
        assert len(peer.actions_named("QueueStatus")) == 1, "three watchers, one question to Asterisk"
        # The live events go on from there.
        await peer.emit("QueueCallerLeave", Queue=AGENT_QUEUE, Channel="PJSIP/joined-1", Count="0")
        await until(lambda: not calls.waiting("PJSIP/joined-1") and queues.waiting[AGENT_QUEUE] == 0)
    finally:
        await calls.close()
        await queues.close()
        await outcomes.close()


async def test_a_resync_asterisk_does_not_answer_is_asked_again_and_until_then_asterisk_decides(
        peer: AmiPeer) -> None:
    """Just after a reconnect Asterisk may be too busy to list its queue: the watcher asks again
    (backing off on the client's sleep), and while it does not know which calls wait it does not
    refuse to move one: Asterisk's answer to the move decides."""
    slept: list[float] = []
    silent_tries = [3]  # QueueStatus goes unanswered this many times

    async def sleep(delay: float) -> None:  # the client's backoff: recorded, not waited
        slept.append(delay)
        if len(peer.actions_named("QueueStatus")) >= silent_tries[0]:
            peer.silent_actions.discard("QueueStatus")
        await asyncio.sleep(0)

    client = AmiClient(config_for(peer, action_timeout_seconds=0.5, reconnect_min_seconds=0.05), sleep=sleep)
    await client.connect()
    calls = QueuedCalls(client, load_priority_rules().tiers[0])
    try:
        calls.handed_over("call-1", "PJSIP/waiting-1")
        peer.silent_actions.add("QueueStatus")
        peer.queues = {AGENT_QUEUE: ["PJSIP/waiting-1"]}
        await peer.drop_connections()
        await until(lambda: client.reconnects == 1)
        await until(lambda: calls.waiting("PJSIP/waiting-1") and not calls.waiting("PJSIP/gone-1"))
        assert len(peer.actions_named("QueueStatus")) >= 4
        assert slept[1:4] == [0.05, 0.1, 0.2], "after the reconnect's own wait, backing off between the tries"
        # Never answering: after RESYNC_TRIES the watcher does not know, and lets Asterisk decide.
        silent_tries[0] = 10**6
        peer.silent_actions.add("QueueStatus")
        before = len(peer.actions_named("QueueStatus"))
        await peer.drop_connections()
        await until(lambda: client.reconnects == 2)
        await until(lambda: calls.waiting("PJSIP/gone-1"))
        assert len(peer.actions_named("QueueStatus")) == before + RESYNC_TRIES
        peer.failing_actions["QueueChangePriorityCaller"] = "Unable to change priority caller on queue: No such caller"
        with pytest.raises(NotQueued):
            await within(calls.raise_priority("call-1"))
        assert len(peer.actions_named("QueueChangePriorityCaller")) == 1, "asked of Asterisk, which said no"
    finally:
        await calls.close()
        await client.close()


async def test_a_hand_over_whose_call_left_the_queue_while_ami_was_down_is_reported_unknown_not_guessed(
        peer: AmiPeer, client: AmiClient) -> None:
    class Risk:
        reported: list[tuple[str, str, str | None]] = []

        async def handoff_call_state(self, handoff_id: str, state: str, agent: str | None) -> None:
            Risk.reported.append((handoff_id, state, agent))

    outcomes = QueueOutcomes(client, Risk())  # type: ignore[arg-type]
    try:
        outcomes.queued("PJSIP/left-1", "H-left")
        outcomes.queued("PJSIP/waiting-1", "H-waiting")
        await peer.drop_connections()
        await until(lambda: not client.connected)
        peer.queues = {AGENT_QUEUE: ["PJSIP/waiting-1"]}  # the first call left meanwhile: answered? abandoned?
        await until(lambda: client.connected and outcomes.unknown == 1)
        assert Risk.reported == [("H-left", "unknown", None)], "nothing said that Asterisk did not say"
        await peer.emit("AgentConnect", Queue=AGENT_QUEUE, Channel="PJSIP/left-1", MemberName="小李")  # too late
        await peer.emit("AgentConnect", Queue=AGENT_QUEUE, Channel="PJSIP/waiting-1", MemberName="小王")
        await until(lambda: Risk.reported[1:] == [("H-waiting", "connected", "小王")])  # in order: both read
        assert outcomes.unknown == 1
    finally:
        await outcomes.close()
