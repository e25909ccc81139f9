"""The call events a phone call's pipeline publishes, from the frames its taps see: on a virtual
clock, with a publisher that records."""

from __future__ import annotations

from typing import Any

from voice.call_events import CallRecorder
from voice.frames import (
    BotSpeech,
    BotStoppedSpeaking,
    CallStarted,
    Control,
    Direction,
    Hangup,
    InputAudio,
    Interruption,
    Keypress,
    Speak,
    Transcript,
    UserStartedSpeaking,
    UserStoppedSpeaking,
)
from voice.pipeline import Pipeline


class Recorded:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, float, dict[str, Any]]] = []

    def publish(self, call_id: str, kind: str, at: float, data: dict[str, Any]) -> None:
        self.events.append((call_id, kind, at, data))


async def test_a_calls_frames_become_call_events_without_any_digit_or_caller_number() -> None:
    now = [100.0]
    recorded = Recorded()
    caller_side, transcripts, bot_side = CallRecorder(recorded, clock=lambda: now[0]).taps()
    pipeline = Pipeline([caller_side, transcripts, bot_side])
    loud = (8192).to_bytes(2, "little", signed=True) * 160  # a quarter of full scale: -12 dBFS

    await pipeline.send(CallStarted("call-1", caller_number="13812345678", salutation="张先生"))
    await bot_side.process(Speak("为保障您的权益，本次通话可能会被录音。", interruptible=False), Direction.DOWNSTREAM)
    await bot_side.process(BotSpeech(b"", interruptible=False), Direction.UPSTREAM)
    now[0] = 103.0
    await caller_side.process(BotStoppedSpeaking(), Direction.UPSTREAM)
    await pipeline.send(UserStartedSpeaking())
    await pipeline.send(InputAudio(loud, 8000))
    now[0] = 105.0
    await pipeline.send(UserStoppedSpeaking())
    await pipeline.send(Transcript("我想查一下这个月的账单", final=True))
    await pipeline.send(Interruption("keypad"))
    await pipeline.send(Keypress("7"))
    await bot_side.process(Control("handoff", {"reason": "客户要求人工", "flow": "transfer_to_agent",
                                               "summary": "客户张伟…"}), Direction.DOWNSTREAM)
    await pipeline.send(Hangup("caller hung up"))

    kinds = [(kind, at) for _, kind, at, _ in recorded.events]
    assert kinds == [("call_started", 100.0), ("bot_said", 100.0), ("bot_started_speaking", 100.0),
                     ("bot_stopped_speaking", 103.0), ("caller_started_speaking", 103.0),
                     ("caller_stopped_speaking", 105.0), ("caller_utterance", 105.0), ("barge_in", 105.0),
                     ("key", 105.0), ("control_handoff", 105.0), ("call_ended", 105.0)]
    data = {kind: values for _, kind, _, values in recorded.events}
    assert data["caller_stopped_speaking"] == {"seconds": 2.0, "level_dbfs": -12.0}
    assert data["caller_utterance"] == {"characters": 11, "seconds": 2.0, "characters_per_second": 5.5}
    assert data["key"] == {}
    assert data["control_handoff"] == {"reason": "客户要求人工", "flow": "transfer_to_agent"}
    assert "13812345678" not in repr(recorded.events) and "张伟" not in repr(recorded.events)
