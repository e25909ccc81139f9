"""What flows through a call's pipeline: audio, keypad presses, recognised text, things to say,
and the control frames that tell every processor a turn changed.

Frames travel downstream (caller → recogniser → dialogue → speech → caller's ear) or upstream
(what the caller's ear actually got, back to the processors that need to know). Interruption
is a frame, not a flag: a processor that holds queued work drops it when an `Interruption`
passes, so barge-in means the same thing everywhere. `Interruption` is a system frame: it
overtakes whatever waits in a processor's queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from voice.audio import TELEPHONE_RATE


class Direction(Enum):
    DOWNSTREAM = "downstream"
    UPSTREAM = "upstream"


@dataclass(frozen=True)
class Frame:
    """Base of every frame."""

    @property
    def dropped_on_interruption(self) -> bool:
        """Still queued when the caller barges in, this frame is dropped (speech not yet said).
        Everything else keeps its place whatever the caller does: a hand-over or a hang-up
        (`Control`), a mandatory disclosure (an uninterruptible `Speak`), the call's start or end,
        as Pipecat's uninterruptible frames."""
        return False


@dataclass(frozen=True)
class SystemFrame(Frame):
    """Acted on at once: overtakes the frames queued before a processor (voice/pipeline.py), as
    Pipecat's system frames do. A turn change must not wait behind audio still being decoded.
    `interrupts`: it also drops the frames queued there that are `dropped_on_interruption`."""

    @property
    def interrupts(self) -> bool:
        return False


# --- from the caller ------------------------------------------------------------------------

@dataclass(frozen=True)
class CallStarted(Frame):
    """The call is up: who is calling and how to treat them."""

    call_id: str
    sample_rate: int = TELEPHONE_RATE
    caller_number: str | None = None
    salutation: str | None = None  # "张先生", when the number belongs to a known customer
    priority_tier: str = "normal"  # the dialogue core's hand-over priority: normal | high | emergency
    short_greeting: bool = False  # priority callers skip the long greeting and the menu
    slow_speech: bool = False  # elderly callers
    channel: str = "voice"  # or "outbound" for reminder calls
    opening: str | None = None  # outbound: what starts the conversation (e.g. "/overdue_reminder")
    queue_returns: int = 0  # times this call came back from the agents' queue unanswered
    customer_timezone: str | None = None  # outbound: where the customer lives (the risk API's IANA zone)


@dataclass(frozen=True)
class InputAudio(Frame):
    """Caller audio: signed 16-bit little-endian mono PCM."""

    pcm: bytes
    sample_rate: int


@dataclass(frozen=True)
class Keypress(Frame):
    """One DTMF digit (0-9, *, #)."""

    digit: str


@dataclass(frozen=True)
class Hangup(Frame):
    """The call is over, whoever ended it; every processor releases what it holds."""

    reason: str = "caller hung up"


# --- what the detectors and the recogniser found ------------------------------------------------

@dataclass(frozen=True)
class UserStartedSpeaking(Frame):
    pass


@dataclass(frozen=True)
class UserPaused(Frame):
    """The caller has been silent `DetectionConfig.pause_ms` within an utterance: it may end here.
    A recogniser that hears whole utterances (Whisper) starts on the words so far."""


@dataclass(frozen=True)
class UserStoppedSpeaking(Frame):
    """The endpointer closed the utterance: after enough silence, or at the maximum length.
    `ended_in_pause`: nothing was said after the last `UserPaused` (its words are the utterance's)."""

    cut_at_max_length: bool = False
    ended_in_pause: bool = False


@dataclass(frozen=True)
class Acknowledgement(Frame):
    """The caller said a back-channel (嗯, 对, 好的) while the bot spoke: it listens, the bot goes
    on. `text` is the recogniser's (one of the yes-words), "" without a recogniser."""

    text: str


@dataclass(frozen=True)
class Transcript(Frame):
    """Recognised text: partials while the caller speaks, one final per utterance."""

    text: str
    final: bool


# --- what the bot says ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Speak(Frame):
    """Text for the synthesiser. A prompt that may not be interrupted (a mandatory disclosure)
    plays to its end whatever the caller does."""

    text: str
    interruptible: bool = True

    @property
    def dropped_on_interruption(self) -> bool:
        return self.interruptible


@dataclass(frozen=True)
class OutputAudio(Frame):
    """Synthesised speech at the call's rate, with the text it says (for 'what was heard')."""

    pcm: bytes
    sample_rate: int
    text: str
    interruptible: bool = True


@dataclass(frozen=True)
class BotSpeech(Frame):
    """Upstream, once per 20 ms frame actually sent to the caller: the echo reference for
    barge-in, and whether the caller may interrupt what is playing now."""

    pcm: bytes
    interruptible: bool


@dataclass(frozen=True)
class BotStoppedSpeaking(Frame):
    """Upstream: the output queue ran dry (all queued speech was played or flushed)."""


@dataclass(frozen=True)
class AnswerExpected(Frame):
    """Upstream: the bot asked a question (the dialogue core's `expect`), or None for an open
    turn. The recogniser uses it to pick a grammar for closed questions."""

    expect: dict[str, Any] | None


# --- turn changes ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Interruption(SystemFrame):
    """The caller barged in (speech or a key): stop playback now, drop queued speech."""

    cause: str

    @property
    def interrupts(self) -> bool:
        return True


@dataclass(frozen=True)
class PausePlayback(SystemFrame):
    """The caller started speaking over the bot and it may be a back-channel (嗯) or a barge-in:
    playback stops where it is, keeping its place. A `ResumePlayback` goes on from there, an
    `Interruption` drops the rest."""


@dataclass(frozen=True)
class ResumePlayback(SystemFrame):
    """What paused the bot was a back-channel, or nothing that became a barge-in: play on."""


@dataclass(frozen=True)
class PlaybackInterrupted(Frame):
    """Upstream answer to an Interruption: which part of the bot's reply the caller heard."""

    text: str
    heard: str


@dataclass(frozen=True)
class TransferDeclined(Frame):
    """Upstream answer to a hand-over the telephony side did not carry out now (every agent
    busy): the bot offers the caller a callback instead."""

    reason: str


@dataclass(frozen=True)
class CallbackBooked(Frame):
    """Upstream answer to `Control("callback")`: when an agent will call the caller's number
    back; None when it could not be registered."""

    scheduled_for: datetime | None


@dataclass(frozen=True)
class Control(Frame):
    """A telephony instruction: hand over to a human (`{"requeue": True}`: back into the queue
    with what the channel already carries), book a callback to the calling number, or hang up."""

    action: str
    details: dict[str, Any] = field(default_factory=dict)
