"""AudioSocketServer against AudioSocketPeer (Asterisk's side, from the protocol docs) on loopback."""

from __future__ import annotations

import asyncio
import logging
import struct
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bench.audiosocket_peer import FRAME_BYTES, AudioSocketPeer
from bench.stand_ins import VirtualTime
from bench.telephony import Echo
from telephony import audiosocket
from telephony.audiosocket import (
    AudioIn,
    AudioSocketCall,
    AudioSocketServer,
    CallEvent,
    DtmfIn,
    ErrorIn,
    HangupIn,
    Kind,
    ProtocolError,
    encode,
    read_message,
)
from telephony.gateway import AudioSocketTransport
from tests.waiting import BOUND_SECONDS, until
from voice.frames import CallStarted, Control, Interruption, Keypress, OutputAudio
from voice.output import AudioOutput
from voice.pipeline import Pipeline

Handler = Callable[[AudioSocketCall], Awaitable[None]]


def tone(frames: int, start: int = 0) -> bytes:
    """Distinct 16-bit samples per frame so order and loss are visible."""
    return b"".join(struct.pack("<h", (start + index) % 30000) * (FRAME_BYTES // 2) for index in range(frames))


class Recorder:
    """A handler that records every inbound event of every call."""

    def __init__(self) -> None:
        self.events: dict[str, list[CallEvent]] = {}
        self.finished: dict[str, asyncio.Event] = {}

    async def __call__(self, call: AudioSocketCall) -> None:
        self.events[call.uuid] = []
        done = self.finished.setdefault(call.uuid, asyncio.Event())
        async for event in call:
            self.events[call.uuid].append(event)
        done.set()

    async def wait(self, call_uuid: uuid.UUID, timeout: float = 2.0) -> list[CallEvent]:
        done = self.finished.setdefault(str(call_uuid), asyncio.Event())
        await asyncio.wait_for(done.wait(), timeout)
        return self.events[str(call_uuid)]


@pytest.fixture
async def recorder() -> Recorder:
    return Recorder()


async def serve(handler: Handler) -> AudioSocketServer:
    server = AudioSocketServer(handler, host="127.0.0.1", port=0, uuid_timeout=1.0)
    await server.start()
    return server


@pytest.fixture
async def recording_server(recorder: Recorder) -> AsyncIterator[AudioSocketServer]:
    server = await serve(recorder)
    yield server
    await server.close()


async def peer_of(server: AudioSocketServer) -> AudioSocketPeer:
    return await AudioSocketPeer("127.0.0.1", server.port).connect()


# --- codec -------------------------------------------------------------------------------------

async def read_from(data: bytes, max_payload: int = 1024) -> object:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return await read_message(reader, max_payload)


async def test_codec_round_trips_every_kind() -> None:
    assert encode(Kind.HANGUP) == b"\x00\x00\x00"
    assert encode(Kind.DTMF, b"5") == b"\x03\x00\x015"
    for kind, payload in [(Kind.UUID, bytes(range(16))), (Kind.AUDIO_8K, b"\x01\x02" * 160),
                          (Kind.AUDIO_16K, b"\x00" * 640), (Kind.ERROR, b"\x01")]:
        message = await read_from(encode(kind, payload))
        assert (message.kind, message.payload) == (kind, payload)
    assert await read_from(b"") is None


@pytest.mark.parametrize(("data", "problem"), [
    (b"\x10\x01\x40" + b"\x00" * 100, "AUDIO_8K declares 320 payload bytes but the connection ended after 100"),
    (b"\x42\x00\x00", "unknown message kind 0x42"),
    (b"\x10\x08\x00" + b"\x00" * 2048, "AUDIO_8K payload of 2048 bytes exceeds the limit of 1024"),
    (b"\x01\x00\x04abcd", "UUID payload must be 16 bytes, got 4"),
    # Refused on the header: the 1000 bytes are never waited for.
    (b"\x01\x03\xe8" + bytes(16), "UUID payload must be 16 bytes, got 1000"),
    (b"\x03\x00\x00", "empty DTMF message"),
    (b"\x03\x00\x0212", "DTMF payload of 2 bytes, want 1"),
    (b"\x03\x00\x01x", "DTMF payload 0x78 is not a key"),
    (b"\x03\x00\x01\xff", "DTMF payload 0xff is not a key"),
    (b"\x10\x00\x03abc", "odd length"),
    (b"\x10\x01", "inside a message header"),
])
async def test_malformed_messages_raise_clear_protocol_errors(data: bytes, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
        await read_from(data)


def test_payload_beyond_the_length_field_is_refused() -> None:
    with pytest.raises(ValueError, match="16-bit length"):
        encode(Kind.AUDIO_8K, b"\x00" * 70000)


# --- sessions ----------------------------------------------------------------------------------

async def test_inbound_audio_arrives_with_its_rate(recording_server: AudioSocketServer, recorder: Recorder) -> None:
    peer = await peer_of(recording_server)
    await peer.stream(tone(3))
    await peer.send_hangup()
    events = await recorder.wait(peer.call_uuid)
    audio = [event for event in events if isinstance(event, AudioIn)]
    assert b"".join(a.pcm for a in audio) == tone(3)
    assert [a.sample_rate for a in audio] == [8000, 8000, 8000]  # other rates: tests/security
    assert events[-1] == HangupIn(by_message=True)
    assert await peer.wait_closed_by_server(2)


async def test_dtmf_frames_arrive_as_digits(recording_server: AudioSocketServer, recorder: Recorder) -> None:
    peer = await peer_of(recording_server)
    for digit in "12#*":
        await peer.send_dtmf(digit)
    await peer.send(0xFF, b"\x01")
    await peer.close()
    events = await recorder.wait(peer.call_uuid)
    assert [event.digit for event in events if isinstance(event, DtmfIn)] == ["1", "2", "#", "*"]
    (error,) = [event for event in events if isinstance(event, ErrorIn)]
    assert error.description == "hangup of calling party"


async def test_eof_without_hangup_frame_is_a_hangup(recording_server: AudioSocketServer, recorder: Recorder) -> None:
    peer = await peer_of(recording_server)
    await peer.stream(tone(2))
    await peer.close()
    events = await recorder.wait(peer.call_uuid)
    assert events[-1] == HangupIn(by_message=False)
    await until(lambda: str(peer.call_uuid) not in recording_server.calls)


async def test_call_is_keyed_by_the_uuid_string(recorder: Recorder) -> None:
    seen: list[str] = []

    async def handler(call: AudioSocketCall) -> None:
        seen.append(call.uuid)
        await call.hangup()

    server = await serve(handler)
    try:
        peer = await peer_of(server)
        assert await peer.wait_closed_by_server(2)
        assert seen == [str(peer.call_uuid)]
        assert peer.received[-1].kind == 0x00  # hangup() sends 0x00 before closing
    finally:
        await server.close()


async def test_audio_before_uuid_is_rejected(recording_server: AudioSocketServer, recorder: Recorder,
                                             caplog: pytest.LogCaptureFixture) -> None:
    peer = await AudioSocketPeer("127.0.0.1", recording_server.port).connect(send_uuid=False)
    await peer.send(0x10, tone(1))
    assert await peer.wait_closed_by_server(2)
    assert recorder.events == {}
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"call unidentified from ('127.0.0.1', {peer_port(peer)}): AUDIO_8K before the UUID message"]


def peer_port(peer: AudioSocketPeer) -> int:
    assert peer._writer is not None
    return peer._writer.get_extra_info("sockname")[1]


async def test_silent_connection_without_uuid_is_dropped(recording_server: AudioSocketServer) -> None:
    peer = await AudioSocketPeer("127.0.0.1", recording_server.port).connect(send_uuid=False)
    assert await peer.wait_closed_by_server(3)


async def misbehave_next_to_a_good_call(server: AudioSocketServer, recorder: Recorder, bad_bytes: bytes,
                                        caplog: pytest.LogCaptureFixture) -> tuple[list[CallEvent], str]:
    """One call sends `bad_bytes` while another streams; returns the good call's events and the log."""
    good = await peer_of(server)
    bad = await peer_of(server)
    streaming = asyncio.create_task(good.stream(tone(15)))
    await asyncio.sleep(0.1)
    await bad.send_raw(bad_bytes)
    await bad.end_stream()  # as a crashing Asterisk would: nothing more after the bad bytes
    assert await bad.wait_closed_by_server(2)
    assert not good.closed_by_server.is_set()
    await streaming
    await good.send_dtmf("9")
    await good.send_hangup()
    events = await recorder.wait(good.call_uuid)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"call {bad.call_uuid}: ")
    return events, warnings[0]


async def test_length_beyond_data_ends_only_that_call(recording_server: AudioSocketServer, recorder: Recorder,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    bad_bytes = b"\x10\x01\x40" + b"\x00" * 100  # declares 320 bytes, sends 100, then the stream ends
    events, warning = await misbehave_next_to_a_good_call(recording_server, recorder, bad_bytes, caplog)
    assert warning.endswith("AUDIO_8K declares 320 payload bytes but the connection ended after 100")
    assert b"".join(e.pcm for e in events if isinstance(e, AudioIn)) == tone(15)
    assert events[-2:] == [DtmfIn("9"), HangupIn(by_message=True)]


async def test_unknown_kind_ends_only_that_call(recording_server: AudioSocketServer, recorder: Recorder,
                                                caplog: pytest.LogCaptureFixture) -> None:
    events, warning = await misbehave_next_to_a_good_call(recording_server, recorder, b"\x42\x00\x02hi", caplog)
    assert warning.endswith("unknown message kind 0x42 (payload length 2)")
    assert b"".join(e.pcm for e in events if isinstance(e, AudioIn)) == tone(15)


async def test_oversized_payload_ends_only_that_call(recording_server: AudioSocketServer, recorder: Recorder,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    events, warning = await misbehave_next_to_a_good_call(recording_server, recorder, b"\x10\xff\xff", caplog)
    assert "payload of 65535 bytes exceeds the limit" in warning
    assert events[-1] == HangupIn(by_message=True)


async def test_handler_exception_is_logged_and_only_that_call_closed(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(call: AudioSocketCall) -> None:
        async for event in call:
            if isinstance(event, DtmfIn) and event.digit == "0":
                raise RuntimeError("bot crashed")

    server = await serve(handler)
    try:
        doomed, fine = await peer_of(server), await peer_of(server)
        await doomed.send_dtmf("0")
        assert await doomed.wait_closed_by_server(2)
        assert not await fine.wait_closed_by_server(0.2)
        assert any("handler failed" in r.getMessage() and r.exc_info for r in caplog.records)
    finally:
        await server.close()
    assert await fine.wait_closed_by_server(2)


async def test_close_ends_all_calls(recording_server: AudioSocketServer, recorder: Recorder) -> None:
    peers = [await peer_of(recording_server) for _ in range(3)]
    await until(lambda: len(recording_server.calls) == 3)
    await recording_server.close()
    for peer in peers:
        assert await peer.wait_closed_by_server(BOUND_SECONDS)
        assert peer.received[-1].kind == 0x00


async def test_close_returns_once_a_stubborn_handler_has_torn_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler deaf to the hang-up and slow to stop (a turn in flight) is cancelled, and close()
    waits for its teardown: the gateway closes the clients that teardown uses (the outcome
    report's) only afterwards."""
    monkeypatch.setattr(audiosocket, "HANDLER_GRACE_SECONDS", 0.2)
    torn_down: list[str] = []

    async def stubborn(call: AudioSocketCall) -> None:
        try:
            await asyncio.Event().wait()  # the call's work: not ended by the hang-up
        finally:
            try:
                await asyncio.Event().wait()  # teardown waiting on more: ended by close()'s cancellation
            finally:
                torn_down.append(call.uuid)

    server = await serve(stubborn)
    peer = await peer_of(server)
    await until(lambda: bool(server.calls))
    await server.close()
    assert torn_down == [str(peer.call_uuid)]
    assert await peer.wait_closed_by_server(BOUND_SECONDS)


# --- outbound audio: the voice pipeline's output clock writing frames to the call -------------

async def call_in_virtual_time(handler: Handler, time_: VirtualTime) -> tuple[AudioSocketServer, AudioSocketPeer]:
    """A server whose calls keep virtual time, and one call to it, up and running."""
    server = AudioSocketServer(handler, host="127.0.0.1", port=0, clock=time_.clock, sleep=time_.sleep)
    await server.start()
    peer = await peer_of(server)
    for _ in range(1000):
        if server.calls:
            return server, peer
        await asyncio.sleep(0.005)
    await server.close()
    raise AssertionError("the call never started")


def output_to(call: AudioSocketCall, time_: VirtualTime) -> tuple[AudioSocketTransport, AudioOutput, Pipeline]:
    """The gateway's outbound path (AudioOutput paces, the call sends each frame) on virtual time."""
    transport = AudioSocketTransport(call)
    output = AudioOutput(transport, time_.clock, time_.sleep)
    return transport, output, Pipeline([output])


async def test_outbound_audio_leaves_in_320_byte_frames_in_order_one_every_20_ms() -> None:
    time_ = VirtualTime()
    outputs: list[AudioOutput] = []

    async def speaker(call: AudioSocketCall) -> None:
        _, output, pipeline = output_to(call, time_)
        outputs.append(output)
        await pipeline.send(CallStarted(call.uuid))
        await pipeline.send(OutputAudio(tone(50, start=1) + b"\x07\x00" * 10, 8000, "您好"))  # 1 s, a 20-byte tail
        await pipeline.send(Control("hangup"))  # after the words, as the gateway's hang-up is
        await call.wait_closed()
        await pipeline.close()

    server, peer = await call_in_virtual_time(speaker, time_)
    try:
        await time_.advance_to(0.51)  # deadlines 0, 20, … 500 ms have passed: 26 frames
        assert len(await peer.wait_for_audio(26 * 320, 2)) == 26 * 320
        await asyncio.sleep(0.05)
        assert len(peer.audio()) == 26, "no frame before its deadline"
        await time_.advance_to(1.1)
        assert await peer.wait_closed_by_server(2)
    finally:
        await server.close()
    frames = peer.audio()
    assert len(frames) == 51 and all(len(frame.payload) == 320 for frame in frames)
    assert peer.audio_bytes()[:50 * 320] == tone(50, start=1)
    assert frames[-1].payload == b"\x07\x00" * 10 + b"\x00" * 300  # the tail padded with silence
    assert peer.received[-1].kind == 0x00  # the hang-up waited for the words before it
    assert not peer.keepalives(), "no keep-alive frame interrupts speech"
    assert (outputs[0].frames_sent, outputs[0].late_frames) == (51, 0)


async def test_a_barge_in_stops_the_prompt_on_the_wire_and_the_answer_follows_at_once() -> None:
    time_ = VirtualTime()
    answered = asyncio.Event()

    async def barge_in(call: AudioSocketCall) -> None:
        transport, _, pipeline = output_to(call, time_)
        await pipeline.send(CallStarted(call.uuid))
        await pipeline.send(OutputAudio(tone(100, start=1), 8000, "提示"))  # 2 s of prompt
        async for frame in transport.frames():
            if isinstance(frame, Keypress):  # the caller presses a key (speech goes the same way)
                await pipeline.send(Interruption("key"))
                await pipeline.send(OutputAudio(tone(3, start=500), 8000, "回答"))  # the bot answers at once
                answered.set()
        await pipeline.close()

    server, peer = await call_in_virtual_time(barge_in, time_)
    try:
        await time_.advance_to(0.31)  # 16 prompt frames out (0 … 300 ms)
        await peer.send_dtmf("1")
        await asyncio.wait_for(answered.wait(), 2)
        await time_.advance_to(1.0)
        await peer.wait_for_audio(19 * 320, 2)
        await peer.close()
    finally:
        await server.close()
    # Not one prompt frame after the flush: only the output clock held the rest, and it dropped it.
    assert [frame.payload for frame in peer.audio()] == (
        [tone(1, start=1 + index) for index in range(16)] + [tone(1, start=500 + index) for index in range(3)])


async def test_fifty_concurrent_calls_each_hear_only_their_own_echo() -> None:
    echo = Echo()  # bench/telephony.py's load, as a correctness check
    server = await serve(echo)
    try:
        peers = [await peer_of(server) for _ in range(50)]
        frames_each = 75  # 1.5 s
        await asyncio.wait_for(asyncio.gather(*(peer.stream(tone(frames_each, start=i + 1)) for i, peer in
                                                enumerate(peers))), 10)
        received = await asyncio.wait_for(asyncio.gather(*(peer.wait_for_audio(frames_each * 320, 3)
                                                           for peer in peers)), 10)
        for index, audio in enumerate(received):
            assert audio == tone(frames_each, start=index + 1)  # every call hears only its own audio, in order
        assert sum(output.frames_sent for output in echo.outputs) == 50 * frames_each
    finally:
        await server.close()


# --- keep-alive ------------------------------------------------------------------------------

async def test_a_caller_who_sends_nothing_gets_keepalive_frames_within_asterisks_two_seconds() -> None:
    # Asterisk ends AudioSocket() after 2 s with no message either way (caller on hold, a trunk
    # with silence suppression): ten virtual seconds of a silent caller and a silent bot.
    time_ = VirtualTime()
    sent_at: list[float] = []

    async def silent_bot(call: AudioSocketCall) -> None:
        write = call._writer.write

        def stamped(data: bytes) -> None:
            sent_at.append(time_.now)
            write(data)
        call._writer.write = stamped  # type: ignore[method-assign]
        await call.wait_closed()

    server, peer = await call_in_virtual_time(silent_bot, time_)
    try:
        await time_.advance_to(10.0)
        await asyncio.sleep(0.05)
        assert not peer.closed_by_server.is_set()
        await peer.close()
    finally:
        await server.close()
    gaps = [later - earlier for earlier, later in zip([0.0, *sent_at], sent_at, strict=False)]
    assert len(sent_at) >= 10 / 0.5 - 1 and max(gaps) < 2.0, gaps
    assert len(peer.keepalives()) == len(sent_at) and all(m.payload == bytes(320) for m in peer.keepalives())
    assert not peer.audio(), "keep-alive frames are silence"


# --- one address, several gateway processes -------------------------------------------------------

async def test_gateways_sharing_the_audiosocket_port_each_take_some_of_the_calls() -> None:
    """SO_REUSEPORT: two servers (as two gateway processes would) on one address; the kernel spreads
    the connections by their source port, so 24 calls all landing on one would be a 1 in 8 million
    chance. Every call is served exactly once; a server that does not share cannot bind there."""
    first, second = Recorder(), Recorder()
    one = AudioSocketServer(first, host="127.0.0.1", port=0, share_port=True)
    await one.start()
    other = AudioSocketServer(second, host="127.0.0.1", port=one.port, share_port=True)
    await other.start()
    try:
        calls = [uuid.uuid4() for _ in range(24)]
        for call_uuid in calls:
            peer = await AudioSocketPeer("127.0.0.1", one.port, call_uuid).connect()
            await peer.send_hangup()
            await peer.close()
        await until(lambda: len(first.events) + len(second.events) == len(calls))
        assert first.events and second.events, "both processes take calls"
        assert set(first.events) | set(second.events) == {str(call_uuid) for call_uuid in calls}
        assert not set(first.events) & set(second.events)
        alone = AudioSocketServer(Recorder(), host="127.0.0.1", port=one.port)
        with pytest.raises(OSError):
            await alone.start()
    finally:
        await one.close()
        await other.close()
