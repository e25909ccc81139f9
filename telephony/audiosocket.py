"""AudioSocket server: the audio leg between Asterisk and the voice bot.

Protocol (docs.asterisk.org, Configuration/Channel-Drivers/AudioSocket): TCP, every message is a
3-byte header -- kind (1 byte) and payload length (2 bytes, big-endian) -- then the payload.
Asterisk is the client: it connects, sends the call UUID (kind 0x01, 16 binary bytes) first, then
audio every 20 ms and DTMF digits; it may close without a hangup message (EOF is a hangup).

Outbound audio is always kind 0x10 (signed 16-bit little-endian, 8 kHz mono) in 320-byte frames,
sent one at a time by `send_frame`: the sender paces them (the voice pipeline's output clock,
voice/output.py), so there is one pacing clock and one queue, the one a barge-in flushes.
While the bot is silent a silence frame goes out every `KEEPALIVE_SECONDS`: Asterisk's
AudioSocket() ends a call after 2 s with no message either way, and a caller on hold or behind a
trunk with silence suppression sends none.

Limits against a broken or hostile peer on the port (docs/security.md): at most `max_calls`
connections at once (one more is refused before its UUID is read); a UUID already in a live call
is refused and the live call goes on; inbound audio is slin 8 kHz only (0x10; the other audio
kinds are a protocol error); a connection more than `MAX_AHEAD_SECONDS` ahead of real time is a
flood, a protocol error too; UUID and DTMF messages must have their exact sizes (checked on the
header, before any payload is read) and a DTMF message must carry a key Asterisk sends (0-9 * #
A-D). Refusals and protocol errors are answered with an error message (0xff) and a close: on it
Asterisk's AudioSocket() fails rather than returning, so the dialplan's failover takes the
caller (ivr_config/asterisk/extensions.conf), where a plain close would hang up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum

from voice.audio import FRAME_SECONDS, TELEPHONE_RATE, frame_bytes
from voice.clock import Clock, Sleep

log = logging.getLogger(__name__)

HEADER = struct.Struct(">BH")
MAX_PROTOCOL_PAYLOAD = 0xFFFF
OUTBOUND_FRAME_BYTES = frame_bytes(TELEPHONE_RATE)  # 20 ms of 16-bit mono at 8 kHz: 320
# 20 ms at 192 kHz is 7,680 bytes; anything beyond twice that is not audio Asterisk would send.
DEFAULT_MAX_PAYLOAD = 16384
INBOUND_QUEUE_EVENTS = 500  # 10 s of audio; older audio is dropped if the handler falls behind
HANDLER_GRACE_SECONDS = 5.0  # after the connection ends the handler gets this long to finish
DEFAULT_MAX_CALLS = 64
# Asterisk sends one 20 ms slin frame per message in real time: 323 bytes on the wire per 20 ms.
# Every inbound byte (headers too: empty messages are not free) counts against that rate.
REAL_TIME_BYTES_PER_SECOND = (HEADER.size + OUTBOUND_FRAME_BYTES) / FRAME_SECONDS
# Catching up after a network stall is a burst of a second or two; this far ahead is a flood.
MAX_AHEAD_SECONDS = 5.0
KEEPALIVE_SECONDS = 0.5  # well inside Asterisk's 2 s of no activity
SILENCE_FRAME = bytes(OUTBOUND_FRAME_BYTES)


class Kind(IntEnum):
    """Message kinds of the AudioSocket protocol."""

    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO_8K = 0x10
    AUDIO_12K = 0x11
    AUDIO_16K = 0x12
    AUDIO_24K = 0x13
    AUDIO_32K = 0x14
    AUDIO_44K = 0x15
    AUDIO_48K = 0x16
    AUDIO_96K = 0x17
    AUDIO_192K = 0x18
    ERROR = 0xFF


SAMPLE_RATES: dict[Kind, int] = {
    Kind.AUDIO_8K: 8000,
    Kind.AUDIO_12K: 12000,
    Kind.AUDIO_16K: 16000,
    Kind.AUDIO_24K: 24000,
    Kind.AUDIO_32K: 32000,
    Kind.AUDIO_44K: 44100,
    Kind.AUDIO_48K: 48000,
    Kind.AUDIO_96K: 96000,
    Kind.AUDIO_192K: 192000,
}

# Error codes Asterisk sends in a 0xff message (bit-packed).
ASTERISK_ERRORS = {0x01: "hangup of calling party", 0x02: "frame forwarding error", 0x04: "memory error"}
DTMF_KEYS = frozenset(b"0123456789*#ABCD")


class ProtocolError(Exception):
    """The peer sent something the AudioSocket protocol does not allow."""


@dataclass(frozen=True)
class Message:
    kind: Kind
    payload: bytes


def encode(kind: Kind, payload: bytes = b"") -> bytes:
    """One AudioSocket message on the wire."""
    if len(payload) > MAX_PROTOCOL_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes does not fit the 16-bit length field")
    return HEADER.pack(kind, len(payload)) + payload


async def read_message(reader: asyncio.StreamReader, max_payload: int) -> Message | None:
    """The next message, or None on a clean EOF (between messages)."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as error:
        if not error.partial:
            return None
        raise ProtocolError(f"connection ended inside a message header ({len(error.partial)} of 3 bytes)") from None
    kind_byte, length = HEADER.unpack(header)
    try:
        kind = Kind(kind_byte)
    except ValueError:
        raise ProtocolError(f"unknown message kind 0x{kind_byte:02x} (payload length {length})") from None
    _check_length(kind, length)
    if length > max_payload:
        raise ProtocolError(f"{kind.name} payload of {length} bytes exceeds the limit of {max_payload}")
    try:
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError as error:
        raise ProtocolError(
            f"{kind.name} declares {length} payload bytes but the connection ended after {len(error.partial)}"
        ) from None
    _check_payload(kind, payload)
    return Message(kind, payload)


