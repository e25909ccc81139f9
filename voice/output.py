"""The caller's ear: synthesised speech leaves in 20 ms frames on a steady clock.

One queue per call holds what is still to be played. A barge-in flushes it at once (the frame
already on the wire is the last one the caller hears), and the processor answers upstream with
how much of the reply the caller heard. Speech that may be a back-channel pauses it
(`PausePlayback`): nothing is sent and the queue keeps its place until `ResumePlayback` plays on
or an `Interruption` flushes it. Each frame actually sent goes upstream as `BotSpeech`, the echo
reference for barge-in. Telephony instructions (hand over, hang up) wait in the same
queue, so the caller hears "正在为您转接" before the transfer happens.

This is the one pacing clock of a call's outbound audio: the sink only writes a frame (the
AudioSocket connection sends it at once). Frames go out on absolute deadlines so sleep overshoot
does not add up; one sent more than a frame period late counts in `late_frames`, and after a
stall of more than `MAX_LAG_FRAMES` the clock restarts from now instead of bursting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from voice.audio import FRAME_SECONDS, TELEPHONE_RATE, frame_bytes
from voice.clock import Clock, Sleep
from voice.frames import (
    BotSpeech,
    BotStoppedSpeaking,
    CallStarted,
    Control,
    Direction,
    Frame,
    Hangup,
    Interruption,
    OutputAudio,
    PausePlayback,
    PlaybackInterrupted,
    ResumePlayback,
)
from voice.pipeline import FrameProcessor

log = logging.getLogger(__name__)

# Behind by more than this, the clock restarts from now instead of sending a burst to catch up.
MAX_LAG_FRAMES = 5


class AudioSink(Protocol):
    """Where frames go: an AudioSocket connection, a WAV file, a test recorder."""

    async def write_frame(self, pcm: bytes) -> None: ...

    async def control(self, frame: Control) -> Frame | None:
        """Carry out a telephony instruction; a frame returned goes back upstream (e.g. a
        declined transfer)."""


@dataclass
class _Utterance:
    text: str
    interruptible: bool
    frames_total: int = 0
    frames_played: int = 0

    @property
    def heard(self) -> str:
        if not self.frames_total:
            return ""
        share = min(1.0, self.frames_played / self.frames_total)
        return self.text[: round(len(self.text) * share)]


@dataclass
class _Queued:
    pcm: bytes | None
    utterance: _Utterance | None
    control: Control | None = None


class AudioOutput(FrameProcessor):
    def __init__(self, sink: AudioSink, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        super().__init__()
        self.sink = sink
        self._now = clock
        self._sleep = sleep
        self.sample_rate = TELEPHONE_RATE
        self.frames_sent = 0
        self.late_frames = 0
        self.played: list[str] = []  # what the caller heard the start of, in order
        self._queue: deque[_Queued] = deque()
        self._current: _Utterance | None = None
        self._speaking = False
        self._paused = False
        self._wake = asyncio.Event()
        self._clock: asyncio.Task[None] | None = None

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, CallStarted):
            self.sample_rate = frame.sample_rate
            self._clock = asyncio.create_task(self._run_clock(), name=f"output-{frame.call_id}")
        elif isinstance(frame, OutputAudio):
            self._enqueue_audio(frame)
            return
        elif isinstance(frame, Control):
            self._queue.append(_Queued(None, None, frame))
            self._wake.set()
            return
        elif isinstance(frame, PausePlayback):
            self._paused = True
        elif isinstance(frame, ResumePlayback):
            self._resume()
        elif isinstance(frame, Interruption):
            self._resume()  # what stays queued (a disclosure, a hand-over) plays now
            await self._flush()
        elif isinstance(frame, Hangup):
            self._queue.clear()
            await self.close()
        await self.push(frame, direction)

    def _enqueue_audio(self, frame: OutputAudio) -> None:
        size = frame_bytes(self.sample_rate)
        utterance = _Utterance(frame.text, frame.interruptible)
        # The tail is padded with silence: a short frame would upset the far end's jitter buffer.
        for start in range(0, len(frame.pcm), size):
            self._queue.append(_Queued(frame.pcm[start:start + size].ljust(size, b"\0"), utterance))
            utterance.frames_total += 1
        self._wake.set()

    def _resume(self) -> None:
        self._paused = False
        self._wake.set()

    async def _flush(self) -> None:
        pending = [item for item in self._queue if item.utterance is not None and item.utterance.interruptible]
        if not pending and self._current is None:
            return
        kept = [item for item in self._queue if item.utterance is None or not item.utterance.interruptible]
        self._queue = deque(kept)
        current = self._current or pending[0].utterance
        assert current is not None
        later = dict.fromkeys(item.utterance.text for item in pending if item.utterance is not current)
        self._current = None
        unheard_tail = "".join(later)
        await self.push(PlaybackInterrupted(current.text + unheard_tail, current.heard), Direction.UPSTREAM)

    async def _run_clock(self) -> None:
        try:
            await self._play_forever()
        except (ConnectionError, OSError) as error:
            log.info("output stopped: the caller's side closed (%s)", error)

    async def _play_forever(self) -> None:
        period = FRAME_SECONDS
        deadline = self._now()
        while True:
            if self._paused:  # the bot is still speaking, only waiting: no BotStoppedSpeaking
                self._wake.clear()
                await self._wake.wait()
                deadline = self._now()
                continue
            if not self._queue:
                if self._speaking:
                    self._speaking = False
                    self._current = None
                    await self.push(BotStoppedSpeaking(), Direction.UPSTREAM)
                self._wake.clear()
                await self._wake.wait()
                deadline = self._now()
                continue
            item = self._queue.popleft()
            if item.control is not None:
                answer = await self.sink.control(item.control)
                if answer is not None:
                    await self.push(answer, Direction.UPSTREAM)
                continue
            assert item.pcm is not None and item.utterance is not None
            lag = self._now() - deadline
            if lag > period:
                self.late_frames += 1
                if lag > MAX_LAG_FRAMES * period:
                    deadline = self._now()
            await self.sink.write_frame(item.pcm)
            if item.utterance.frames_played == 0:
                self.played.append(item.utterance.text)
            self.frames_sent += 1
            self._speaking = True
            self._current = item.utterance
            item.utterance.frames_played += 1
            await self.push(BotSpeech(item.pcm, item.utterance.interruptible), Direction.UPSTREAM)
            deadline += period
            await self._sleep(max(0.0, deadline - self._now()))

    async def close(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            try:
                await self._clock
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("output clock failed")
            self._clock = None
