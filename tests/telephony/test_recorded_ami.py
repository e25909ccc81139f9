"""AmiClient, ChannelDirectory and QueueWatch against AMI traffic recorded from a real Asterisk 22.

Each test replays one recorded session (tests/telephony/replay.py) and does what our gateway or
dialer did in it; the replay fails the test if our client sends anything the recording does not
have. Values asserted here are the recording's, e.g. the caller number in the UserEvent is the
one the test caller set by dialling (19900000002), not the one it rang from.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from telephony.ami import AmiClient, AmiConfig, AmiError, ChannelDirectory, Event, Response
from telephony.gateway import QueueWatch
from tests.telephony.replay import RECORDINGS, ReplayAmiPeer, Session
from tests.waiting import BOUND_SECONDS, until, within

# No skip: CI has ../shared beside the repository; without the recordings these tests fail loudly.
assert (RECORDINGS / "README.md").is_file(), f"no recorded AMI sessions in {RECORDINGS} (set ASTERISK_SESSIONS_DIR)"

GREETING = "inbound-greeting-hangup.ami.txt"
HANDOVER = "inbound-dtmf-handover-agent-answers.ami.txt"
ABANDON = "inbound-queue-abandon.ami.txt"
ORIGINATE = "originate-outbound.ami.txt"
TIMEOUT = BOUND_SECONDS  # the client's action timeout and the directory's waits: only a hung replay reaches it


@contextlib.asynccontextmanager
async def replayed(file_name: str, session: str = "gateway") -> AsyncIterator[tuple[ReplayAmiPeer, AmiClient]]:
    """The peer replaying `session` and a client for it, not yet connected: subscribe first."""
    async with ReplayAmiPeer.of(file_name, session) as peer:
        # Any secret: the recording has `<secret>`; the replay does not compare it.
        client = AmiClient(AmiConfig(host="127.0.0.1", port=peer.port, username="ivr-bot", secret="replay",
                                     action_timeout_seconds=TIMEOUT))
        try:
            yield peer, client
        finally:
            await client.close()


@contextlib.asynccontextmanager
async def directory_of(client: AmiClient) -> AsyncIterator[ChannelDirectory]:
    directory = ChannelDirectory(client)
    directory.start()
    try:
        yield directory
    finally:
        await directory.close()


async def hand_over_as_recorded(client: AmiClient, session: Session, channel: str) -> list[Response]:
    """What the gateway sent to hand the call to the agents: Setvar for each variable, Redirect."""
    responses = [await within(client.setvar(channel, setvar.fields["Variable"], setvar.fields["Value"]))
                 for setvar in session.actions("Setvar")]
    (redirect,) = session.actions("Redirect")
    responses.append(await within(client.redirect(channel, redirect.fields["Context"], redirect.fields["Exten"],
                                                  int(redirect.fields["Priority"]))))
    return responses


async def assert_every_event_arrived(everything: asyncio.Queue[Event], peer: ReplayAmiPeer) -> None:
    """Each event Asterisk sent reached a subscriber once, in order, field for field."""
    expected = [{"Event": message.event, **{key: value for key, value in message.headers if key != "Event"}}
                for message in peer.sent_events()]
    received = [await within(everything.get()) for _ in expected]
    assert received == expected
    assert everything.empty()


async def test_ivr_call_user_event_maps_the_call_to_its_channel_and_caller_until_the_hangup() -> None:
    call_uuid = "f2f05b5b-3278-4e5d-9df3-dd8c84e60ca9"
    async with replayed(GREETING) as (peer, client), directory_of(client) as directory:
        everything = client.subscribe()
        hangup = peer.pause_before("Hangup")
        announced = asyncio.create_task(directory.channel_for(call_uuid, timeout=TIMEOUT))
        await within(client.connect())
        call = await within(announced)
        assert (call.channel, call.caller_number, call.caller_name) == ("PJSIP/caller-00000000", "19900000002",
                                                                        "Test Caller")
        assert (call.unique_id, call.linked_id, call.direction) == ("1796110387.0", "1796110387.0", "inbound")
        await within(hangup.reached.wait())
        assert directory.known(call_uuid) == call, "known while the call is up"
        hangup.resume()
        await within(peer.played())
        await until(lambda: directory.known(call_uuid) is None)
        await assert_every_event_arrived(everything, peer)


async def test_handover_setvars_and_redirect_succeed_and_queue_events_follow_in_order() -> None:
    caller = "PJSIP/caller-00000001"
    agent = "Local/s@test-agent-00000000"
    async with replayed(HANDOVER) as (peer, client), directory_of(client) as directory:
        queues = QueueWatch(client)
        everything = client.subscribe()
        watched = client.subscribe({"QueueCallerJoin", "QueueCallerLeave", "AgentCalled", "AgentConnect",
                                    "AgentComplete", "Hangup"})
        agent_called = peer.pause_before("AgentCalled")  # the caller waits in the queue until then
        announced = asyncio.create_task(directory.channel_for("ccfa3ed0-6515-47fd-a1d7-1f920ce21d4f", TIMEOUT))
        await within(client.connect())
        call = await within(announced)
        assert call.channel == caller

        responses = await hand_over_as_recorded(client, peer.session, call.channel)
        assert [(response["Response"], response["Message"]) for response in responses] == [
            ("Success", "Variable Set")] * 4 + [("Success", "Redirect successful")]
        sent_ids = [action.get("ActionID") for action in peer.received if action.action in ("Setvar", "Redirect")]
        assert [response["ActionID"] for response in responses] == sent_ids

        await within(agent_called.reached.wait())
        await until(lambda: queues.waiting.get("agents") == 1)
        agent_called.resume()
        await within(peer.played())
        events = [await within(watched.get()) for _ in range(8)]
        assert [(event["Event"], event["Channel"]) for event in events] == [
            ("QueueCallerJoin", caller), ("AgentCalled", caller), ("QueueCallerLeave", caller),
            ("AgentConnect", caller), ("Hangup", f"{agent};2"), ("AgentComplete", caller), ("Hangup", f"{agent};1"),
            ("Hangup", caller)]
        join, called, leave, connect, _, complete, _, _ = events
        assert (join["Queue"], join["Position"], join["Count"]) == ("agents", "1", "1")
        assert (called["Queue"], called["MemberName"], called["Interface"], called["DestChannel"]) == (
            "agents", "standin-agent", "Local/s@test-agent/n", f"{agent};1")
        assert (leave["Queue"], leave["Count"]) == ("agents", "0")
        assert (connect["MemberName"], connect["DestChannel"], connect["HoldTime"], connect["RingTime"]) == (
            "standin-agent", f"{agent};1", "0", "0")
        assert (complete["MemberName"], complete["HoldTime"], complete["TalkTime"], complete["Reason"]) == (
            "standin-agent", "0", "8", "agent")
        assert watched.empty()
        await until(lambda: queues.waiting.get("agents") == 0)
        await assert_every_event_arrived(everything, peer)
        await queues.close()


async def test_queue_abandon_reaches_subscribers_and_the_waiting_count_returns_to_zero() -> None:
    async with replayed(ABANDON) as (peer, client), directory_of(client) as directory:
        queues = QueueWatch(client)
        everything = client.subscribe()
        abandons = client.subscribe({"QueueCallerAbandon"})
        abandon = peer.pause_before("QueueCallerAbandon")
        announced = asyncio.create_task(directory.channel_for("694ffb6a-3ae5-43e6-9b35-516bdc708b45", TIMEOUT))
        await within(client.connect())
        call = await within(announced)
        await hand_over_as_recorded(client, peer.session, call.channel)

        await within(abandon.reached.wait())
        await until(lambda: queues.waiting.get("agents") == 1)
        abandon.resume()
        event = await within(abandons.get())
        assert (event["Channel"], event["Queue"], event["Position"], event["OriginalPosition"],
                event["HoldTime"]) == ("PJSIP/caller-00000002", "agents", "1", "1", "9")
        # Abandon carries no Count; the QueueCallerLeave right after it does.
        await within(peer.played())
        await until(lambda: queues.waiting.get("agents") == 0)
        await until(lambda: directory.known(call.uuid) is None)
        await assert_every_event_arrived(everything, peer)
        await queues.close()


async def test_originate_action_ids_match_their_originate_response_success_then_failure() -> None:
    async with replayed(ORIGINATE, "originator") as (peer, client), directory_of(client) as directory:
        everything = client.subscribe()
        outcomes = client.subscribe({"OriginateResponse"})
        announced = asyncio.create_task(directory.channel_for("791c507f-ee2b-410e-99b2-af0df1716ceb", TIMEOUT))
        await within(client.connect())

        answered_id = await within(client.originate(
            "Local/s@test-local-caller", "ivr-outbound", "s", caller_id='"Service" <4000>', variables={
                "IVR_FLOW": "due_date_reminder", "IVR_CUSTOMER_ID": "19900000005",
                "IVR_ORIGINATE_ID": "outbound-demo-1", "TEST_CID": "19900000005", "TEST_HOLD": "20",
                "TEST_REC": "recordings/orig-ok"}))
        answered = await within(outcomes.get())
        assert answered["ActionID"] == answered_id
        assert (answered["Response"], answered["Channel"], answered["Reason"], answered["Uniqueid"]) == (
            "Success", "Local/s@test-local-caller-00000001;1", "4", "1796110481.5")
        call = await within(announced)
        assert (call.direction, call.channel, call.fields["Flow"], call.fields["CustomerId"],
                call.fields["OriginateId"]) == ("outbound", "Local/s@test-local-caller-00000001;1",
                                                "due_date_reminder", "19900000005", "outbound-demo-1")

        failed_id = await within(client.originate(
            "PJSIP/19900000006@no-such-endpoint", "ivr-outbound", "s", caller_id='"Service" <4000>',
            timeout_ms=10000, variables={"IVR_FLOW": "due_date_reminder", "IVR_CUSTOMER_ID": "19900000006",
                                         "IVR_ORIGINATE_ID": "outbound-demo-2"}))
        failed = await within(outcomes.get())
        assert failed["ActionID"] == failed_id != answered_id
        assert (failed["Response"], failed["Reason"], failed["Uniqueid"]) == ("Failure", "0", "<unknown>")

        await client.close()  # the recorded session ends with the client's Logoff
        await within(peer.played())
        await assert_every_event_arrived(everything, peer)


async def test_keepalive_pings_are_answered_whenever_the_client_sends_them() -> None:
    async with replayed(GREETING) as (peer, client):
        await within(client.connect())
        # Recorded at +10 s, after the hang-up; the supervisor's timer decides, not the call.
        pong = await within(client.action("Ping"))
        assert (pong["Response"], pong["Ping"]) == ("Success", "Pong")
        await within(peer.played())
        assert (await within(client.action("Ping")))["Ping"] == "Pong"
        assert client.reconnects == 0


@pytest.mark.parametrize(("send", "differing"), [
    (lambda client, channel: client.setvar(channel, "IVR_SUMMARY", "另一个摘要"),
     "Value: recorded '客户（未核验身份）。"),
    (lambda client, channel: client.hangup(channel), "Action: recorded 'Setvar', sent 'Hangup'"),
], ids=["another-value", "another-action"])
async def test_the_replay_fails_loudly_when_the_client_sends_something_else(
        send: Callable[[AmiClient, str], Awaitable[Response]], differing: str) -> None:
    with pytest.raises(AssertionError) as failure:
        async with replayed(HANDOVER) as (_, client), directory_of(client) as directory:
            announced = asyncio.create_task(directory.channel_for("ccfa3ed0-6515-47fd-a1d7-1f920ce21d4f", TIMEOUT))
            await within(client.connect())
            call = await within(announced)
            with pytest.raises(AmiError, match="replay mismatch"):  # at once, not after a timeout
                await within(send(client, call.channel))
    report = str(failure.value)
    assert f"Action Setvar (>>> +24.269s, {HANDOVER}:" in report and differing in report


async def test_the_replay_fails_when_the_client_stops_before_the_recording_ends() -> None:
    with pytest.raises(AssertionError, match=r"not played to the end: .*next recorded action is Action Setvar"):
        async with replayed(HANDOVER) as (_, client):
            await within(client.connect())