def _check_length(kind: Kind, length: int) -> None:
    """Before the payload is read: a UUID header declaring 60 KB is refused, not read."""
    if kind is Kind.UUID and length != 16:
        raise ProtocolError(f"UUID payload must be 16 bytes, got {length}")
    if kind is Kind.DTMF and length != 1:
        raise ProtocolError("empty DTMF message" if not length else f"DTMF payload of {length} bytes, want 1")


def _check_payload(kind: Kind, payload: bytes) -> None:
    if kind is Kind.DTMF and payload[0] not in DTMF_KEYS:
        raise ProtocolError(f"DTMF payload 0x{payload[0]:02x} is not a key (0-9 * # A-D)")
    if kind in SAMPLE_RATES and len(payload) % 2:
        raise ProtocolError(f"{kind.name} payload of odd length {len(payload)} (samples are 16-bit)")


@dataclass(frozen=True)
class AudioIn:
    pcm: bytes
    sample_rate: int


@dataclass(frozen=True)
class DtmfIn:
    digit: str


@dataclass(frozen=True)
class HangupIn:
    """The caller side ended: a 0x00 message (`by_message`) or the connection closed."""

    by_message: bool


@dataclass(frozen=True)
class ErrorIn:
    code: int | None

    @property
    def description(self) -> str:
        if self.code is None:
            return "error without code"
        return ASTERISK_ERRORS.get(self.code, f"application error 0x{self.code:02x}")


CallEvent = AudioIn | DtmfIn | HangupIn | ErrorIn


