"""What a call's pipeline tells the quality inspection (docs/quality.md): when each side starts
and stops speaking, barge-ins, back-channels (嗯, 对 while the bot speaks), keys (never which
digit), what the bot says and does, how fast and how loud the caller speaks, and the end of the
call.

`run_call` puts three `FrameTap`s in the pipeline (after speech detection: audio, speech,
barge-ins, keys, the bot's playback; after recognition: final transcripts; after turn taking:
what the bot says and its telephony instructions). A tap passes every frame on unchanged and
only hands facts to the call's `CallEvents`, whose `publish` must return at once (the real one,
quality/publisher.py, queues). The default publishes nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from voice.frames import (
    Acknowledgement,
    BotSpeech,
    BotStoppedSpeaking,
    CallStarted,
    Control,
    Direction,
    Frame,
    Hangup,
    InputAudio,
    Interruption,
    Keypress,
    Speak,
    Transcript,
    UserStartedSpeaking,
    UserStoppedSpeaking,
)
from voice.pipeline import FrameProcessor

SILENT_DBFS = -96.0


class CallEvents(Protocol):
    def publish(self, call_id: str, kind: str, at: float, data: dict[str, Any]) -> None:
        """Must not block or raise: it runs inside the call's pipeline."""
        ...


class NoCallEvents:
    def publish(self, call_id: str, kind: str, at: float, data: dict[str, Any]) -> None:
        return None


def dbfs(mean_square: float) -> float:
    """Loudness of 16-bit PCM from its mean square: RMS in dB below full scale."""
    return max(SILENT_DBFS, 10 * math.log10(mean_square / 32768**2)) if mean_square > 0 else SILENT_DBFS


class CallRecorder:
    """One call's facts for the inspection stream, from the frames its taps see."""

    def __init__(self, events: CallEvents, clock: Callable[[], float] = time.time) -> None:
        self.events = events
        self.clock = clock
        self.call_id = "?"
        self._speaking_since: float | None = None
        self._utterance_seconds = 0.0
        self._energy = 0.0
        self._samples = 0
        self._bot_speaking = False

    def taps(self) -> tuple[FrameTap, FrameTap, FrameTap]:
        """After speech detection, after recognition, after turn taking."""
        return FrameTap(self._caller_side), FrameTap(self._transcripts), FrameTap(self._bot_side)

    def _publish(self, kind: str, **data: Any) -> None:
        self.events.publish(self.call_id, kind, self.clock(), data)

    def _caller_side(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, CallStarted):
            self.call_id = frame.call_id
            self._publish("call_started", channel=frame.channel, priority_tier=frame.priority_tier,
                          queue_returns=frame.queue_returns, known_caller=frame.salutation is not None,
                          timezone=frame.customer_timezone)
        elif isinstance(frame, InputAudio) and self._speaking_since is not None:
            samples = np.frombuffer(frame.pcm, dtype="<i2").astype(np.float64)
            self._energy += float(np.sum(samples * samples))
            self._samples += samples.size
        elif isinstance(frame, UserStartedSpeaking):
            self._speaking_since, self._energy, self._samples = self.clock(), 0.0, 0
            self._publish("caller_started_speaking")
        elif isinstance(frame, UserStoppedSpeaking) and self._speaking_since is not None:
            self._utterance_seconds = self.clock() - self._speaking_since
            level = dbfs(self._energy / self._samples if self._samples else 0.0)
            self._speaking_since = None
            self._publish("caller_stopped_speaking", seconds=round(self._utterance_seconds, 3),
                          level_dbfs=round(level, 1))
        elif isinstance(frame, Interruption):
            self._publish("barge_in", cause=frame.cause)
        elif isinstance(frame, Acknowledgement):
            # Only ever a yes-word (嗯, 对, 好的) or "": no personal data in it.
            self._publish("acknowledgement", text=frame.text)
        elif isinstance(frame, Keypress):
            self._publish("key")  # which key is not kept: ID digits and codes are keyed
        elif isinstance(frame, BotSpeech) and not self._bot_speaking:
            self._bot_speaking = True
            self._publish("bot_started_speaking")
        elif isinstance(frame, BotStoppedSpeaking) and self._bot_speaking:
            self._bot_speaking = False
            self._publish("bot_stopped_speaking")
        elif isinstance(frame, Hangup) and direction is Direction.DOWNSTREAM:
            self._publish("call_ended", reason=frame.reason)

    def _transcripts(self, frame: Frame, _: Direction) -> None:
        if isinstance(frame, Transcript) and frame.final and frame.text.strip():
            characters = len("".join(frame.text.split()))
            seconds = self._utterance_seconds
            self._publish("caller_utterance", characters=characters, seconds=round(seconds, 3),
                          characters_per_second=round(characters / seconds, 2) if seconds > 0 else None)

    def _bot_side(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, Speak) and direction is Direction.DOWNSTREAM:
            self._publish("bot_said", text=frame.text, interruptible=frame.interruptible)
        elif isinstance(frame, Control):
            details = frame.details if frame.action == "handoff" else {}
            self._publish(f"control_{frame.action}", reason=details.get("reason"), flow=details.get("flow"))


class FrameTap(FrameProcessor):
    def __init__(self, seen: Callable[[Frame, Direction], None]) -> None:
        super().__init__()
        self.seen = seen

    async def process(self, frame: Frame, direction: Direction) -> None:
        self.seen(frame, direction)
        await self.push(frame, direction)
