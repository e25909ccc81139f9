"""Phone calls end to end: an Asterisk stand-in on both wires (AudioSocketPeer for the call's
audio, AmiPeer for call control — both written from the protocol documentation, see
peers.py) and the real assistant behind the gateway (Rasa, actions, risk API).

The caller's speech is real Mandarin audio from espeak-ng, so detection and endpointing run
for real; its words come from a ScriptedRecognizer because no Chinese Vosk model can be
installed here. Keys travel as AudioSocket DTMF frames.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench import samples
from bench.audiosocket_peer import AudioSocketPeer
from bench.stand_ins import ScriptedRecognizer
from risk_api.demo import TIMEZONE_BY_OCCURRENCE, customers_with_tag
from stack.services import Ports, phone_gateway, started
from telephony.ami import AmiClient, AmiConfig
from telephony.gateway import Gateway, GatewaySettings
from telephony.outcomes import OutcomeReporter
from telephony.priority import load_priority_rules
from tests.conftest import SECRETS, Stack
from tests.dialogue.conftest import CUSTOMERS
from tests.loopback import JsonPeer, serving
from tests.observability.scrape import refusals, scrape, value
from tests.telephony.peers import AmiPeer
from tests.waiting import until
from voice.call import VoiceEngines
from voice.config import load_voice_config
from voice.dialogue import DialogueClient
from voice.tts import Synthesizer

pytestmark = pytest.mark.stack

BOT_PAUSE_SECONDS = 0.6  # the bot silent this long after speaking: the caller's turn
TEARDOWN_BOUND_SECONDS = 90.0  # a call's end to its outcome report, with a turn in flight, on a loaded machine


@dataclasses.dataclass
class Phone:
    gateway: Gateway
    ami: AmiPeer
    recognizer: ScriptedRecognizer

    async def dial(self, caller_number: str | None, channel: str | None = None, call_uuid: uuid.UUID | None = None,
                   **fields: str) -> AudioSocketPeer:
        """What the dialplan does: UserEvent(IvrCall) with the UUID (and, back from the queue,
        QueueStatus, Handovers and Tier), then AudioSocket()."""
        call_uuid = call_uuid or uuid.uuid4()
        channel = channel or f"PJSIP/softphone-{call_uuid.hex[:8]}"
        await self.ami.emit("UserEvent", UserEvent="IvrCall", Uuid=str(call_uuid), Direction="inbound",
                            Channel=channel, CallerIDNum=caller_number or "<unknown>", CallerIDName="<unknown>",
                            Uniqueid=f"{time.time():.6f}", **fields)
        return await AudioSocketPeer("127.0.0.1", self.gateway.server.port, call_uuid).connect()


@pytest.fixture
async def phone(running_stack: Stack) -> AsyncIterator[Phone]:
    peer = await AmiPeer().start()
    ami_config = AmiConfig(host="127.0.0.1", port=peer.port, username="ivr-bot", secret="s3cret")
    settings = GatewaySettings(host="127.0.0.1", port=0, rasa_url=running_stack.rasa_url,
                               risk_api_url=running_stack.risk_url, risk_api_token=SECRETS.risk_gateway, ami=ami_config)
    config = load_voice_config()
    # No recording notice in these calls: it is tested in tests/voice and only makes calls longer.
    config = dataclasses.replace(config, turns=dataclasses.replace(
        config.turns, prompts=dataclasses.replace(config.turns.prompts, disclosure="")))
    recognizer = ScriptedRecognizer([])
    engines = VoiceEngines(config, recognizer, Synthesizer(config.tts), DialogueClient(running_stack.rasa_url,
                                                                                   SECRETS.rasa_gateway))
    ami = AmiClient(ami_config)
    await ami.connect()
    gateway = Gateway(settings, engines, load_priority_rules(), ami)
    await gateway.start()
    try:
        yield Phone(gateway, peer, recognizer)
    finally:
        await gateway.close()
        await peer.stop()


async def bot_finished(peer: AudioSocketPeer, since: float, timeout: float = 45.0) -> None:
    """Until the bot has spoken after `since` and then paused."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        audio = peer.audio()
        if audio and audio[-1].at > since and time.monotonic() - audio[-1].at >= BOT_PAUSE_SECONDS:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the bot did not speak and pause within {timeout:g} s")