class InboundBudget:
    """Token bucket on a connection's inbound bytes: real time refills it, `MAX_AHEAD_SECONDS` of
    it is the burst. `clock` returns monotonic seconds (tests drive a virtual one)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._capacity = MAX_AHEAD_SECONDS * REAL_TIME_BYTES_PER_SECOND
        self._tokens = self._capacity
        self._last = clock()

    def spend(self, byte_count: int) -> bool:
        """Take `byte_count`; False once the peer is more than the burst ahead of real time."""
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * REAL_TIME_BYTES_PER_SECOND)
        self._last = now
        self._tokens -= byte_count
        return self._tokens >= 0


class AudioSocketCall:
    """One AudioSocket connection, keyed by the call UUID.

    Iterate it (`async for event in call`) for inbound events; iteration ends when the connection
    does. `send_frame()` sends one outbound frame at once; the sender paces them.
    """

    def __init__(
        self, call_uuid: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_payload: int,
        clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.uuid = call_uuid
        self.frames_sent = 0
        self.keepalive_frames = 0
        self.inbound_dropped = 0
        self._reader = reader
        self._writer = writer
        self._max_payload = max_payload
        self._inbound = InboundBudget(clock)
        self._clock = clock
        self._sleep = sleep
        self._last_sent = clock()
        self._events: asyncio.Queue[CallEvent | None] = asyncio.Queue(INBOUND_QUEUE_EVENTS)
        self._closed = asyncio.Event()
        self._protocol_error: ProtocolError | None = None
        self._reader_task = asyncio.create_task(self._read_loop(), name=f"audiosocket-read-{call_uuid}")
        self._keepalive_task = asyncio.create_task(self._keep_alive(), name=f"audiosocket-keepalive-{call_uuid}")

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def protocol_error(self) -> ProtocolError | None:
        """What ended the call if the peer broke the protocol."""
        return self._protocol_error

    def __aiter__(self) -> AsyncIterator[CallEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[CallEvent]:
        while (event := await self._events.get()) is not None:
            yield event

    async def send_frame(self, pcm: bytes) -> None:
        """Send one 20 ms frame of 8 kHz slin now (a short one is padded with silence). No queue
        here: the sender (the voice pipeline's AudioOutput) paces, and its barge-in flush must reach
        everything not yet sent. Ignored once closed; a dropped connection raises ConnectionError."""
        if self.closed:
            return
        self._write_audio(pcm)
        await self._writer.drain()

    def _write_audio(self, pcm: bytes) -> None:
        self._writer.write(encode(Kind.AUDIO_8K, pcm.ljust(OUTBOUND_FRAME_BYTES, b"\0")))
        self.frames_sent += 1
        self._last_sent = self._clock()

    async def _keep_alive(self) -> None:
        try:
            while True:
                idle = self._clock() - self._last_sent
                if idle < KEEPALIVE_SECONDS:
                    await self._sleep(KEEPALIVE_SECONDS - idle)
                    continue
                self._write_audio(SILENCE_FRAME)
                self.keepalive_frames += 1
                await self._writer.drain()
        except ConnectionError as error:
            log.info("call %s: keep-alive stopped: %s", self.uuid, error)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def hangup(self) -> None:
        """Tell Asterisk to hang up (0x00) and close the connection."""
        await self._end_with(Kind.HANGUP)

    async def refuse(self) -> None:
        """End the call with an error message (0xff): Asterisk's AudioSocket() then fails instead of
        returning, so the dialplan's failover (TryExec) takes the caller rather than a hang-up."""
        await self._end_with(Kind.ERROR)

    async def _end_with(self, kind: Kind) -> None:
        if self.closed:
            return
        with contextlib.suppress(ConnectionError):
            self._writer.write(encode(kind))
            await self._writer.drain()
        await self._close()

    def _put(self, event: CallEvent | None) -> None:
        if self._events.full():
            self._events.get_nowait()  # the handler is behind: old audio matters least
            self.inbound_dropped += 1
        self._events.put_nowait(event)

    async def _read_loop(self) -> None:
        try:
            while True:
                message = await read_message(self._reader, self._max_payload)
                if message is None:
                    self._put(HangupIn(by_message=False))
                    break
                if not self._inbound.spend(HEADER.size + len(message.payload)):
                    raise ProtocolError(f"more than {MAX_AHEAD_SECONDS:g} s of audio ahead of real time: "
                                        "a flood, cut off")
                if message.kind is Kind.HANGUP:
                    self._put(HangupIn(by_message=True))
                    break
                if message.kind is Kind.UUID:
                    raise ProtocolError("second UUID message on an identified connection")
                if message.kind is Kind.DTMF:
                    self._put(DtmfIn(message.payload.decode("ascii")))  # a key: checked by read_message
                elif message.kind is Kind.ERROR:
                    self._put(ErrorIn(message.payload[0] if message.payload else None))
                elif message.kind is Kind.AUDIO_8K:
                    self._put(AudioIn(message.payload, SAMPLE_RATES[Kind.AUDIO_8K]))
                else:
                    # The call runs at 8 kHz both ways, and the rate limit counts 8 kHz bytes.
                    raise ProtocolError(f"{message.kind.name} audio refused: only slin 8 kHz (0x10) is accepted")
        except ProtocolError as error:
            self._protocol_error = error
            log.warning("call %s: %s", self.uuid, error)
            await self.refuse()
        except ConnectionError as error:
            self._put(HangupIn(by_message=False))
            log.info("call %s: connection lost: %s", self.uuid, error)
        finally:
            await self._close()

    async def _close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        current = asyncio.current_task()
        for task in (self._keepalive_task, self._reader_task):
            if task is not current:
                task.cancel()
        self._writer.close()
        self._put(None)  # ends the handler's iteration
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


CallHandler = Callable[[AudioSocketCall], Awaitable[None]]


async def _refuse(writer: asyncio.StreamWriter) -> None:
    """A connection that never became a call: an error message, then close (see `refuse`)."""
    with contextlib.suppress(ConnectionError):
        writer.write(encode(Kind.ERROR))
        await writer.drain()
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


class AudioSocketServer:
    """Accepts Asterisk's AudioSocket connections and runs `handler(call)` for each. With
    `share_port`, several processes (one per core) listen on the same address (SO_REUSEPORT) and
    the kernel spreads the new calls over them; each must share it."""

    def __init__(
        self,
        handler: CallHandler,
        host: str = "127.0.0.1",
        port: int = 9092,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        uuid_timeout: float = 5.0,
        max_calls: int = DEFAULT_MAX_CALLS,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        share_port: bool = False,
    ) -> None:
        self.handler = handler
        self.share_port = share_port
        self.host = host
        self.port = port
        self.max_payload = max_payload
        self.uuid_timeout = uuid_timeout
        self.max_calls = max_calls
        self.clock = clock
        self.sleep = sleep
        self.calls: dict[str, AudioSocketCall] = {}
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve_connection, self.host, self.port,
                                                  reuse_port=self.share_port or None)
        self.port = self._server.sockets[0].getsockname()[1]  # the real one when port=0
        log.info("AudioSocket server listening on %s:%d", self.host, self.port)

    async def __aenter__(self) -> AudioSocketServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        # Counted before the UUID, and handlers still wrapping up too: what the cap bounds is the
        # work in this process, and a flood of silent connections must not wait out their UUIDs.
        if len(self._connections) >= self.max_calls:
            log.warning("connection from %s refused: %d connections already (AUDIOSOCKET_MAX_CALLS)",
                        writer.get_extra_info("peername"), len(self._connections))
            await _refuse(writer)
            return
        self._connections.add(task)
        try:
            call_uuid = await self._read_uuid(reader, writer)
            if call_uuid is None:
                return
            live = self.calls.get(call_uuid)
            if live is not None and not live.closed:
                # Replacing the live call would let anyone who learnt a UUID cut a caller off and take
                # over the line. (A call back from the agents' queue reuses its UUID, but only after
                # the first connection is over.)
                log.warning("call %s: a second connection with this UUID refused; the live call goes on", call_uuid)
                await _refuse(writer)
                return
            await self._run_call(AudioSocketCall(call_uuid, reader, writer, self.max_payload, self.clock, self.sleep))
        finally:
            self._connections.discard(task)

    async def _read_uuid(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str | None:
        peer = writer.get_extra_info("peername")
        try:
            message = await asyncio.wait_for(read_message(reader, self.max_payload), self.uuid_timeout)
            if message is None:
                raise ProtocolError("connection closed before the UUID message")
            if message.kind is not Kind.UUID:
                raise ProtocolError(f"{message.kind.name} before the UUID message")
            return str(uuid.UUID(bytes=message.payload))
        except (ProtocolError, TimeoutError) as error:
            reason = error if isinstance(error, ProtocolError) else f"no UUID within {self.uuid_timeout:g} s"
            log.warning("call %s: %s", f"unidentified from {peer}", reason)
        except ConnectionError as error:
            log.info("connection from %s lost before the UUID: %s", peer, error)
        writer.close()
        return None

    async def _run_call(self, call: AudioSocketCall) -> None:
        self.calls[call.uuid] = call  # no await since the check for a live call with this UUID
        handler_task = asyncio.create_task(self.handler(call), name=f"audiosocket-handler-{call.uuid}")
        connection_over = asyncio.create_task(call.wait_closed())
        try:
            await asyncio.wait({handler_task, connection_over}, return_when=asyncio.FIRST_COMPLETED)
            if not handler_task.done():
                # Connection over: the handler may still wrap up (e.g. write a summary), within bounds.
                await asyncio.wait({handler_task}, timeout=HANDLER_GRACE_SECONDS)
            if not handler_task.done():
                log.warning("call %s: handler still running %g s after the call ended; cancelled",
                            call.uuid, HANDLER_GRACE_SECONDS)
                handler_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await handler_task
        except asyncio.CancelledError:
            # The server is closing: the handler's own teardown (an outbound call's outcome report)
            # runs now, before the gateway closes the clients it uses.
            handler_task.cancel()
            await asyncio.wait({handler_task}, timeout=HANDLER_GRACE_SECONDS)
            raise
        except Exception:
            log.exception("call %s: handler failed", call.uuid)
        finally:
            connection_over.cancel()
            if self.calls.get(call.uuid) is call:
                del self.calls[call.uuid]
            await call.hangup()

    async def close(self) -> None:
        """Stop accepting, hang up every call and wait (bounded) for the handlers."""
        if self._server is not None:
            self._server.close()
        for call in list(self.calls.values()):
            await call.hangup()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=HANDLER_GRACE_SECONDS + 1)
        for task in list(self._connections):
            task.cancel()
        if self._connections:  # each cancelled call's teardown, bounded (see _run_call)
            await asyncio.wait(set(self._connections), timeout=HANDLER_GRACE_SECONDS + 1)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
