"""AmiOriginator against AMI traffic recorded from a real Asterisk 22 (success, then failure) and
against the AMI test peer (refusals, silence, an event before its response, AMI down).

The recording (originate-outbound.ami.txt, session `originator`) was made before the dialler
existed and has no `IVR_CALL_UUID`, `IVR_CAMPAIGN` and `IVR_MACHINE` variables: the replayed session
gets exactly those three lines added to each recorded Originate, after `IVR_ORIGINATE_ID`.
Everything else (fields, values, order, Asterisk's responses and events) is replayed as recorded;
the replay fails the test on any other difference.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from outbound.originator import AmiOriginator, DialRequest, DialSettings
from telephony.ami import AmiClient, AmiConfig
from tests.telephony.peers import AmiPeer
from tests.telephony.replay import CLIENT, RECORDINGS, ReplayAmiPeer, Session, load_session

ORIGINATE = "originate-outbound.ami.txt"
TIMEOUT = 20.0
CAMPAIGN = "due_date_reminder"
# The conversation id each recorded Originate's request carries (DialRequest.conversation_id).
CALL_UUIDS = {"outbound-demo-1": "7a1c2e3f-0000-4000-8000-00000000d001",
              "outbound-demo-2": "7a1c2e3f-0000-4000-8000-00000000d002"}

assert (RECORDINGS / "README.md").is_file(), f"no recorded AMI sessions in {RECORDINGS} (set ASTERISK_SESSIONS_DIR)"


def with_campaign_variable(session: Session) -> Session:
    """The recorded session, each Originate with `Variable: IVR_CALL_UUID=<its conversation id>`,
    `Variable: IVR_CAMPAIGN=<campaign>` and `Variable: IVR_MACHINE=hangup` (the default machine
    behaviour) added."""
    messages = []
    for message in session.messages:
        if message.direction == CLIENT and message.action == "Originate":
            lines = list(message.lines)
            at = next(i for i, line in enumerate(lines) if line.startswith("Variable: IVR_ORIGINATE_ID="))
            attempt = lines[at].split("=", 1)[1]
            lines[at + 1:at + 1] = [f"Variable: IVR_CALL_UUID={CALL_UUIDS[attempt]}",
                                    f"Variable: IVR_CAMPAIGN={CAMPAIGN}", "Variable: IVR_MACHINE=hangup"]
            message = replace(message, lines=tuple(lines))
        messages.append(message)
    return Session(session.name, session.description, tuple(messages))


async def within(awaitable):  # type: ignore[no-untyped-def]
    return await asyncio.wait_for(awaitable, TIMEOUT)


async def test_recorded_originate_answered_then_failed_maps_to_attempt_results() -> None:
    recorded = load_session(ORIGINATE, "originator")
    (answered_event,) = [m for m in recorded.events("OriginateResponse") if m.get("Response") == "Success"]
    async with ReplayAmiPeer(with_campaign_variable(recorded)) as peer:
        client = AmiClient(AmiConfig(host="127.0.0.1", port=peer.port, username="ivr-bot", secret="replay",
                                     action_timeout_seconds=TIMEOUT))
        # As in the recording: a test called party (Local channel) with its test-only variables,
        # then a real PJSIP dial string to an endpoint that does not exist.
        answering = AmiOriginator(client, DialSettings(
            channel="Local/s@test-local-caller", caller_id='"Service" <4000>', ring_seconds=30,
            variables={"TEST_CID": "19900000005", "TEST_HOLD": "20", "TEST_REC": "recordings/orig-ok"}))
        failing = AmiOriginator(client, DialSettings(channel="PJSIP/{number}@no-such-endpoint",
                                                     caller_id='"Service" <4000>', ring_seconds=10))
        ended: list[str] = []
        answering.on_call_end(ended.append)
        answering.start()
        failing.start()
        try:
            await within(client.connect())
            result = await within(answering.dial(DialRequest("outbound-demo-1", CAMPAIGN, "due_date_reminder",
                                                             "19900000005", "19900000005",
                                                             conversation_id=CALL_UUIDS["outbound-demo-1"])))
            sent = [m for m in peer.received if m.action == "Originate"]
            assert result.action_id == sent[0].get("ActionID")
            assert (result.result, result.uniqueid) == ("answered", answered_event.get("Uniqueid"))
            assert "Success, reason 4: answered" in result.reason
            # The called party hangs up (recorded Hangup of Uniqueid 1796110481.5): the channel is free.
            await within(_until(lambda: ended == ["outbound-demo-1"]))

            result = await within(failing.dial(DialRequest("outbound-demo-2", CAMPAIGN, "due_date_reminder",
                                                           "19900000006", "19900000006",
                                                           conversation_id=CALL_UUIDS["outbound-demo-2"])))
            assert (result.result, result.uniqueid) == ("failed", None)
            assert "Failure, reason 0" in result.reason
            assert result.action_id == [m for m in peer.received if m.action == "Originate"][1].get("ActionID")
        finally:
            await answering.close()
            await failing.close()
            await client.close()  # the recording ends with the client's Logoff
        await within(peer.played())


async def _until(condition) -> None:  # type: ignore[no-untyped-def]
    while not condition():
        await asyncio.sleep(0.01)


# --- the AMI test peer ------------------------------------------------------------------------

def recorded_response(response: str, reason: str) -> dict[str, str]:
    """The OriginateResponse fields as Asterisk 22 sends them (recording), with this outcome."""
    recorded = load_session(ORIGINATE, "originator")
    fields = next(m for m in recorded.events("OriginateResponse") if m.get("Response") == response).fields
    fields = {key: value for key, value in fields.items() if key not in ("Event", "ActionID")}
    return {**fields, "Reason": reason}


@pytest.fixture
async def peer() -> AsyncIterator[AmiPeer]:
    fake = await AmiPeer().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def client(peer: AmiPeer) -> AsyncIterator[AmiClient]:
    ami = AmiClient(AmiConfig(host="127.0.0.1", port=peer.port, username="ivr-bot", secret="s3cret",
                              action_timeout_seconds=1.0, keepalive_seconds=5))
    await ami.connect()
    yield ami
    await ami.close()


def originator(client: AmiClient, **settings: object) -> AmiOriginator:
    values = {"channel": "PJSIP/{number}@trunk", "caller_id": "4008001234", "ring_seconds": 30,
              "response_margin_seconds": 5.0, **settings}
    made = AmiOriginator(client, DialSettings(**values))  # type: ignore[arg-type]
    made.start()
    return made


REQUEST = DialRequest("overdue_reminder:C100003:2026-03-08:1", "overdue_reminder", "overdue_reminder", "C100003",
                      "19900000003")


async def test_the_originate_carries_the_campaign_flow_customer_and_attempt(peer: AmiPeer,
                                                                              client: AmiClient) -> None:
    dialler = originator(client)
    dialling = asyncio.create_task(dialler.dial(REQUEST))
    (sent,) = await peer.wait_for_action("Originate")
    assert (sent["Channel"], sent["Context"], sent["Exten"], sent["Priority"], sent["Async"], sent["Timeout"]) == (
        "PJSIP/19900000003@trunk", "ivr-outbound", "s", "1", "true", "30000")
    assert sent["Variable"].split("|") == [
        "IVR_FLOW=overdue_reminder", "IVR_CUSTOMER_ID=C100003",
        "IVR_ORIGINATE_ID=overdue_reminder:C100003:2026-03-08:1", f"IVR_CALL_UUID={REQUEST.conversation_id}",
        "IVR_CAMPAIGN=overdue_reminder",
        "IVR_MACHINE=hangup"]
    await peer.emit("OriginateResponse", ActionID=sent["ActionID"], **recorded_response("Success", "4"))
    result = await within(dialling)
    assert (result.result, result.uniqueid, result.action_id) == ("answered", "1796110481.5", sent["ActionID"])
    assert "19900000003" not in repr(REQUEST) and "19900000003" not in repr(result)
    await dialler.close()


@pytest.mark.parametrize(("reason", "expected"), [("5", "busy"), ("3", "no_answer"), ("1", "no_answer"),
                                                  ("8", "failed"), ("0", "failed"), ("4", "failed")])
async def test_a_failure_reason_becomes_the_attempt_result(peer: AmiPeer, client: AmiClient, reason: str,
                                                           expected: str) -> None:
    dialler = originator(client)
    dialling = asyncio.create_task(dialler.dial(REQUEST))
    (sent,) = await peer.wait_for_action("Originate")
    await peer.emit("OriginateResponse", ActionID=sent["ActionID"], **recorded_response("Failure", reason))
    assert (await within(dialling)).result == expected  # a Failure is never an answer, whatever its reason
    await dialler.close()


async def test_an_originate_response_before_the_action_response_is_not_lost(peer: AmiPeer,
                                                                            client: AmiClient) -> None:
    peer.held_actions.add("Originate")
    dialler = originator(client)
    dialling = asyncio.create_task(dialler.dial(REQUEST))
    (sent,) = await peer.wait_for_action("Originate")
    await peer.emit("OriginateResponse", ActionID=sent["ActionID"], **recorded_response("Failure", "5"))
    await within(_until(lambda: sent["ActionID"] in dialler._early))  # the event came first
    await peer.release_held()
    assert (await within(dialling)).result == "busy"
    await dialler.close()


async def test_asterisk_refusing_the_originate_is_a_failed_attempt(peer: AmiPeer, client: AmiClient) -> None:
    peer.failing_actions["Originate"] = "Permission denied"
    dialler = originator(client)
    result = await within(dialler.dial(REQUEST))
    assert result.result == "failed" and "Permission denied" in result.reason
    await dialler.close()


async def test_no_answer_to_the_originate_is_unknown_never_retried_as_the_same_attempt(
        peer: AmiPeer, client: AmiClient) -> None:
    peer.silent_actions.add("Originate")
    dialler = originator(client)
    result = await within(dialler.dial(REQUEST))
    assert result.result == "unknown" and "no answer to the Originate" in result.reason
    await dialler.close()


async def test_a_queued_originate_without_its_response_is_unknown(peer: AmiPeer, client: AmiClient) -> None:
    dialler = originator(client, ring_seconds=0, response_margin_seconds=0.2)
    result = await within(dialler.dial(REQUEST))
    assert result.result == "unknown" and "no OriginateResponse" in result.reason and result.action_id
    await dialler.close()


async def test_with_ami_down_nothing_is_sent(peer: AmiPeer, client: AmiClient) -> None:
    dialler = originator(client)
    await peer.stop()
    await _until(lambda: not client.connected)
    assert not dialler.ready
    assert (await dialler.dial(REQUEST)).result == "not_sent"
    assert peer.actions_named("Originate") == []
    await dialler.close()
