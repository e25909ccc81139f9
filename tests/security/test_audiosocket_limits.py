"""Attacks on the phone gateway's AudioSocket port (docs/security.md, "AudioSocket"): more
connections than the cap, audio faster than real time, audio of another kind, a key the keypad
does not have, a second connection with a live call's UUID, a UUID the dialplan never announced.
Each is performed by a peer on loopback (bench/audiosocket_peer.py and tests/telephony/peers.py,
written from the protocol documentation) against the real AudioSocketServer, or the Gateway for
the UUID check, with the legitimate call shown still working. The rate limit runs on a virtual clock: no timing here
decides a result, waits are only bounded polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

import telephony.gateway as gateway_module
from bench.audiosocket_peer import FRAME_BYTES, AudioSocketPeer
from ivr_config.environment import SettingsError
from telephony.ami import AmiClient, AmiConfig
from telephony.audiosocket import AudioIn, AudioSocketCall, AudioSocketServer, CallEvent, DtmfIn, HangupIn
from telephony.gateway import Gateway, GatewaySettings, PhoneCall
from telephony.priority import load_priority_rules
from tests.telephony.peers import AmiPeer
from voice.frames import CallStarted, Frame

FRAME = b"\x01\x00" * (FRAME_BYTES // 2)  # 20 ms of 8 kHz slin
CALLER_NUMBER = "13800138000"


@dataclass
class Clock:
    """Virtual monotonic seconds for the server's rate limit."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


class Calls:
    """The bot's side: records each call's events and answers every key with one frame of it."""

    def __init__(self) -> None:
        self.events: dict[str, list[CallEvent]] = {}
        self.finished: dict[str, asyncio.Event] = {}

    async def __call__(self, call: AudioSocketCall) -> None:
        events = self.events.setdefault(call.uuid, [])
        done = self.finished.setdefault(call.uuid, asyncio.Event())
        async for event in call:
            events.append(event)
            if isinstance(event, DtmfIn):
                await call.send_frame(event.digit.encode() * FRAME_BYTES)
        done.set()

    def audio_frames(self, peer: AudioSocketPeer) -> int:
        return sum(1 for event in self.events.get(str(peer.call_uuid), []) if isinstance(event, AudioIn))

    async def wait(self, peer: AudioSocketPeer) -> list[CallEvent]:
        """The call's events once its handler has seen the end."""
        done = self.finished.setdefault(str(peer.call_uuid), asyncio.Event())
        await asyncio.wait_for(done.wait(), 5)
        return self.events[str(peer.call_uuid)]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """A bounded poll: a generous limit for a busy machine, not a timing assertion."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def answers_a_key(peer: AudioSocketPeer, digit: str = "5") -> bool:
    """The call still works both ways: a key goes in, the bot's frame comes back."""
    await peer.send_dtmf(digit)
    await until(lambda: any(message.payload == digit.encode() * FRAME_BYTES for message in peer.audio()))
    return True


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.fixture
async def calls() -> Calls:
    return Calls()


@pytest.fixture
async def clock() -> Clock:
    return Clock()


@pytest.fixture
async def server(calls: Calls, clock: Clock) -> AsyncIterator[AudioSocketServer]:
    server = AudioSocketServer(calls, host="127.0.0.1", port=0, uuid_timeout=30.0, max_calls=2, clock=clock)
    await server.start()
    yield server
    await server.close()


async def dial(server: AudioSocketServer, call_uuid: uuid.UUID | None = None) -> AudioSocketPeer:
    """What Asterisk's AudioSocket() does: connect and send the UUID; returns once it is a call."""
    peer = await AudioSocketPeer("127.0.0.1", server.port, call_uuid).connect()
    await until(lambda: str(peer.call_uuid) in server.calls)
    return peer


# --- 1. more connections than AUDIOSOCKET_MAX_CALLS ---------------------------------------------

