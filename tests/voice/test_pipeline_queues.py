"""A queue per processor (voice/pipeline.py): speech detection goes on while the recogniser
decodes, a barge-in overtakes the audio queued behind a slow decode, a hang-up waits for it; the
turn taking goes on while the synthesiser renders, and a barge-in drops the replies queued there
but never a hand-over, a hang-up or a mandatory disclosure. The recogniser and the synthesiser
here are held on latches the test opens, so nothing depends on how fast the machine is."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from bench import samples
from tests.voice.collector import Collector
from voice.barge_in import BargeInConfig
from voice.detection import DetectionConfig
from voice.frames import (
    BotSpeech,
    CallStarted,
    Control,
    Direction,
    Frame,
    Hangup,
    InputAudio,
    Interruption,
    OutputAudio,
    Speak,
    Transcript,
    UserStartedSpeaking,
    UserStoppedSpeaking,
)
from voice.pipeline import Pipeline
from voice.processors import AudioInput, SpeechDetection, SpeechRecognition, SpeechSynthesis

SAID = "我想查一下我的账单"
LATCH_BOUND_SECONDS = 60  # a held decode gives up after this: a broken test ends, it never passes by it
# Feeding a call's audio takes well under a second here; were `send` to wait for the held decode
# (no queue), it would wait for the latch: the bound turns that hang into a failure.
FEED_BOUND_SECONDS = 30


class HeldRecognizer:
    """Every decode waits until the test opens the latch, as a recogniser on a busy machine."""

    sample_rate = 16000
    hears_names = True

    def __init__(self) -> None:
        self.latch = threading.Event()
        self.decoding = threading.Event()  # a decode has started (and waits on the latch)

    def stream(self, grammar: list[str] | None = None) -> _HeldStream:
        return _HeldStream(self)


class _HeldStream:
    def __init__(self, recognizer: HeldRecognizer) -> None:
        self._recognizer = recognizer

    def accept(self, pcm: bytes) -> str | None:
        self._recognizer.decoding.set()
        self._recognizer.latch.wait(LATCH_BOUND_SECONDS)
        return None

    def pause(self) -> None:
        pass

    def finish(self, ended_in_pause: bool = False) -> str:
        self._recognizer.latch.wait(LATCH_BOUND_SECONDS)
        return SAID


@pytest.fixture
async def held() -> AsyncIterator[HeldRecognizer]:
    recognizer = HeldRecognizer()
    yield recognizer
    recognizer.latch.set()  # no decode thread left waiting after the test


def call(recognizer: HeldRecognizer) -> tuple[Pipeline, SpeechDetection, Collector, SpeechRecognition, Collector]:
    detection = SpeechDetection(DetectionConfig(), BargeInConfig(), text_expected=True)
    seen, recognition, collector = Collector(pass_on=True), SpeechRecognition(recognizer), Collector()
    return Pipeline([AudioInput(), detection, seen, recognition, collector]), detection, seen, recognition, collector


async def until_decoding(recognizer: HeldRecognizer) -> None:
    while not recognizer.decoding.is_set():
        await asyncio.sleep(0.01)


async def feed(pipeline: Pipeline, pcm: bytes, recognizer: HeldRecognizer,
               detection: SpeechDetection | None = None, bot_pcm: bytes = b"", collector: Collector | None = None
               ) -> None:
    """The caller's audio frame by frame (the bot's own, `bot_pcm`, as the echo reference until a
    barge-in), then until the first decode is held."""
    async def frames() -> None:
        bot_frames = samples.frames(bot_pcm) if bot_pcm else []
        for index, frame in enumerate(samples.frames(pcm)):
            if detection is not None and collector is not None and index < len(bot_frames) \
                    and not collector.of(Interruption):
                await detection.receive(BotSpeech(bot_frames[index], interruptible=True), Direction.UPSTREAM)
            await pipeline.send(InputAudio(frame, 8000))
            await asyncio.sleep(0)  # the recognition's task may start its decode
        await until_decoding(recognizer)

    await asyncio.wait_for(frames(), FEED_BOUND_SECONDS)


async def test_speech_detection_goes_on_while_the_recogniser_is_held(held: HeldRecognizer) -> None:
    pipeline, _, seen, recognition, collector = call(held)
    await pipeline.send(CallStarted("queues", 8000))
    await feed(pipeline, samples.silence(1.0) + samples.speech(SAID) + samples.silence(1.5), held)
    # The caller's whole utterance was detected, start to end, while the first decode is held.
    assert len(seen.of(UserStartedSpeaking)) == 1 and len(seen.of(UserStoppedSpeaking)) == 1
    assert recognition.busy and collector.of(Transcript) == []
    held.latch.set()
    await pipeline.idle()
    assert collector.finals() == [SAID]  # nothing was lost while it waited
    assert not recognition.busy
    await pipeline.close()


async def test_a_barge_in_overtakes_the_audio_queued_behind_a_slow_decode(held: HeldRecognizer) -> None:
    pipeline, detection, _, recognition, collector = call(held)
    await pipeline.send(CallStarted("queues-barge-in", 8000))
    prompt = samples.bot_prompt()
    line = samples.mix(samples.scaled(samples.delayed(prompt, 0.06), -20.0),
                       samples.silence(1.5) + samples.natural_speech("我想查一下我的账单，还有额度。"))
    line += samples.silence(1.5)  # the prompt outlasts the caller's words: after it, the end of the turn
    await feed(pipeline, line, held, detection, prompt, collector)
    # Behind the held decode, the caller's audio waits in the recognition's queue; the barge-in did not.
    assert recognition.busy
    assert collector.of(Interruption) == [Interruption("speech")]
    assert collector.of(Transcript) == []
    held.latch.set()
    await pipeline.idle()
    assert collector.finals() == [SAID]
    await pipeline.close()


async def test_words_said_before_a_hang_up_are_still_understood(held: HeldRecognizer) -> None:
    """A confirmation said just before hanging up is decoded and reaches the turn taking before
    the hang-up does (tests/telephony/test_gateway.py: the action then completes, not half done)."""
    pipeline, _, _, recognition, collector = call(held)
    await pipeline.send(CallStarted("queues-hang-up", 8000))
    await feed(pipeline, samples.silence(1.0) + samples.speech(SAID) + samples.silence(1.5), held)
    await pipeline.send(Hangup("caller hung up"))
    assert collector.of(Hangup) == [] and recognition.busy  # in order: behind the words
    held.latch.set()
    await pipeline.idle()
    ends = [frame for frame in collector.frames if isinstance(frame, (Transcript, Hangup))]
    assert ends == [Transcript(SAID, final=True), Hangup("caller hung up")]
    await pipeline.close()


class HeldSynthesizer:
    """Every render waits until the test opens the latch, as a synthesiser on a busy machine."""

    def __init__(self) -> None:
        self.latch = asyncio.Event()
        self.rendering: list[str] = []  # the texts whose render started

    async def render(self, text: str, sample_rate: int, slow: bool = False) -> bytes:
        self.rendering.append(text)
        await asyncio.wait_for(self.latch.wait(), LATCH_BOUND_SECONDS)
        return b"\x00\x00" * (sample_rate // 50)


def speaking() -> tuple[Pipeline, HeldSynthesizer, SpeechSynthesis, Collector]:
    synthesizer, heard = HeldSynthesizer(), Collector()
    synthesis = SpeechSynthesis(synthesizer)  # type: ignore[arg-type]
    return Pipeline([synthesis, heard]), synthesizer, synthesis, heard


async def until_rendering(synthesizer: HeldSynthesizer, count: int) -> None:
    async def started() -> None:
        while len(synthesizer.rendering) < count:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(started(), FEED_BOUND_SECONDS)


async def test_the_turn_taking_goes_on_while_a_reply_renders() -> None:
    pipeline, synthesizer, synthesis, heard = speaking()
    await pipeline.send(CallStarted("renders", 8000))
    # Were `send` to wait for the held render (no queue), it would wait for the latch: bounded.
    await asyncio.wait_for(pipeline.send(Speak("您好，这里是智能客服。")), FEED_BOUND_SECONDS)
    await asyncio.wait_for(pipeline.send(Speak("请问有什么可以帮您？")), FEED_BOUND_SECONDS)
    await until_rendering(synthesizer, 1)
    assert synthesis.busy and heard.of(OutputAudio) == []
    synthesizer.latch.set()
    await pipeline.idle()
    assert [frame.text for frame in heard.of(OutputAudio)] == ["您好，这里是智能客服。", "请问有什么可以帮您？"]
    await pipeline.close()


def described(frames: list[Frame]) -> list[tuple[str, object]]:
    return [(type(frame).__name__, getattr(frame, "text", getattr(frame, "action", None))) for frame in frames]


async def test_a_barge_in_drops_the_queued_replies_but_never_a_disclosure_or_a_hand_over() -> None:
    pipeline, synthesizer, _, heard = speaking()
    await pipeline.send(CallStarted("renders-barge-in", 8000))
    for frame in (Speak("您的账单如下：本期应还一千二百元。"), Speak("本次通话可能被录音。", interruptible=False),
                  Speak("还有什么可以帮您？"), Control("handoff", {"queue": "agents"}), Speak("正在为您转接。")):
        await pipeline.send(frame)
    await until_rendering(synthesizer, 1)  # the first reply is being rendered, the rest wait
    await pipeline.send(Interruption("speech"))
    assert heard.of(Interruption) == [Interruption("speech")], "it overtook the queue"
    synthesizer.latch.set()
    await pipeline.idle()
    after = heard.frames[heard.frames.index(Interruption("speech")) + 1:]
    assert described(after) == [("OutputAudio", "本次通话可能被录音。"), ("Control", "handoff")], \
        "the reply in hand and the interruptible ones queued are dropped; the rest in order"
    assert synthesizer.rendering == ["您的账单如下：本期应还一千二百元。", "本次通话可能被录音。"], \
        "nothing dropped was rendered"
    await pipeline.close()


async def test_once_the_caller_hung_up_no_reply_is_rendered_but_the_hand_over_still_passes() -> None:
    """Nobody is left to hear them: the reply in hand, the ones queued (a disclosure too) and any
    sent after are not rendered; what is not speech keeps its place."""
    pipeline, synthesizer, _, heard = speaking()
    await pipeline.send(CallStarted("renders-hang-up", 8000))
    for frame in (Speak("您的账单如下：本期应还一千二百元。"), Speak("本次通话可能被录音。", interruptible=False),
                  Control("handoff", {"queue": "agents"}), Speak("正在为您转接。")):
        await pipeline.send(frame)
    await until_rendering(synthesizer, 1)
    await pipeline.send(Hangup("caller hung up"))
    await pipeline.send(Speak("还有什么可以帮您？"))  # the dialogue's answer to words said just before
    synthesizer.latch.set()
    await pipeline.idle()
    assert described(heard.frames) == [("CallStarted", None), ("Control", "handoff"), ("Hangup", None)]
    assert synthesizer.rendering == ["您的账单如下：本期应还一千二百元。"], "only the one already in hand"
    await pipeline.close()
