"""The phone gateway's call metrics (telephony/metrics.py) read what a finished call's pipeline
kept: the output's frame counts and the turn-taking timeline's barge-ins (the pipeline's own
objects, filled as a call would have)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from bench.stand_ins import RecordingSink
from telephony.metrics import call_began, call_ended
from voice.call import CallResult
from voice.config import load_voice_config
from voice.dialogue import DialogueClient
from voice.output import AudioOutput
from voice.turns import PLAYBACK_RESUMED, TurnTaking


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def finished_call(frames_sent: int, late_frames: int, timeline: list[str]) -> CallResult:
    output = AudioOutput(RecordingSink())
    output.frames_sent, output.late_frames = frames_sent, late_frames
    dialogue = DialogueClient("http://127.0.0.1:9", channel_token="test-channel-token-0123456789")  # never called
    turns = TurnTaking(dialogue, load_voice_config().turns, speech_recognition=False)
    turns.timeline.extend((float(moment), event) for moment, event in enumerate(timeline))
    return CallResult("call-metrics-test", turns, output, seconds=42.0)


def test_a_call_moves_calls_frames_barge_ins_and_pauses_played_on_after() -> None:
    before = {name: sample(name, labels) for name, labels in (
        ("ivr_gateway_calls_total", {"channel": "outbound"}), ("ivr_gateway_calls_active", None),
        ("ivr_gateway_frames_sent_total", None), ("ivr_gateway_late_frames_total", None),
        ("ivr_gateway_barge_ins_total", {"channel": "outbound"}),
        ("ivr_gateway_playback_resumed_total", {"channel": "outbound"}),
        ("ivr_gateway_call_duration_seconds_count", {"channel": "outbound"}))}
    call_began("outbound")
    assert sample("ivr_gateway_calls_active") == before["ivr_gateway_calls_active"] + 1
    call_ended("outbound", finished_call(500, 3, ["greeting", "playback paused", PLAYBACK_RESUMED, "barge-in (speech)",
                                                  "turn", "playback paused", "barge-in (keypad)"]))
    assert sample("ivr_gateway_calls_active") == before["ivr_gateway_calls_active"]
    assert sample("ivr_gateway_calls_total", {"channel": "outbound"}) == before["ivr_gateway_calls_total"] + 1
    assert sample("ivr_gateway_frames_sent_total") == before["ivr_gateway_frames_sent_total"] + 500
    assert sample("ivr_gateway_late_frames_total") == before["ivr_gateway_late_frames_total"] + 3
    assert sample("ivr_gateway_barge_ins_total", {"channel": "outbound"}) == before["ivr_gateway_barge_ins_total"] + 2
    assert sample("ivr_gateway_playback_resumed_total", {"channel": "outbound"}) \
        == before["ivr_gateway_playback_resumed_total"] + 1
    assert sample("ivr_gateway_call_duration_seconds_count", {"channel": "outbound"}) \
        == before["ivr_gateway_call_duration_seconds_count"] + 1


def test_a_failed_pipeline_still_ends_the_call() -> None:
    active = sample("ivr_gateway_calls_active")
    call_began("voice")
    call_ended("voice", None)
    assert sample("ivr_gateway_calls_active") == active
