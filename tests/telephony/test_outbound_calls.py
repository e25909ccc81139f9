"""Answered outbound calls end to end (AudioSocket and AMI peers, the real assistant behind the
gateway, the dialler a fake on loopback): the bot hangs up by itself once a third party has heard
its goodbye, and the dialler hears what happened to the call — a transfer to an agent is
`handed_over`, a callback the gateway booked is `callback_requested`, never `hung_up`."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from bench import samples
from bench.audiosocket_peer import AudioSocketPeer
from bench.stand_ins import ScriptedRecognizer
from risk_api.demo import customers_with_tag
from telephony.outcomes import OutcomeReporter
from tests.conftest import Stack
from tests.loopback import JsonPeer, serving
from tests.telephony import test_gateway as gateway_tests
from tests.telephony.test_gateway import TEARDOWN_BOUND_SECONDS, Phone, bot_finished, converse, hung_up_by_bot
from tests.waiting import until

phone = gateway_tests.phone  # the fixture: the gateway with the AMI peer, before the running stack

pytestmark = pytest.mark.stack


class Dialler(JsonPeer):
    received: list[tuple[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        Dialler.received.append((self.path, self.body()))
        self.answer({})


@asynccontextmanager
async def outbound_call(phone: Phone, customer: dict[str, Any], attempt_id: str) -> AsyncIterator[AudioSocketPeer]:
    """What `ivr-outbound` does once the customer answers the Originate, with the dialler listening
    for the attempt's outcome; the block's end waits for the report."""
    Dialler.received = []
    call_uuid = uuid.uuid4()
    with serving(Dialler) as dialler_url:
        phone.gateway.reporter = OutcomeReporter(dialler_url, "a-gateway-token-for-the-dialler", retry_delays=(0,))
        await phone.ami.emit("UserEvent", UserEvent="IvrCall", Uuid=str(call_uuid), Direction="outbound",
                             Channel=f"PJSIP/trunk-{call_uuid.hex[:8]}", CallerIDNum="4000", Flow="overdue_reminder",
                             CustomerId=customer["customer_id"], OriginateId=attempt_id, Campaign="overdue_reminder")
        peer = await AudioSocketPeer("127.0.0.1", phone.gateway.server.port, call_uuid).connect()
        try:
            yield peer
        finally:
            await peer.close()
        await until(lambda: bool(Dialler.received), bound=TEARDOWN_BOUND_SECONDS)
        await phone.gateway.reporter.close()


async def test_a_wrong_number_hears_the_apology_and_the_bot_hangs_up(phone: Phone, running_stack: Stack) -> None:
    said = "你打错了，我们这没这个人"
    phone.gateway.engines.recognizer = ScriptedRecognizer([said])
    customer = customers_with_tag("overdue")[1]
    attempt_id = "overdue_reminder:C2:2026-03-10:1"
    async with outbound_call(phone, customer, attempt_id) as peer:
        await converse(peer, phone, [samples.speech(said)])
        await hung_up_by_bot(peer)  # nobody on the line has to hang up
    assert Dialler.received == [(f"/attempts/{attempt_id}/outcome", {"outcome": "wrong_number"})]
    assert bot_texts(running_stack, peer)[-1] == "不好意思，打错了，打扰您了，再见。"


async def test_a_third_party_who_may_be_called_again_hears_goodbye_and_the_bot_hangs_up(
        phone: Phone, running_stack: Stack) -> None:
    customer = customers_with_tag("overdue")[2]
    async with outbound_call(phone, customer, "overdue_reminder:C3:2026-03-10:1") as peer:
        await converse(peer, phone, ["2", "1"])  # not the customer; yes, this number may be called
        await hung_up_by_bot(peer)
    assert Dialler.received[0][1] == {"outcome": "third_party"}
    assert bot_texts(running_stack, peer)[-1] == "好的，谢谢您，再见。"


async def test_an_outbound_call_handed_to_an_agent_is_reported_handed_over(phone: Phone) -> None:
    customer = customers_with_tag("overdue")[3]
    async with outbound_call(phone, customer, "overdue_reminder:C4:2026-03-10:1") as peer:
        await bot_finished(peer, 0.0)
        await peer.send_dtmf("0")  # a person, please
        await phone.ami.wait_for_action("Redirect", timeout=30)
    assert Dialler.received[0][1] == {"outcome": "handed_over"}


async def test_an_outbound_call_with_agents_busy_books_a_callback_and_reports_it(
        phone: Phone, running_stack: Stack) -> None:
    await phone.ami.emit("QueueCallerJoin", Queue="agents", Position="12", Count="12", Channel="PJSIP/other-00000002")
    customer = customers_with_tag("overdue")[4]
    async with outbound_call(phone, customer, "overdue_reminder:C5:2026-03-10:1") as peer:
        await bot_finished(peer, 0.0)
        await peer.send_dtmf("0")
        await bot_finished(peer, time.monotonic())  # agents busy: 1 for a callback to this number
        await peer.send_dtmf("1")
        await hung_up_by_bot(peer)
    assert not phone.ami.actions_named("Redirect") and phone.gateway.callbacks == 1
    assert Dialler.received[0][1] == {"outcome": "callback_requested"}


def bot_texts(running_stack: Stack, peer: AudioSocketPeer) -> list[str]:
    events = running_stack.tracker(str(peer.call_uuid))["events"]
    return [event["text"] for event in events if event["event"] == "bot" and event.get("text")]