async def test_a_connection_beyond_the_cap_is_refused_at_once_and_the_calls_go_on(
        server: AudioSocketServer, calls: Calls, caplog: pytest.LogCaptureFixture) -> None:
    first, second = await dial(server), await dial(server)
    extra = await AudioSocketPeer("127.0.0.1", server.port).connect()  # sends its UUID, as Asterisk does
    assert await extra.wait_closed_by_server(5)
    assert not extra.audio() and str(extra.call_uuid) not in calls.events
    # Not after the 30 s UUID timeout but at once, and with an error message.
    silent = await AudioSocketPeer("127.0.0.1", server.port).connect(send_uuid=False)
    assert await silent.wait_closed_by_server(5)
    assert [message.kind for message in silent.received] == [0xFF]
    assert warnings(caplog) == [
        f"connection from ('127.0.0.1', {port_of(peer)}) refused: 2 connections already (AUDIOSOCKET_MAX_CALLS)"
        for peer in (extra, silent)]
    assert set(server.calls) == {str(first.call_uuid), str(second.call_uuid)}
    assert await answers_a_key(first) and await answers_a_key(second)
    # A call that ends frees its place.
    await first.send_hangup()
    await until(lambda: str(first.call_uuid) not in server.calls)
    assert await answers_a_key(await dial(server))


def port_of(peer: AudioSocketPeer) -> int:
    assert peer._writer is not None
    return peer._writer.get_extra_info("sockname")[1]


def test_the_cap_is_a_gateway_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISK_API_TOKEN", "a-risk-token-for-tests")
    monkeypatch.delenv("ASTERISK_AMI_SECRET", raising=False)
    monkeypatch.delenv("AUDIOSOCKET_MAX_CALLS", raising=False)
    assert GatewaySettings.from_env().max_calls == 64
    monkeypatch.setenv("AUDIOSOCKET_MAX_CALLS", "8")
    assert GatewaySettings.from_env().max_calls == 8
    for wrong in ("0", "-1", "many"):
        monkeypatch.setenv("AUDIOSOCKET_MAX_CALLS", wrong)
        with pytest.raises(SettingsError, match="AUDIOSOCKET_MAX_CALLS must be a whole number of at least 1"):
            GatewaySettings.from_env()


# --- 2. audio faster than real time -------------------------------------------------------------