async def converse(peer: AudioSocketPeer, phone: Phone, answers: list[bytes | str]) -> None:
    """Answer each time the bot finishes: speech (PCM, streamed at 20 ms) or keys (DTMF)."""
    since = 0.0
    for answer in answers:
        await bot_finished(peer, since)
        since = time.monotonic()
        if isinstance(answer, str):
            for digit in answer:
                await peer.send_dtmf(digit)
        else:
            await peer.stream(answer + samples.silence(1.0))


async def test_full_call_verifies_by_keypad_and_enters_the_priority_queue_with_its_summary(
        phone: Phone, running_stack: Stack) -> None:
    customer = customers_with_tag("vip")[0]
    phone.recognizer = ScriptedRecognizer(["我想查一下我的账单", customer["name"]])
    phone.gateway.engines.recognizer = phone.recognizer
    peer = await phone.dial(customer["phone"], channel="PJSIP/softphone-00000007")
    await converse(peer, phone, [samples.speech("我想查一下我的账单"), samples.speech(customer["name"]),
                                 customer["id_last4"], "0"])
    redirects = await phone.ami.wait_for_action("Redirect")
    assert redirects and redirects[0]["Channel"] == "PJSIP/softphone-00000007"
    assert (redirects[0]["Context"], redirects[0]["Exten"]) == ("ivr-handover", "agents")
    variables = {action["Variable"]: action["Value"] for action in phone.ami.actions_named("Setvar")}
    assert variables["IVR_QUEUE_PRIO"] == "30"  # the VIP tier of ivr_config/priority.yaml
    assert "账单" in variables["IVR_SUMMARY"] and "\n" not in variables["IVR_SUMMARY"]
    # The same summary waits for the agent desk in the risk API.
    with running_stack.risk_api("desk") as api:
        waiting = api.get("/handoffs", params={"status": "waiting"}).json()
    record = next(item for item in waiting if item["handoff_id"] == variables["IVR_HANDOFF_ID"])
    assert record["summary"] == variables["IVR_SUMMARY"]
    assert record["verified_level"] == "L1" and record["priority"] in ("high", "emergency")
    assert await peer.wait_closed_by_server(5)
    # The bot learnt the number from AMI: it never asked the caller for it.
    assert phone.recognizer.grammars[:2] == [None, None]


async def test_a_keypad_only_caller_verifies_with_the_line_and_id_digits_and_hears_the_account(
        phone: Phone, running_stack: Stack) -> None:
    """No speech recogniser: the gateway vouches for the number AMI gave to the risk API, and the
    caller, who cannot say a name, keys a menu choice and the last 6 of the ID number."""
    customer = customers_with_tag("normal")[0]  # a read-only flow: shared with other tests
    phone.gateway.engines.recognizer = None
    peer = await phone.dial(customer["phone"])
    await converse(peer, phone, ["3", customer["id_number"][-6:]])  # 3: 查额度 on the keypad menu
    await bot_finished(peer, time.monotonic())  # the answer
    await peer.send_hangup()
    await peer.close()
    tracker = running_stack.tracker(str(peer.call_uuid))
    bot = [event for event in tracker["events"] if event["event"] == "bot"]
    custom = [(event.get("data") or {}).get("custom") or {} for event in bot]
    assert [c["expect"]["slot"] for c in custom if "expect" in c] == ["id_last6"], "no name, no phone number"
    assert "answer" in [c.get("outcome") for c in custom]
    assert any("可用额度" in (event.get("text") or "") for event in bot)
    said = [event["text"] for event in tracker["events"] if event["event"] == "user"]
    assert said == ["/check_credit_limit", "[redacted]"], "the ID digits are never stored"
    with running_stack.risk_api("desk") as api:
        audit = [entry for entry in api.get("/audit", params={"customer_id": customer["customer_id"],
                                                               "limit": 500}).json()
                 if entry["session_id"] == str(peer.call_uuid)]
    verified = [entry for entry in audit if entry["kind"] == "verification_l1"]
    assert [(entry["inputs"]["method"], entry["decision"]) for entry in verified] == [("line_id6", "verified")]
    assert [entry["channel"] for entry in audit if entry["kind"] == "line_vouched"] == ["voice"]


