"""Stand-ins for a call without a phone, for the voice demo, the voice tests and the bench:
`RespondingCaller` is the caller, `RecordingSink` the bot's side of the line, `ScriptedRecognizer`
a recogniser without a model, `VirtualTime` the clock of a call's real-time loops where no
assertion may depend on how busy the machine is (tests/voice/callers.py adds a caller on a fixed
timetable).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime

from voice.asr import RecognitionStream
from voice.audio import FRAME_SECONDS, TELEPHONE_RATE, frame_bytes
from voice.clock import Clock
from voice.frames import CallbackBooked, Control, Frame, InputAudio, Keypress, TransferDeclined


class ScriptedRecognizer:
    """A stand-in recogniser (`--say`, and the tests' and bench's calls) WITHOUT a Chinese model.

    It does not listen: the audio's content is ignored. Each stream plays the next scripted
    utterance, showing one more character of it every `ms_per_character` of audio received
    (partials), and returns the whole utterance from `finish`. The grammar each stream was asked
    for is kept in `grammars`, so tests can check that closed questions were constrained.
    """

    hears_names = True  # it says whatever name the test scripted

    def __init__(self, utterances: list[str], sample_rate: int = 16000, ms_per_character: int = 100) -> None:
        self.sample_rate = sample_rate
        self.grammars: list[list[str] | None] = []
        self._utterances = deque(utterances)
        self._bytes_per_character = sample_rate * 2 * ms_per_character // 1000

    def stream(self, grammar: list[str] | None = None) -> RecognitionStream:
        if not self._utterances:
            raise LookupError("ScriptedRecognizer has no utterances left: the test expected fewer turns")
        self.grammars.append(grammar)
        return _ScriptedStream(self._utterances.popleft(), self._bytes_per_character)


class _ScriptedStream:
    def __init__(self, text: str, bytes_per_character: int) -> None:
        self._text = text
        self._bytes_per_character = bytes_per_character
        self._bytes_received = 0
        self._shown = 0

    def accept(self, pcm: bytes) -> str | None:
        self._bytes_received += len(pcm)
        shown = min(len(self._text), self._bytes_received // self._bytes_per_character)
        if shown == self._shown:
            return None
        self._shown = shown
        return self._text[:shown]

    def pause(self) -> None:
        pass

    def finish(self, ended_in_pause: bool = False) -> str:
        return self._text


@dataclass
class RespondingCaller:
    """A caller who waits for the bot to finish each time, then answers: with speech (PCM) or
    with keys (a string of DTMF digits). After the last answer the call lasts until `until`
    says it is done or `max_seconds` pass. Robust to a slow machine, unlike fixed times."""

    answers: list[bytes | str]
    sink: RecordingSink
    sample_rate: int = TELEPHONE_RATE
    pause_seconds: float = 0.6  # the bot silent this long: the caller's turn
    max_seconds: float = 60.0
    until: Callable[[float], bool] = lambda answered_at: False
    started_at: float = 0.0

    async def frames(self) -> AsyncIterator[Frame]:
        size = frame_bytes(self.sample_rate)
        period = FRAME_SECONDS
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
    """Keeps every frame the bot sent (with its time on `clock`) and every telephony instruction;
    `agents_busy` declines hand-overs the way a saturated queue does; a callback is booked for
    `callback_at`."""

    frames: list[tuple[float, bytes]] = field(default_factory=list)
    controls: list[Control] = field(default_factory=list)
    agents_busy: bool = False
    callback_at: datetime | None = datetime(2026, 12, 4, 15, 30)
    clock: Clock = time.monotonic

    async def write_frame(self, pcm: bytes) -> None:
        self.frames.append((self.clock(), pcm))

    async def control(self, frame: Control) -> Frame | None:
        self.controls.append(frame)
        if frame.action == "handoff" and self.agents_busy:
            return TransferDeclined("all agents busy")
        if frame.action == "callback":
            return CallbackBooked(self.callback_at)
        return None

    def answered_and_quiet(self, seconds: float, after: float = 0.0) -> bool:
        """The bot spoke after `after` (on `clock`) and has been silent for `seconds` since."""
        if not self.frames or self.frames[-1][0] < after:
            return False
        return self.clock() - self.frames[-1][0] >= seconds

    @property
    def audio(self) -> bytes:
        return b"".join(pcm for _, pcm in self.frames)

    def gaps(self, after: float = 0.0, before: float = math.inf) -> list[tuple[float, float]]:
        """Where the bot's audio paused between `after` and `before` (on `clock`): for each pause,
        the moment of the frame before it and how long the line stayed without a frame beyond that
        one's 20 ms. Frames arrive in lockstep on virtual time; half a frame late is no pause."""
        moments = [moment for moment, _ in self.frames if moment < before]
        return [(earlier, later - earlier - FRAME_SECONDS) for earlier, later in zip(moments, moments[1:], strict=False)
                if earlier >= after and later - earlier > 1.5 * FRAME_SECONDS]


class VirtualTime:
    """Virtual time for a call's real-time loops (voice.clock): the output clock, AudioSocket's
    keep-alive. Sleepers wake in virtual-time order as the caller advances it; the wall clock only
    lets sockets and tasks run in between."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._order), wake))
        await wake

    async def advance_to(self, until: float) -> None:
        for _ in range(2000):  # a bound: every wake-up of the loops under test, and more
            await asyncio.sleep(0.002)  # sockets and ready tasks run; they may add sleepers
            if not self._sleepers or self._sleepers[0][0] > until:
                break
            self.now, _, wake = heapq.heappop(self._sleepers)
            if not wake.done():
                wake.set_result(None)
        self.now = until
