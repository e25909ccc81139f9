"""A call without a phone: caller audio from PCM (a WAV file) paced like a real line, keys at
given moments, and a sink that records what the bot sent back. Used by `make voice-demo`,
the voice tests and the benchmark.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime

from voice.audio import FRAME_MS, frame_bytes
from voice.frames import CallbackBooked, Control, Frame, Hangup, InputAudio, Keypress, TransferDeclined


@dataclass
class ScriptedCaller:
    """What the caller does, on the call's clock: audio from `pcm` from the start, then silence
    until `until(audio_ended_at)` says the call is done or `max_seconds` pass; `keys` are
    (second, digit). Times are `time.monotonic()`."""

    pcm: bytes
    sample_rate: int
    keys: list[tuple[float, str]] = field(default_factory=list)
    max_seconds: float = 30.0
    hang_up_at: float | None = None
    until: Callable[[float], bool] = lambda audio_ended_at: False
    started_at: float = 0.0
    audio_ended_at: float | None = None

    async def frames(self) -> AsyncIterator[Frame]:
        size = frame_bytes(self.sample_rate)
        period = FRAME_MS / 1000
        keys = sorted(self.keys)
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.started_at = time.monotonic()
        for index in range(int(self.max_seconds / period)):
            now = index * period
            if self.hang_up_at is not None and now >= self.hang_up_at:
                yield Hangup("caller hung up")
                return
            while keys and keys[0][0] <= now:
                yield Keypress(keys.pop(0)[1])
            offset = index * size
            yield InputAudio(self.pcm[offset:offset + size].ljust(size, b"\0"), self.sample_rate)
            if offset >= len(self.pcm):
                self.audio_ended_at = self.audio_ended_at or time.monotonic()
                if not keys and self.until(self.audio_ended_at):
                    return
            await asyncio.sleep(max(0.0, start + (index + 1) * period - loop.time()))


@dataclass
class RespondingCaller:
    """A caller who waits for the bot to finish each time, then answers: with speech (PCM) or
    with keys (a string of DTMF digits). After the last answer the call lasts until `until`
    says it is done or `max_seconds` pass. Robust to a slow machine, unlike fixed times."""

    answers: list[bytes | str]
    sink: RecordingSink
    sample_rate: int = 8000
    pause_seconds: float = 0.6  # the bot silent this long: the caller's turn
    max_seconds: float = 60.0
    until: Callable[[float], bool] = lambda answered_at: False
    started_at: float = 0.0

    async def frames(self) -> AsyncIterator[Frame]:
        size = frame_bytes(self.sample_rate)
        period = FRAME_MS / 1000
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.started_at = time.monotonic()
        answers = list(self.answers)
        speaking = b""
        last_answer_at = self.started_at
        for index in range(int(self.max_seconds / period)):
            if not speaking and answers and self.sink.answered_and_quiet(self.pause_seconds, after=last_answer_at):
                answer = answers.pop(0)
                last_answer_at = time.monotonic()
                if isinstance(answer, str):
                    for digit in answer:
                        yield Keypress(digit)
                else:
                    speaking = answer
            chunk, speaking = speaking[:size], speaking[size:]
            yield InputAudio(chunk.ljust(size, b"\0"), self.sample_rate)
            if not answers and not speaking and self.until(last_answer_at):
                return
            await asyncio.sleep(max(0.0, start + (index + 1) * period - loop.time()))


@dataclass
class RecordingSink:
    """Keeps every frame the bot sent (with its time) and every telephony instruction;
    `agents_busy` declines hand-overs the way a saturated queue does; a callback is booked for
    `callback_at`."""

    frames: list[tuple[float, bytes]] = field(default_factory=list)
    controls: list[Control] = field(default_factory=list)
    agents_busy: bool = False
    callback_at: datetime | None = datetime(2026, 12, 4, 15, 30)

    async def write_frame(self, pcm: bytes) -> None:
        self.frames.append((time.monotonic(), pcm))

    async def control(self, frame: Control) -> Frame | None:
        self.controls.append(frame)
        if frame.action == "handoff" and self.agents_busy:
            return TransferDeclined("all agents busy")
        if frame.action == "callback":
            return CallbackBooked(self.callback_at)
        return None

    def answered_and_quiet(self, seconds: float, after: float = 0.0) -> bool:
        """The bot spoke after `after` (monotonic time) and has been silent for `seconds` since."""
        if not self.frames or self.frames[-1][0] < after:
            return False
        return time.monotonic() - self.frames[-1][0] >= seconds

    @property
    def audio(self) -> bytes:
        return b"".join(pcm for _, pcm in self.frames)