async def test_caller_hanging_up_mid_prompt_ends_only_that_session(phone: Phone) -> None:
    staying = await phone.dial(None)
    leaving = await phone.dial(None)
    assert len(await leaving.wait_for_audio(3200, timeout=10)) >= 3200  # 0.2 s into the greeting
    await leaving.send_hangup()
    await leaving.close()
    await until(lambda: str(leaving.call_uuid) not in phone.gateway.server.calls)
    assert str(staying.call_uuid) in phone.gateway.server.calls
    heard_before = len(staying.audio_bytes())
    await until(lambda: len(staying.audio_bytes()) > heard_before)  # the other call's greeting goes on
    await staying.close()


async def test_hangup_during_an_l2_account_action_leaves_nothing_half_done(
        phone: Phone, running_stack: Stack) -> None:
    customer = CUSTOMERS.take("normal")
    phone.recognizer = ScriptedRecognizer(["我想提前还清", customer["name"]])
    phone.gateway.engines.recognizer = phone.recognizer
    peer = await phone.dial(customer["phone"])
    await converse(peer, phone, [samples.speech("我想提前还清"), samples.speech(customer["name"]),
                                 customer["id_last4"]])
    await bot_finished(peer, time.monotonic())  # "验证码已发送…": the code is in the SMS outbox
    for digit in running_stack.latest_otp(customer["phone"]):
        await peer.send_dtmf(digit)
    await bot_finished(peer, time.monotonic())  # the confirmation question with the payoff amount
    await peer.send_dtmf("1")  # yes — and hang up before the answer comes
    await peer.send_hangup()
    await peer.close()
    with running_stack.risk_api("desk") as api:
        deadline = time.monotonic() + 15
        actions: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not actions:
            audit = api.get("/audit", params={"customer_id": customer["customer_id"], "limit": 50}).json()
            entries = audit if isinstance(audit, list) else audit.get("entries", [])
            actions = [entry for entry in entries if "early_repayment" in str(entry.get("kind", ""))]
            await asyncio.sleep(0.2)
    tracker = running_stack.tracker(peer.call_uuid)
    said = [(event["event"], event.get("text")) for event in tracker["events"] if event["event"] in ("user", "bot")]
    # The turn in flight when the caller hung up was finished, once, with its action done whole.
    assert [entry["kind"] for entry in actions] == ["action:early_repayment"], said[7:]
    outcomes = [((event.get("data") or {}).get("custom") or {}).get("outcome") for event in tracker["events"]
                if event["event"] == "bot"]
    assert "done" in outcomes, said


async def test_ami_dropping_and_coming_back_keeps_the_phone_working(phone: Phone) -> None:
    await phone.ami.drop_connections()
    assert await phone.ami.wait_for_login(count=1)
    peer = await phone.dial(None, channel="PJSIP/softphone-after-drop")
    await bot_finished(peer, 0.0)
    await peer.send_dtmf("0")
    redirects = await phone.ami.wait_for_action("Redirect")
    assert [action["Channel"] for action in redirects] == ["PJSIP/softphone-after-drop"]


