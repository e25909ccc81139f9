"""A caller on a fixed timetable, for the voice tests (the demo's and the bench's callers are in
bench/stand_ins.py and bench/voice_calls.py): audio from PCM paced like a real line, keys at given
moments, a hang-up at a given second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from voice.audio import FRAME_SECONDS, frame_bytes
from voice.frames import Frame, Hangup, InputAudio, Keypress


@dataclass
class ScriptedCaller:
    """What the caller does, on the call's clock: audio from `pcm` from the start, then silence
    until `until(audio_ended_at)` says the call is done or `max_seconds` pass; `keys` are
    (second, digit). Times are `time.monotonic()`. The timetable starts once `start_when()`
    holds (silence until then, within `max_seconds`): tests start it with the bot's first frame,
    so "1.5 s into the greeting" stays so when a busy machine is slow to render it."""

    pcm: bytes
    sample_rate: int
    keys: list[tuple[float, str]] = field(default_factory=list)
    max_seconds: float = 30.0
    hang_up_at: float | None = None
    until: Callable[[float], bool] = lambda audio_ended_at: False
    start_when: Callable[[], bool] = lambda: True
    started_at: float = 0.0
    audio_ended_at: float | None = None
    hung_up: float | None = None  # when it hung up (`time.monotonic()`)

    async def frames(self) -> AsyncIterator[Frame]:
        size = frame_bytes(self.sample_rate)
        period = FRAME_SECONDS
        keys = sorted(self.keys)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index in range(int(self.max_seconds / period)):
            if self.start_when():
                break
            yield InputAudio(bytes(size), self.sample_rate)
            await asyncio.sleep(max(0.0, start + (index + 1) * period - loop.time()))
        start = loop.time()
        self.started_at = time.monotonic()
        for index in range(int(self.max_seconds / period)):
            now = index * period
            if self.hang_up_at is not None and now >= self.hang_up_at:
                self.hung_up = time.monotonic()
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


