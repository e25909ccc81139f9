"""Bad caller audio through the caller-side processors (AudioInput → SpeechDetection →
SpeechRecognition), fed as fast as the CPU allows: real webrtcvad and noisereduce, speech from
espeak-ng; the words come from a ScriptedRecognizer (no Chinese Vosk model here)."""

from __future__ import annotations

import logging

import pytest

from bench import samples
from bench.stand_ins import ScriptedRecognizer
from tests.voice.collector import Collector
from voice.audio import resample
from voice.barge_in import BargeInConfig
from voice.detection import DetectionConfig
from voice.frames import CallStarted, InputAudio, UserStoppedSpeaking
from voice.pipeline import Pipeline
from voice.processors import AudioInput, SpeechDetection, SpeechRecognition


async def listen(pcm: bytes, rate: int, said: list[str], chunk: int = 320) -> Collector:
    collector = Collector()
    pipeline = Pipeline([AudioInput(), SpeechDetection(DetectionConfig(), BargeInConfig()),
                         SpeechRecognition(ScriptedRecognizer(said)), collector])
    await pipeline.send(CallStarted("bad-input", 8000))
    for start in range(0, len(pcm), chunk):
        await pipeline.send(InputAudio(pcm[start:start + chunk], rate))
        await pipeline.idle()  # the recogniser keeps up, as with a caller's 20 ms frames
    await pipeline.close()
    return collector


async def test_odd_chunk_sizes_still_make_one_utterance(caplog: pytest.LogCaptureFixture) -> None:
    pcm = samples.silence(1.5) + samples.speech("我想查一下我的账单") + samples.silence(1.5)
    with caplog.at_level(logging.WARNING):
        collector = await listen(pcm, 8000, ["我想查一下我的账单"], chunk=173)
    assert collector.finals() == ["我想查一下我的账单"]
    assert [r.message for r in caplog.records].count(
        "call bad-input: audio chunks of 173 bytes (not 20 ms): re-cutting") == 1


async def test_a_local_channels_short_frame_at_each_file_end_is_re_cut_without_loss() -> None:
    # A real Asterisk's Local channel sends 320-byte frames and one of 276 bytes where a played
    # file ends (seen on the project's Asterisk 22 trial).
    pcm = samples.silence(1.0) + samples.speech("我想查一下我的账单") + samples.silence(1.5)
    collector = Collector()
    pipeline = Pipeline([AudioInput(), collector])
    await pipeline.send(CallStarted("local-channel", 8000))
    offset, index = 0, 0
    while offset < len(pcm):
        size = 276 if index % 40 == 39 else 320
        await pipeline.send(InputAudio(pcm[offset:offset + size], 8000))
        offset, index = offset + size, index + 1
    await pipeline.close()
    frames = collector.of(InputAudio)
    assert all(len(frame.pcm) == 320 for frame in frames)
    assert b"".join(frame.pcm for frame in frames) == pcm[:len(pcm) - len(pcm) % 320]


async def test_audio_at_an_unexpected_rate_is_resampled_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    pcm = resample(samples.silence(1.5) + samples.speech("帮我转人工") + samples.silence(1.5), 8000, 16000)
    with caplog.at_level(logging.WARNING):
        collector = await listen(pcm, 16000, ["帮我转人工"], chunk=640)
    assert collector.finals() == ["帮我转人工"]
    assert sum("16000 Hz on a 8000 Hz call" in r.message for r in caplog.records) == 1


async def test_minutes_of_silence_never_start_an_utterance() -> None:
    collector = await listen(samples.silence(120), 8000, [])
    assert not collector.of(UserStoppedSpeaking) and not collector.finals()


async def test_a_thirty_second_monologue_is_cut_and_still_becomes_a_turn() -> None:
    sentence = samples.speech("我想问一下我的账单为什么这个月多了这么多钱")
    monologue = b"".join(sentence for _ in range(30 * 16000 // len(sentence) + 1))[:30 * 16000]
    collector = await listen(samples.silence(1.0) + monologue, 8000, ["我想问一下账单", "为什么多了"])
    stops = collector.of(UserStoppedSpeaking)
    assert stops and stops[0].cut_at_max_length
    assert collector.finals()[0] == "我想问一下账单"


async def test_clipped_speech_is_still_heard(caplog: pytest.LogCaptureFixture) -> None:
    loud = samples.scaled(samples.speech("我要还款"), 30)  # driven far past full scale
    with caplog.at_level(logging.WARNING):
        collector = await listen(samples.silence(1.5) + loud + samples.silence(1.5), 8000, ["我要还款"])
    assert collector.finals() == ["我要还款"]
    assert sum("clipping" in r.message for r in caplog.records) == 1