async def test_fifty_concurrent_calls_are_each_greeted_and_end_cleanly(phone: Phone) -> None:
    peers = await asyncio.gather(*(phone.dial(None) for _ in range(50)))
    one_second = 16000  # bytes of 8 kHz slin
    heard = await asyncio.gather(*(peer.wait_for_audio(one_second, timeout=30) for peer in peers))
    assert all(len(audio) >= one_second for audio in heard), [len(audio) for audio in heard]
    assert len(phone.gateway.server.calls) == 50
    for peer in peers:
        await peer.send_hangup()
        await peer.close()
    await until(lambda: not phone.gateway.server.calls)


async def test_gateway_process_starts_without_asterisk_and_greets_a_call(running_stack: Stack, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`make run`'s phone gateway as a process: no AMI configured, still answers AudioSocket."""
    for name in ("AUDIOSOCKET_HOST", "ASTERISK_AMI_HOST", "VOSK_MODEL_PATH"):  # the process inherits the shell's
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KOKORO_PRERENDER_AT_START", "0")  # no background Kokoro rendering in the test run
    rasa_port = int(running_stack.rasa_url.rsplit(":", 1)[1])
    risk_port = int(running_stack.risk_url.rsplit(":", 1)[1])
    ports = dataclasses.replace(Ports.free(), rasa=rasa_port, risk_api=risk_port)
    with started([phone_gateway(ports, SECRETS)], tmp_path):
        def health() -> dict:
            return httpx.get(f"http://127.0.0.1:{ports.gateway_health}/health", timeout=5).json()

        # No Vosk model configured: Whisper hears callers, its worker loading the model from the start.
        assert health()["ami_connected"] is None and health()["speech_recognition"] is True
        assert health()["recognizer"] in ("loading", "ready")
        await until(lambda: health()["recognizer"] == "ready", bound=120)
        peer = await AudioSocketPeer("127.0.0.1", ports.audiosocket).connect()
        assert len(await peer.wait_for_audio(8000, timeout=15)) >= 8000
        await peer.send_hangup()
        await peer.close()
        health_url = f"http://127.0.0.1:{ports.gateway_health}"
        assert refusals(health_url, SECRETS.risk_gateway) == [401, 401, 401], "monitoring's token only"
        await until(lambda: value(scrape(health_url, SECRETS.metrics), "ivr_gateway_calls_active") == 0)
        assert value(scrape(health_url, SECRETS.metrics), "ivr_gateway_calls_total", channel="voice") == 1
    log = (tmp_path / "phone_gateway.log").read_text(encoding="utf-8")
    assert "speech recognition is off" not in log and "AMI is off" in log


async def test_a_killed_gateway_process_ends_its_calls_and_the_others_take_the_new_ones(
        running_stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two gateway processes on one AudioSocket address (SO_REUSEPORT, as `make run SCALE=2`
    starts them): the kernel spreads the calls; one killed mid-call closes its calls' sockets
    (Asterisk hangs up on EOF) and every new call is greeted by the other."""
    for name in ("AUDIOSOCKET_HOST", "ASTERISK_AMI_HOST", "VOSK_MODEL_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KOKORO_PRERENDER_AT_START", "0")
    ports = dataclasses.replace(Ports.free(), rasa=int(running_stack.rasa_url.rsplit(":", 1)[1]),
                                risk_api=int(running_stack.risk_url.rsplit(":", 1)[1]))
    health = {"gw1": ports.gateway_health, "gw2": Ports.free().gateway_health}
    gateways = tuple(phone_gateway(ports, SECRETS, name, port, share_port=True) for name, port in health.items())

    def calls_held(name: str) -> int:
        return int(httpx.get(f"http://127.0.0.1:{health[name]}/health", timeout=5).json()["calls"])

    with started([gateways], tmp_path) as running:
        peers = []
        while len(peers) < 24 and not (peers and all(calls_held(name) for name in health)):
            peer = await AudioSocketPeer("127.0.0.1", ports.audiosocket).connect()
            await peer.wait_for_audio(1600, timeout=15)  # greeted: the call is up in one process
            peers.append(peer)
        assert all(calls_held(name) for name in health), "the kernel gave both processes calls"
        victim = "gw1"
        running.processes[victim].kill()
        running.processes[victim].wait(timeout=30)
        ended = await asyncio.gather(*(peer.wait_closed_by_server(5) for peer in peers))
        assert any(ended) and not all(ended), "the killed process's calls ended, the other's go on"
        for _ in range(6):
            newcomer = await AudioSocketPeer("127.0.0.1", ports.audiosocket).connect()
            assert len(await newcomer.wait_for_audio(1600, timeout=15)) >= 1600, "greeted by the survivor"
            await newcomer.send_hangup()
            await newcomer.close()
        for peer in peers:
            await peer.close()


async def test_outbound_reminder_call_opens_its_flow_and_names_no_debt_before_identity(
        phone: Phone, running_stack: Stack) -> None:
    """What `ivr-outbound` does once the customer answers an Originate: the UserEvent carries
    Direction outbound and the flow to run."""
    customer = customers_with_tag("overdue")[0]
    call_uuid = uuid.uuid4()
    # As recorded from a real Asterisk: an originated call's CallerIDNum is the number we present.
    await phone.ami.emit("UserEvent", UserEvent="IvrCall", Uuid=str(call_uuid), Direction="outbound",
                         Channel="PJSIP/trunk-0000000a", CallerIDNum="4000", Flow="overdue_reminder",
                         CustomerId=customer["customer_id"], OriginateId="test-originate")
    peer = await AudioSocketPeer("127.0.0.1", phone.gateway.server.port, call_uuid).connect()
    await bot_finished(peer, 0.0)
    await peer.send_hangup()
    await peer.close()
    tracker = running_stack.tracker(str(call_uuid))
    assert tracker["slots"]["caller_number"] == customer["phone"], "the customer's number, not the presented one"
    first_user = next(event for event in tracker["events"] if event["event"] == "user")
    assert first_user["text"] == "/overdue_reminder"
    assert first_user["metadata"]["channel"] == "outbound"
    said = " ".join(event.get("text") or "" for event in tracker["events"] if event["event"] == "bot")
    assert customer["salutation"] in said and "逾期" not in said and "元" not in said, said


async def test_an_outbound_calls_start_carries_the_customers_own_time_zone_for_the_inspection(
        phone: Phone) -> None:
    """The legal calling hours are the customer's local ones (quality's `outbound_window`): the zone
    comes from the risk API's record of the customer the dialler named, never from the channel."""
    class Recorded:
        started: list[dict[str, Any]] = []

        def publish(self, call_id: str, kind: str, at: float, data: dict[str, Any]) -> None:
            if kind == "call_started":
                Recorded.started.append(data)

    phone.gateway.engines.call_events = Recorded()
    in_xinjiang = customers_with_tag("overdue")[next(o for o, zone in TIMEZONE_BY_OCCURRENCE.items()
                                                     if zone == "Asia/Urumqi")]
    call_uuid = uuid.uuid4()
    await phone.ami.emit("UserEvent", UserEvent="IvrCall", Uuid=str(call_uuid), Direction="outbound",
                         Channel="PJSIP/trunk-0000000c", CallerIDNum="4000", Flow="overdue_reminder",
                         CustomerId=in_xinjiang["customer_id"], OriginateId="test-originate-zone", Timezone="UTC")
    peer = await AudioSocketPeer("127.0.0.1", phone.gateway.server.port, call_uuid).connect()
    await bot_finished(peer, 0.0)
    await peer.send_hangup()
    await peer.close()
    inbound = await phone.dial(customers_with_tag("overdue")[0]["phone"])
    await bot_finished(inbound, 0.0)
    await inbound.send_hangup()
    await inbound.close()
    await until(lambda: len(Recorded.started) == 2)
    assert [(data["channel"], data["timezone"]) for data in Recorded.started] == [
        ("outbound", "Asia/Urumqi"), ("voice", None)], "an inbound call's hours are not the inspection's concern"


async def test_an_outbound_call_answered_by_a_third_party_reports_third_party_for_its_attempt(
        phone: Phone, running_stack: Stack) -> None:
    """Keyed answers to the opening (2: not the customer) and to whether the number may be called
    again (1); the dialler (a fake on loopback) gets `third_party` for the call's OriginateId."""
    class Dialler(JsonPeer):
        received: list[tuple[str, Any]] = []

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            Dialler.received.append((self.path, self.body()))
            self.answer({})

    customer = customers_with_tag("overdue")[0]
    call_uuid = uuid.uuid4()
    with serving(Dialler) as dialler_url:
        phone.gateway.reporter = OutcomeReporter(dialler_url, "a-gateway-token-for-the-dialler", retry_delays=(0,))
        await phone.ami.emit("UserEvent", UserEvent="IvrCall", Uuid=str(call_uuid), Direction="outbound",
                             Channel="PJSIP/trunk-0000000b", CallerIDNum="4000", Flow="overdue_reminder",
                             CustomerId=customer["customer_id"], OriginateId="overdue_reminder:C1:2026-03-10:1",
                             Campaign="overdue_reminder")
        peer = await AudioSocketPeer("127.0.0.1", phone.gateway.server.port, call_uuid).connect()
        await converse(peer, phone, ["2", "1"])
        await bot_finished(peer, time.monotonic())
        await peer.send_hangup()
        await peer.close()
        # The call's teardown, then the report: a turn still in flight at the hang-up is waited
        # out (the 5 s handler grace, then up to 20 s for the turn), so the bound is the wide one.
        await until(lambda: bool(Dialler.received), bound=TEARDOWN_BOUND_SECONDS)
        await phone.gateway.reporter.close()
    assert Dialler.received == [("/attempts/overdue_reminder:C1:2026-03-10:1/outcome", {"outcome": "third_party"})]
    tracker = running_stack.tracker(str(call_uuid))
    said = " ".join(event.get("text") or "" for event in tracker["events"] if event["event"] == "bot")
    assert "麻烦您转告" in said and not re.search(r"逾期|欠款|还款|账单|金额|催收|征信|元", said), said


async def test_saturated_queue_turns_a_normal_callers_transfer_into_a_callback_offer(
        phone: Phone, running_stack: Stack) -> None:
    await phone.ami.emit("QueueCallerJoin", Queue="agents", Position="12", Count="12",
                         Channel="PJSIP/other-00000001")
    peer = await phone.dial(None, channel="PJSIP/softphone-busy")
    await bot_finished(peer, 0.0)
    await peer.send_dtmf("0")
    await bot_finished(peer, time.monotonic())  # "现在人工客服都在忙…" and the callback question
    await peer.send_hangup()
    await peer.close()
    assert not phone.ami.actions_named("Redirect")
    assert phone.gateway.handovers == 0
    tracker = running_stack.tracker(peer.call_uuid)
    said = [event["text"] for event in tracker["events"] if event["event"] == "user"]
    assert said == ["/transfer_to_agent", "/callback_request"]


async def test_reporting_an_unauthorised_loan_raises_the_call_to_emergency_priority(phone: Phone) -> None:
    customer = customers_with_tag("normal")[0]  # declines the freeze below: the account is not touched
    said = "借款记录里那笔钱不是我本人借的"
    phone.recognizer = ScriptedRecognizer([said, customer["name"]])
    phone.gateway.engines.recognizer = phone.recognizer
    peer = await phone.dial(customer["phone"], channel="PJSIP/softphone-fraud")
    await converse(peer, phone, [samples.speech(said), samples.speech(customer["name"]), customer["id_last4"], "2"])
    redirects = await phone.ami.wait_for_action("Redirect", timeout=30)
    assert [action["Channel"] for action in redirects] == ["PJSIP/softphone-fraud"]
    variables = {action["Variable"]: action["Value"] for action in phone.ami.actions_named("Setvar")}
    # A normal caller's tier, raised by what they asked for (priority.yaml: emergency intents).
    assert variables["IVR_FLOW"] == "unauthorized_transaction"
    assert variables["IVR_QUEUE_PRIO"] == "50"


async def test_without_call_control_a_caller_wanting_a_person_is_offered_a_callback(
        phone: Phone, running_stack: Stack) -> None:
    await phone.ami.stop()  # Asterisk's manager gone: no channel for the call, no transfer possible
    peer = await AudioSocketPeer("127.0.0.1", phone.gateway.server.port).connect()
    await bot_finished(peer, 0.0)
    await peer.send_dtmf("0")
    await bot_finished(peer, time.monotonic())
    await peer.send_hangup()
    await peer.close()
    tracker = running_stack.tracker(peer.call_uuid)
    said = [event["text"] for event in tracker["events"] if event["event"] == "user"]
    assert said == ["/transfer_to_agent", "/callback_request"]
    assert phone.gateway.handovers == 0


# --- what a real Asterisk showed (issue 13) -------------------------------------------------

async def hung_up_by_bot(peer: AudioSocketPeer) -> None:
    assert await peer.wait_closed_by_server(60), "the bot ends the call"
    assert any(message.kind == 0x00 for message in peer.received), "with a hangup message"


def callback_audit(running_stack: Stack, call_uuid: str) -> list[dict[str, Any]]:
    with running_stack.risk_api("desk") as api:
        entries = api.get("/audit", params={"limit": 500}).json()
    return [entry for entry in entries if entry["kind"] == "callback" and entry["session_id"] == call_uuid]


async def test_a_silent_caller_keeps_the_call_alive_with_the_bots_keepalive_frames(phone: Phone) -> None:
    peer = await phone.dial(None)
    await bot_finished(peer, 0.0)
    # Silence frames while the bot listens (Asterisk drops 2 s of no activity): the first follows the greeting.
    await until(lambda: bool(peer.keepalives()))
    await peer.send_hangup()
    await peer.close()


async def test_a_call_back_from_the_queue_books_a_callback_to_its_number_with_one_key(
        phone: Phone, running_stack: Stack) -> None:
    customer = customers_with_tag("normal")[1]
    peer = await phone.dial(customer["phone"], QueueStatus="TIMEOUT", Handovers="1", Tier="normal")
    await bot_finished(peer, 0.0)  # agents busy: 1 for a callback, 2 to wait again
    await peer.send_dtmf("1")
    await hung_up_by_bot(peer)
    await peer.close()
    assert not phone.ami.actions_named("Redirect") and phone.gateway.callbacks == 1
    (booked,) = callback_audit(running_stack, str(peer.call_uuid))
    assert booked["customer_id"] is None and customer["phone"] not in str(booked)  # masked, on no one's file
    events = running_stack.tracker(str(peer.call_uuid))["events"]
    assert not [event for event in events if event["event"] == "user"], "no identity questions: no dialogue at all"


async def test_a_call_back_from_the_queue_may_wait_again_with_its_tier_and_summary(phone: Phone) -> None:
    customer = customers_with_tag("normal")[2]
    first = await phone.dial(customer["phone"])  # the same number a minute earlier: not a repeat caller
    await bot_finished(first, 0.0)
    await first.send_hangup()
    await first.close()
    peer = await phone.dial(customer["phone"], QueueStatus="TIMEOUT", Handovers="1")
    await bot_finished(peer, 0.0)
    await peer.send_dtmf("2")
    redirects = await phone.ami.wait_for_action("Redirect", timeout=30)
    assert [action["Channel"] for action in redirects] == [f"PJSIP/softphone-{peer.call_uuid.hex[:8]}"]
    variables = {action["Variable"]: action["Value"] for action in phone.ami.actions_named("Setvar")}
    assert variables == {"IVR_QUEUE_PRIO": "0", "IVR_TIER": "normal"}, "summary and hand-over id stay on the channel"
    await peer.close()


async def test_a_call_back_from_the_queue_too_often_gets_a_callback_and_a_polite_end(
        phone: Phone, running_stack: Stack) -> None:
    customer = customers_with_tag("normal")[3]
    peer = await phone.dial(customer["phone"], QueueStatus="TIMEOUT", Handovers="2", Tier="vip")
    await hung_up_by_bot(peer)
    await peer.close()
    assert not phone.ami.actions_named("Redirect")
    assert len(callback_audit(running_stack, str(peer.call_uuid))) == 1


async def test_a_transfer_is_counted_when_the_caller_hangs_up_before_asterisk_answers(phone: Phone) -> None:
    phone.ami.held_actions.add("Redirect")
    peer = await phone.dial(None)
    await bot_finished(peer, 0.0)
    await peer.send_dtmf("0")
    await phone.ami.wait_for_action("Redirect", timeout=30)
    await peer.close()  # the caller's leg goes before Asterisk's reply
    await until(lambda: not phone.gateway.server.calls)  # the call's pipeline is gone
    await phone.ami.release_held()
    await until(lambda: phone.gateway.handovers > 0)
    assert phone.gateway.handovers == 1


async def handed_over(phone: Phone, peer: AudioSocketPeer) -> str:
    """Press 0, wait for the transfer; the hand-over id the gateway put on the channel."""
    await bot_finished(peer, 0.0)
    await peer.send_dtmf("0")
    channel = f"PJSIP/softphone-{peer.call_uuid.hex[:8]}"
    await until(lambda: any(action["Channel"] == channel for action in phone.ami.actions_named("Redirect")))
    return next(action["Value"] for action in phone.ami.actions_named("Setvar")
                if action["Channel"] == channel and action["Variable"] == "IVR_HANDOFF_ID")


async def handoff_status(running_stack: Stack, handoff_id: str, wanted: str) -> dict[str, Any]:
    with running_stack.risk_api("desk") as api:
        for _ in range(200):
            found = [h for h in api.get("/handoffs", params={"status": wanted, "limit": 500}).json()
                     if h["handoff_id"] == handoff_id]
            if found:
                return found[0]
            await asyncio.sleep(0.05)
    raise AssertionError(f"hand-over {handoff_id} never became {wanted}")


async def test_the_desk_sees_a_phone_handover_answered_by_a_queue_member_or_abandoned(
        phone: Phone, running_stack: Stack) -> None:
    answered, abandoned = await phone.dial(None), await phone.dial(None)
    answered_id, abandoned_id = await handed_over(phone, answered), await handed_over(phone, abandoned)
    # Fields as a real Asterisk 22 sends them (shared/asterisk-sessions, inbound-dtmf-handover-agent-answers).
    await phone.ami.emit("AgentConnect", Channel=f"PJSIP/softphone-{answered.call_uuid.hex[:8]}",
                         Context="ivr-handover", Exten="agents", DestChannel="Local/s@test-agent-00000000;1",
                         Queue="agents", Interface="Local/s@test-agent/n", MemberName="standin-agent",
                         HoldTime="0", RingTime="0")
    await phone.ami.emit("QueueCallerAbandon", Channel=f"PJSIP/softphone-{abandoned.call_uuid.hex[:8]}",
                         Queue="agents", Position="1", OriginalPosition="1", HoldTime="12")
    assert (await handoff_status(running_stack, answered_id, "accepted"))["agent"] == "standin-agent"
    assert (await handoff_status(running_stack, abandoned_id, "abandoned"))["agent"] is None
    for peer in (answered, abandoned):
        await peer.close()
