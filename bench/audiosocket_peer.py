"""A loopback stand-in for Asterisk's side of AudioSocket, written from the protocol documentation,
not from our code (the tests and the telephony bench use it).

`AudioSocketPeer` plays Asterisk's side of AudioSocket as documented at
docs.asterisk.org/Configuration/Channel-Drivers/AudioSocket/: 3-byte header (kind, 16-bit
big-endian length), UUID (0x01, 16 binary bytes) first, slin 8 kHz audio (0x10) in 20 ms frames,
DTMF (0x03, one ASCII byte), hangup (0x00) or just closing the socket. It packs bytes itself
(no import from `telephony`) so a codec bug cannot hide behind a shared helper.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
import uuid
from dataclasses import dataclass

# From the protocol documentation, deliberately not imported from voice.audio: the peer is the
# tests' independent check of our framing.
FRAME_BYTES = 320
FRAME_SECONDS = 0.020


@dataclass(frozen=True)
class Received:
    kind: int
    payload: bytes
    at: float  # time.monotonic() on arrival


class AudioSocketPeer:
    """Asterisk's side of one AudioSocket connection."""

    def __init__(self, host: str, port: int, call_uuid: uuid.UUID | None = None) -> None:
        self.host = host
        self.port = port
        self.call_uuid = call_uuid or uuid.uuid4()
        self.received: list[Received] = []
        self.closed_by_server = asyncio.Event()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._receiver: asyncio.Task[None] | None = None

    async def connect(self, send_uuid: bool = True) -> AudioSocketPeer:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._receiver = asyncio.create_task(self._receive())
        if send_uuid:
            await self.send(0x01, self.call_uuid.bytes)
        return self

    async def send(self, kind: int, payload: bytes = b"") -> None:
        await self.send_raw(struct.pack(">BH", kind, len(payload)) + payload)

    async def send_raw(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)
        await self._writer.drain()

    async def send_dtmf(self, digit: str) -> None:
        await self.send(0x03, digit.encode("ascii"))

    async def send_hangup(self) -> None:
        await self.send(0x00)

    async def stream(self, pcm: bytes, kind: int = 0x10, frame_bytes: int = FRAME_BYTES) -> list[float]:
        """Send `pcm` in frames every 20 ms on absolute deadlines; returns the send times."""
        sent_at = []
        start = time.monotonic()
        for index, offset in enumerate(range(0, len(pcm), frame_bytes)):
            await asyncio.sleep(max(0.0, start + index * FRAME_SECONDS - time.monotonic()))
            sent_at.append(time.monotonic())
            await self.send(kind, pcm[offset:offset + frame_bytes])
        return sent_at

    async def end_stream(self) -> None:
        """Half-close: no more bytes from Asterisk's side, but keep receiving."""
        assert self._writer is not None
        self._writer.write_eof()

    async def close(self) -> None:
        """Close the socket without a hangup message (Asterisk may do that)."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        if self._receiver is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._receiver, 2)

    async def wait_closed_by_server(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.closed_by_server.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def audio(self) -> list[Received]:
        """What the bot said: audio frames except the all-zero keep-alive frames it sends while silent."""
        return [message for message in self.received if message.kind == 0x10 and any(message.payload)]

    def keepalives(self) -> list[Received]:
        return [message for message in self.received if message.kind == 0x10 and not any(message.payload)]

    def audio_bytes(self) -> bytes:
        return b"".join(message.payload for message in self.audio())

    async def wait_for_audio(self, byte_count: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.audio_bytes()) < byte_count and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return self.audio_bytes()

    async def _receive(self) -> None:
        assert self._reader is not None
        try:
            while True:
                header = await self._reader.readexactly(3)
                kind, length = struct.unpack(">BH", header)
                payload = await self._reader.readexactly(length)
                self.received.append(Received(kind, payload, time.monotonic()))
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_server.set()
