"""The output queue on its real 20 ms clock: pacing, flush on barge-in, what the caller heard."""

from __future__ import annotations

import asyncio
import time

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
    PlaybackInterrupted,
)
from voice.harness import RecordingSink
from voice.output import AudioOutput
from voice.pipeline import FrameProcessor, Pipeline

ONE_SECOND = 16000  # bytes of 8 kHz 16-bit audio


class UpstreamRecorder(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.upstream: list[tuple[float, Frame]] = []

    async def process(self, frame: Frame, direction: Direction) -> None:
        if direction is Direction.UPSTREAM:
            self.upstream.append((time.monotonic(), frame))
        else:
            await self.push(frame, direction)

    def of(self, kind: type) -> list[Frame]:
        return [frame for _, frame in self.upstream if isinstance(frame, kind)]


async def started() -> tuple[Pipeline, UpstreamRecorder, AudioOutput, RecordingSink]:
    sink = RecordingSink()
    recorder, output = UpstreamRecorder(), AudioOutput(sink)
    pipeline = Pipeline([recorder, output])
    await pipeline.send(CallStarted("output-test"))
    return pipeline, recorder, output, sink


async def test_speech_leaves_in_20ms_frames_and_ends_with_one_stop() -> None:
    pipeline, recorder, output, sink = await started()
    await pipeline.send(OutputAudio(b"\1\0" * 8000, 8000, "您好"))
    for _ in range(1000):  # until played, however busy the machine (pacing itself: `make bench`)
        if recorder.of(BotStoppedSpeaking):
            break
        await asyncio.sleep(0.01)
    await pipeline.close()
    assert [len(pcm) for _, pcm in sink.frames] == [320] * 50
    assert len(recorder.of(BotSpeech)) == 50 and len(recorder.of(BotStoppedSpeaking)) == 1
    assert output.played == ["您好"]


async def test_interruption_stops_playback_within_one_frame_and_reports_what_was_heard() -> None:
    pipeline, recorder, _, sink = await started()
    text = "您本期应还两千二百七十元还款日是十二月八日"
    await pipeline.send(OutputAudio(b"\1\0" * ONE_SECOND, 8000, text))  # 2 s
    await pipeline.send(OutputAudio(b"\1\0" * 4000, 8000, "还有什么可以帮您"))
    await asyncio.sleep(0.5)
    interrupted_at = time.monotonic()
    await pipeline.send(Interruption("speech"))
    await asyncio.sleep(0.3)
    await pipeline.close()
    assert len([moment for moment, _ in sink.frames if moment > interrupted_at]) <= 1
    [report] = recorder.of(PlaybackInterrupted)
    assert report.text == text + "还有什么可以帮您"
    assert text.startswith(report.heard) and 0.15 < len(report.heard) / len(text) < 0.4


async def test_a_prompt_that_may_not_be_interrupted_survives_the_flush() -> None:
    pipeline, _, _, sink = await started()
    await pipeline.send(OutputAudio(b"\1\0" * 4000, 8000, "本次通话可能会被录音", interruptible=False))
    await asyncio.sleep(0.1)
    await pipeline.send(Interruption("speech"))
    await asyncio.sleep(0.5)
    await pipeline.close()
    assert len(sink.frames) == 25


async def test_a_hand_over_waits_for_the_words_before_it() -> None:
    pipeline, _, _, sink = await started()
    await pipeline.send(OutputAudio(b"\1\0" * 4000, 8000, "正在为您转接人工客服"))
    await pipeline.send(Control("handoff", {"summary": "客户要求转人工"}))
    await asyncio.sleep(0.2)
    assert not sink.controls
    await asyncio.sleep(0.5)
    await pipeline.close()
    assert [control.action for control in sink.controls] == ["handoff"]


async def test_hangup_stops_the_clock_at_once() -> None:
    pipeline, _, _, sink = await started()
    await pipeline.send(OutputAudio(b"\1\0" * ONE_SECOND, 8000, "您好"))
    await asyncio.sleep(0.2)
    await pipeline.send(Hangup())
    sent = len(sink.frames)
    await asyncio.sleep(0.2)
    assert len(sink.frames) == sent
    await pipeline.close()
