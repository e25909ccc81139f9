"""The output queue on its 20 ms clock, kept on virtual time: pacing, flush on barge-in, pause
for speech that may be a back-channel, what the caller heard. (Real-time figures:
bench/telephony.py and bench/voice_calls.py.)"""

from __future__ import annotations

from bench.stand_ins import RecordingSink, VirtualTime
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
from voice.output import AudioOutput
from voice.pipeline import FrameProcessor, Pipeline

ONE_SECOND = 16000  # bytes of 8 kHz 16-bit audio


class UpstreamRecorder(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.upstream: list[Frame] = []

    async def process(self, frame: Frame, direction: Direction) -> None:
        if direction is Direction.UPSTREAM:
            self.upstream.append(frame)
        else:
            await self.push(frame, direction)

    def of(self, kind: type) -> list[Frame]:
        return [frame for frame in self.upstream if isinstance(frame, kind)]


async def started(time_: VirtualTime) -> tuple[Pipeline, UpstreamRecorder, AudioOutput, RecordingSink]:
    sink = RecordingSink(clock=time_.clock)
    recorder, output = UpstreamRecorder(), AudioOutput(sink, time_.clock, time_.sleep)
    pipeline = Pipeline([recorder, output])
    await pipeline.send(CallStarted("output-test"))
    return pipeline, recorder, output, sink


async def test_speech_leaves_in_20ms_frames_on_its_deadlines_and_ends_with_one_stop() -> None:
    time_ = VirtualTime()
    pipeline, recorder, output, sink = await started(time_)
    await pipeline.send(OutputAudio(b"\1\0" * 8000, 8000, "您好"))
    await time_.advance_to(2.0)
    await pipeline.close()
    assert [len(pcm) for _, pcm in sink.frames] == [320] * 50
    assert [round(moment, 6) for moment, _ in sink.frames] == [round(index * 0.02, 6) for index in range(50)]
    assert len(recorder.of(BotSpeech)) == 50 and len(recorder.of(BotStoppedSpeaking)) == 1
    assert output.played == ["您好"] and output.late_frames == 0


async def test_interruption_stops_playback_at_once_and_reports_what_was_heard() -> None:
    time_ = VirtualTime()
    pipeline, recorder, _, sink = await started(time_)
    text = "您本期应还两千二百七十元还款日是十二月八日"
    await pipeline.send(OutputAudio(b"\1\0" * ONE_SECOND, 8000, text))  # 2 s
    await pipeline.send(OutputAudio(b"\1\0" * 4000, 8000, "还有什么可以帮您"))
    await time_.advance_to(0.51)  # 26 of the first reply's 100 frames played
    await pipeline.send(Interruption("speech"))
    await time_.advance_to(1.0)
    await pipeline.close()
    assert len(sink.frames) == 26 and max(moment for moment, _ in sink.frames) < 0.51
    [report] = recorder.of(PlaybackInterrupted)
    assert report.text == text + "还有什么可以帮您"
    assert report.heard == text[:round(len(text) * 26 / 100)]


async def test_a_paused_prompt_sends_nothing_and_plays_on_from_where_it_stopped() -> None:
    time_ = VirtualTime()
    pipeline, recorder, output, sink = await started(time_)
    pcm = b"".join(index.to_bytes(2, "little") * 160 for index in range(50))  # each frame its own sample value
    await pipeline.send(OutputAudio(pcm, 8000, "您好"))
    await time_.advance_to(0.31)  # 16 frames played
    await pipeline.send(PausePlayback())
    await time_.advance_to(1.31)
    assert len(sink.frames) == 16, "nothing is sent while paused"
    assert recorder.of(BotStoppedSpeaking) == [], "the bot has not finished, it waits"
    await pipeline.send(ResumePlayback())
    await time_.advance_to(3.0)
    await pipeline.close()
    assert [frame for _, frame in sink.frames] == [pcm[index * 320:(index + 1) * 320] for index in range(50)]
    assert round(sink.frames[16][0], 6) == 1.31, "on again at once, on a fresh clock, not in a burst"
    assert len(recorder.of(BotStoppedSpeaking)) == 1 and output.late_frames == 0


async def test_an_interruption_ends_a_pause_dropping_the_prompt_but_not_a_disclosure_or_a_hand_over() -> None:
    time_ = VirtualTime()
    pipeline, recorder, _, sink = await started(time_)
    await pipeline.send(OutputAudio(b"\1\0" * ONE_SECOND, 8000, "您本期应还两千二百七十元"))  # 2 s
    await pipeline.send(OutputAudio(b"\2\0" * 4000, 8000, "本次通话可能会被录音", interruptible=False))
    await pipeline.send(Control("handoff", {"summary": "客户要求转人工"}))
    await time_.advance_to(0.21)  # 11 frames played
    await pipeline.send(PausePlayback())
    await time_.advance_to(1.0)
    await pipeline.send(Interruption("speech"))
    await time_.advance_to(2.0)
    await pipeline.close()
    [report] = recorder.of(PlaybackInterrupted)
    assert report.heard == "您本期应还两千二百七十元"[:round(12 * 11 / 100)]
    assert [pcm[:1] for _, pcm in sink.frames] == [b"\1"] * 11 + [b"\2"] * 25
    assert [control.action for control in sink.controls] == ["handoff"]


async def test_a_prompt_that_may_not_be_interrupted_survives_the_flush() -> None:
    time_ = VirtualTime()
    pipeline, _, _, sink = await started(time_)
    await pipeline.send(OutputAudio(b"\1\0" * 4000, 8000, "本次通话可能会被录音", interruptible=False))
    await time_.advance_to(0.1)
    await pipeline.send(Interruption("speech"))
    await time_.advance_to(1.0)
    await pipeline.close()
    assert len(sink.frames) == 25


async def test_a_hand_over_waits_for_the_words_before_it() -> None:
    time_ = VirtualTime()
    pipeline, _, _, sink = await started(time_)
    await pipeline.send(OutputAudio(b"\1\0" * 4000, 8000, "正在为您转接人工客服"))  # 0.5 s
    await pipeline.send(Control("handoff", {"summary": "客户要求转人工"}))
    await time_.advance_to(0.45)
    assert not sink.controls
    await time_.advance_to(0.6)
    await pipeline.close()
    assert [control.action for control in sink.controls] == ["handoff"]


async def test_hangup_stops_the_clock_at_once() -> None:
    time_ = VirtualTime()
    pipeline, _, _, sink = await started(time_)
    await pipeline.send(OutputAudio(b"\1\0" * ONE_SECOND, 8000, "您好"))
    await time_.advance_to(0.2)
    await pipeline.send(Hangup())
    sent = len(sink.frames)
    await time_.advance_to(0.5)
    assert len(sink.frames) == sent
    await pipeline.close()