async def test_audio_far_ahead_of_real_time_is_cut_off_and_real_time_with_a_catch_up_is_not(
        server: AudioSocketServer, calls: Calls, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    honest = await dial(server)
    for second in range(10):  # 10 s, one second at a time; the clock moves once the server has read it
        await honest.send_raw(b"".join(encoded(0x10, FRAME) for _ in range(50)))
        await until(lambda second=second: calls.audio_frames(honest) == 50 * (second + 1))
        clock.now += 1.0
    clock.now += 4.0  # a 4 s network stall, then Asterisk catches up in one burst
    await honest.send_raw(b"".join(encoded(0x10, FRAME) for _ in range(200)))
    await until(lambda: calls.audio_frames(honest) == 700)

    flooder = await dial(server)
    with contextlib.suppress(ConnectionError):  # the server may hang up before all of it is written
        await flooder.send_raw(b"".join(encoded(0x10, FRAME) for _ in range(300)))  # 6 s at once
    assert await flooder.wait_closed_by_server(5)
    flooded = await calls.wait(flooder)
    assert sum(1 for event in flooded if isinstance(event, AudioIn)) <= 250  # 5 s: the burst allowed
    assert str(flooder.call_uuid) not in server.calls
    assert warnings(caplog) == [f"call {flooder.call_uuid}: more than 5 s of audio ahead of real time: "
                                "a flood, cut off"]

    assert await answers_a_key(honest)
    await honest.send_hangup()
    events = await calls.wait(honest)
    assert calls.audio_frames(honest) == 700 and events[-1] == HangupIn(by_message=True)


def encoded(kind: int, payload: bytes) -> bytes:
    return bytes([kind]) + len(payload).to_bytes(2, "big") + payload


# --- 3. audio of another kind than slin 8 kHz ---------------------------------------------------

@pytest.mark.parametrize("kind", range(0x11, 0x19))
async def test_audio_at_another_rate_ends_the_call_cleanly(server: AudioSocketServer, calls: Calls, kind: int,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    peer = await dial(server)
    await peer.send(0x10, FRAME)
    await peer.send(kind, b"\x00\x01" * 320)
    assert await peer.wait_closed_by_server(5)
    assert [message.kind for message in peer.received] == [0xFF]
    assert await calls.wait(peer) == [AudioIn(FRAME, 8000)]  # the handler's iteration simply ends
    assert str(peer.call_uuid) not in server.calls
    (warning,) = warnings(caplog)
    assert warning.startswith(f"call {peer.call_uuid}: AUDIO_")
    assert warning.endswith("audio refused: only slin 8 kHz (0x10) is accepted")


# --- 6. a key the keypad does not have ----------------------------------------------------------

@pytest.mark.parametrize("key", [b"x", b"\xff", b"\x00"])
async def test_a_dtmf_message_that_is_no_key_ends_the_call(server: AudioSocketServer, calls: Calls, key: bytes,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    peer = await dial(server)
    await peer.send_dtmf("1")
    await peer.send(0x03, key)
    assert await peer.wait_closed_by_server(5)
    assert peer.received[-1].kind == 0xFF  # perhaps after the bot's answer to "1"
    assert await calls.wait(peer) == [DtmfIn("1")]
    assert warnings(caplog) == [f"call {peer.call_uuid}: DTMF payload 0x{key[0]:02x} is not a key (0-9 * # A-D)"]


# --- 4. a second connection with a live call's UUID ---------------------------------------------

async def test_a_second_connection_with_a_live_calls_uuid_is_refused_and_the_call_goes_on(
        server: AudioSocketServer, calls: Calls, caplog: pytest.LogCaptureFixture) -> None:
    caller = await dial(server)
    live = server.calls[str(caller.call_uuid)]
    intruder = await AudioSocketPeer("127.0.0.1", server.port, caller.call_uuid).connect()
    assert await intruder.wait_closed_by_server(5)
    assert [message.kind for message in intruder.received] == [0xFF]
    assert warnings(caplog) == [f"call {caller.call_uuid}: a second connection with this UUID refused; "
                                "the live call goes on"]
    assert server.calls[str(caller.call_uuid)] is live and not live.closed
    await caller.send(0x10, FRAME)
    assert await answers_a_key(caller)
    await caller.send_hangup()
    assert await calls.wait(caller) == [AudioIn(FRAME, 8000), DtmfIn("5"), HangupIn(by_message=True)]


async def test_a_uuid_may_come_back_once_its_call_is_over(server: AudioSocketServer, calls: Calls) -> None:
    """The dialplan does this: a caller nobody answered in the agents' queue returns to the bot
    with the same UUID."""
    first = await dial(server)
    await first.send_hangup()
    await until(lambda: str(first.call_uuid) not in server.calls)
    assert await answers_a_key(await dial(server, first.call_uuid))


# --- 5. a UUID the dialplan never announced (Gateway with AMI) ----------------------------------

class NoEngines:
    """The gateway's voice engines; `run_call` is replaced below, so only whether a recogniser
    is there (none: keypad only) and `close` are used."""

    recognizer = None

    async def close(self) -> None:
        return None


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[CallStarted]:
    """The calls the gateway hands to the voice pipeline, which greets with one frame."""
    started: list[CallStarted] = []

    async def pipeline(engines: Any, call: CallStarted, frames: AsyncIterator[Frame], sink: PhoneCall) -> None:
        started.append(call)
        await sink.write_frame(FRAME)
        async for _ in frames:
            pass

    monkeypatch.setattr(gateway_module, "run_call", pipeline)
    # How long the gateway waits for a UserEvent; in these tests it either came first or never comes.
    monkeypatch.setattr(gateway_module, "CHANNEL_LOOKUP_SECONDS", 0.3)
    return started


def closed_port() -> int:
    """A loopback port nothing listens on: the risk API lookup fails at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
async def ami_peer() -> AsyncIterator[AmiPeer]:
    peer = await AmiPeer().start()
    yield peer
    await peer.stop()


async def start_gateway(ami_peer: AmiPeer | None) -> Gateway:
    config = (AmiConfig(host="127.0.0.1", port=ami_peer.port, username="ivr-bot", secret="s3cret")
              if ami_peer else None)
    unreachable = f"http://127.0.0.1:{closed_port()}"
    settings = GatewaySettings(host="127.0.0.1", port=0, rasa_url=unreachable, risk_api_url=unreachable,
                               risk_api_token="unused", ami=config)
    ami = AmiClient(config) if config else None
    if ami is not None:
        await ami.connect()
    gateway = Gateway(settings, NoEngines(), load_priority_rules(), ami)  # type: ignore[arg-type]
    await gateway.start()
    return gateway


async def test_with_ami_up_a_uuid_the_dialplan_did_not_announce_is_refused(
        ami_peer: AmiPeer, served: list[CallStarted], caplog: pytest.LogCaptureFixture) -> None:
    gateway = await start_gateway(ami_peer)
    try:
        stranger = await AudioSocketPeer("127.0.0.1", gateway.server.port).connect()
        assert await stranger.wait_closed_by_server(5)
        assert [message.kind for message in stranger.received] == [0xFF]  # refused, never greeted
        assert served == []
        assert f"call {stranger.call_uuid}: refused: AMI is up but no IvrCall UserEvent announced this UUID" \
            in warnings(caplog)

        # The dialplan's own call: UserEvent(IvrCall) first, then AudioSocket().
        call_uuid = uuid.uuid4()
        await ami_peer.emit("UserEvent", UserEvent="IvrCall", Uuid=str(call_uuid), Direction="inbound",
                            Channel="PJSIP/softphone-00000001", CallerIDNum=CALLER_NUMBER, CallerIDName="<unknown>")
        assert gateway.directory is not None
        await until(lambda: gateway.directory.known(str(call_uuid)) is not None)
        caller = await AudioSocketPeer("127.0.0.1", gateway.server.port, call_uuid).connect()
        assert len(await caller.wait_for_audio(FRAME_BYTES, 5)) >= FRAME_BYTES
        assert [(call.call_id, call.caller_number) for call in served] == [(str(call_uuid), CALLER_NUMBER)]
        await caller.send_hangup()
        assert await caller.wait_closed_by_server(5)
    finally:
        await gateway.close()
    assert CALLER_NUMBER not in caplog.text  # call UUIDs in the log, never the caller's number


async def test_with_ami_down_or_off_an_unannounced_uuid_is_still_served(
        ami_peer: AmiPeer, served: list[CallStarted]) -> None:
    """Asterisk's manager unreachable (its UserEvents lost) or not configured (a developer's
    setup): the caller is served anonymously rather than turned away."""
    with_ami = await start_gateway(ami_peer)
    without_ami = await start_gateway(None)
    try:
        await ami_peer.stop()
        assert with_ami.ami is not None
        await until(lambda: not with_ami.ami.connected)
        for gateway in (with_ami, without_ami):
            caller = await AudioSocketPeer("127.0.0.1", gateway.server.port).connect()
            assert len(await caller.wait_for_audio(FRAME_BYTES, 5)) >= FRAME_BYTES
            assert served[-1].call_id == str(caller.call_uuid) and served[-1].caller_number is None
            await caller.send_hangup()
    finally:
        await with_ami.close()
        await without_ami.close()
