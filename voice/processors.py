"""The caller-side processors of a call, each wrapping one engine:

AudioInput        any chunk size or rate in → exact 20 ms frames at the call's rate
SpeechDetection   noise-suppressed VAD + endpointing; barge-in while the bot speaks
SpeechRecognition raw audio (not denoised) at 16 kHz → partial and final transcripts
SpeechSynthesis   text → speech at the call's rate; queued speech dropped on interruption
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from voice.asr import RecognitionStream, Recognizer, grammar_for
from voice.audio import FRAME_MS, TELEPHONE_RATE, FrameChunker, Resampler, clipping_ratio, frame_bytes
from voice.barge_in import BargeInConfig, BargeInDetector, BargeInState, count_characters, is_backchannel
from voice.detection import DetectionConfig, SpeechDetector, SpeechEvent
from voice.frames import (
    Acknowledgement,
    AnswerExpected,
    BotSpeech,
    BotStoppedSpeaking,
    CallStarted,
    Direction,
    Frame,
    Hangup,
    InputAudio,
    Interruption,
    OutputAudio,
    PausePlayback,
    ResumePlayback,
    Speak,
    Transcript,
    UserPaused,
    UserStartedSpeaking,
    UserStoppedSpeaking,
)
from voice.pipeline import FrameProcessor
from voice.tts import Synthesizer
from voice.turn_models import EndOfTurn, SmartTurn, TurnModels, TurnModelsConfig

log = logging.getLogger(__name__)

# Audio kept from before the endpointer was sure speech had started, so the recogniser hears
# the first syllable too.
PRE_ROLL_MS = 400
CLIPPING_WARN_RATIO = 0.05
# Decoding costs most of a frame's time in CPU; Vosk releases the GIL, so it runs beside the
# event loop (one call's frames still decode in order: the recognition's queue hands them over
# one at a time, voice/pipeline.py).
RECOGNITION_THREADS = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="asr")
# Final texts apart: Whisper's `finish` waits seconds for its worker process (queued behind other
# utterances), and a waiting utterance must not hold a thread other calls' audio needs.
FINISH_THREADS = ThreadPoolExecutor(max_workers=max(8, os.cpu_count() or 2), thread_name_prefix="asr-final")
# Smart Turn decisions and model loading (ONNX Runtime releases the GIL).
TURN_THREADS = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="turn")


class AudioInput(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.sample_rate = TELEPHONE_RATE
        self._chunker = FrameChunker(self.sample_rate)
        self._resampler: Resampler | None = None
        self._warned: set[str] = set()
        self.call_id = "?"

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, CallStarted):
            self.call_id, self.sample_rate = frame.call_id, frame.sample_rate
            self._chunker = FrameChunker(self.sample_rate)
        if not isinstance(frame, InputAudio) or direction is Direction.UPSTREAM:
            await self.push(frame, direction)
            return
        pcm = frame.pcm
        if frame.sample_rate != self.sample_rate:
            if self._resampler is None:
                self._warn_once("rate", "audio at %d Hz on a %d Hz call: resampling", frame.sample_rate,
                                self.sample_rate)
                self._resampler = Resampler(frame.sample_rate, self.sample_rate)
            pcm = self._resampler.process(pcm)
        elif len(pcm) != frame_bytes(self.sample_rate):
            self._warn_once("size", "audio chunks of %d bytes (not 20 ms): re-cutting", len(pcm))
        for piece in self._chunker.feed(pcm):
            if clipping_ratio(piece) > CLIPPING_WARN_RATIO:
                self._warn_once("clipping", "caller audio is clipping")
            await self.push(InputAudio(piece, self.sample_rate))

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("call %s: " + message, self.call_id, *args)


class SpeechDetection(FrameProcessor):
    """Tells when the caller starts and stops speaking. While the bot speaks, speech only
    counts once it is a barge-in (and the prompt may be interrupted); a back-channel (嗯, 对)
    becomes an `Acknowledgement` instead, and while it cannot yet tell the two apart the prompt
    pauses (`PausePlayback`, then `ResumePlayback` or the `Interruption`). With the turn models
    (voice/turn_models.py), Silero must agree that speech started, and Smart Turn may end the
    caller's turn after a short silence instead of the configured one. `text_expected`: a
    recogniser sends transcripts back."""

    def __init__(self, detection: DetectionConfig, barge_in: BargeInConfig, models: TurnModels | None = None,
                 text_expected: bool = False) -> None:
        super().__init__()
        self.detection_config = detection
        self.barge_in_config = barge_in
        self.models = models
        self.text_expected = text_expected
        self._detector: SpeechDetector | None = None
        self._barge_in: BargeInDetector | None = None
        self._end_of_turn: EndOfTurn | None = None
        self._bot_speaking = False
        self._interruptible = True
        self._awaiting_confirmation = False
        self._judging_final_text = False  # a held utterance ended: its final text says what it was
        self._in_utterance = False
        self._paused = False  # silent `pause_ms` in the utterance, nothing said since
        self._playback_paused = False  # by held speech (`barge_in.pause_when_held`)
        self._echo_tail_frames = 0  # after the bot stopped, its echo may still come back

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, CallStarted):
            await self._start_call(frame.sample_rate)
        elif isinstance(frame, BotSpeech) and self._barge_in is not None:
            if not self._bot_speaking:
                self._barge_in.reset()
            self._bot_speaking, self._interruptible = True, frame.interruptible
            self._barge_in.bot_audio(frame.pcm)
        elif isinstance(frame, BotStoppedSpeaking):
            self._bot_speaking = False
            self._echo_tail_frames = self.barge_in_config.echo_window_ms // FRAME_MS
            if self._detector is not None and not self._in_utterance:
                self._detector.abandon_utterance()  # what it was starting on was the bot's echo
        elif isinstance(frame, Transcript) and direction is Direction.UPSTREAM:
            # Partials come back from the recogniser to confirm a barge-in candidate; the final
            # one to judge a held utterance that ended before it was confirmed.
            if frame.final and self._judging_final_text:
                self._judging_final_text = False
                await self._judge_short_utterance(frame.text)
            elif self._awaiting_confirmation and self._barge_in and self._barge_in.confirm(frame.text):
                await self._interrupt()
            return
        elif isinstance(frame, InputAudio) and self._detector is not None:
            await self.push(frame, direction)
            await self._detect(frame.pcm)
            return
        await self.push(frame, direction)

    async def _start_call(self, sample_rate: int) -> None:
        onset = None
        models = self.models
        if models is not None:
            loop = asyncio.get_running_loop()
            if models.silero is not None:  # loading reads the model file: not on the event loop
                stream = await loop.run_in_executor(TURN_THREADS, models.silero.stream, sample_rate)
                onset = (stream, models.config.onset_probability) if stream is not None else None
            if models.smart_turn is not None:
                self._end_of_turn = self.end_of_turn(models.smart_turn, sample_rate, models.config)
                # Load it now, while the greeting plays: the first decision need not wait for it.
                loop.run_in_executor(TURN_THREADS, lambda: models.smart_turn.available)
        self._detector = SpeechDetector(sample_rate, self.detection_config, onset)
        self._barge_in = BargeInDetector(sample_rate, self.barge_in_config)

    def end_of_turn(self, model: SmartTurn, sample_rate: int, config: TurnModelsConfig) -> EndOfTurn:
        """The call's Smart Turn questions (the benchmark records them instead)."""
        return EndOfTurn(model, sample_rate, config)

    async def _detect(self, pcm: bytes) -> None:
        assert self._detector is not None and self._barge_in is not None
        detection = self._detector.process(pcm)
        if self._end_of_turn is not None:
            self._end_of_turn.hear(pcm)
        if detection.speech:
            self._paused = False
        elif (self._in_utterance and not self._paused and self.detection_config.pause_ms
              and self._detector.silence_ms >= self.detection_config.pause_ms):
            self._paused = True
            await self.push(UserPaused())
        started = detection.event is SpeechEvent.STARTED and not self._in_utterance
        if started and (self._bot_speaking or self._echo_tail_frames):
            # The VAD takes the bot's echo for voice: while the bot (or its echo) plays, the
            # barge-in detector tells the caller from it, and the VAD starts afresh, so that it
            # is not in the middle of an "utterance" of echo when the caller answers.
            self._detector.abandon_utterance()
            started = False
        self._echo_tail_frames = max(0, self._echo_tail_frames - 1)
        if started:
            await self._open_utterance()
        elif detection.event in (SpeechEvent.ENDED, SpeechEvent.CUT_AT_MAX_LENGTH):
            await self._close_utterance(cut=detection.event is SpeechEvent.CUT_AT_MAX_LENGTH)
        elif self._awaiting_confirmation:
            if self._playback_paused:
                self._barge_in.bot_paused()  # else the echo estimate stays that of the words before the pause
            if self._barge_in.caller_audio(detection) is BargeInState.BARGE_IN:  # longer than a back-channel
                await self._interrupt()
            elif self._bot_speaking and self._barge_in.quiet_ms >= self.detection_config.speech_end_silence_ms:
                # The bot's echo keeps the VAD voiced: held speech ends when the caller is quiet
                # (once the bot has finished, the endpointer hears the caller alone).
                self._detector.abandon_utterance()
                await self._close_utterance(cut=False)
            elif self._barge_in.quiet_ms >= self.barge_in_config.resume_after_ms:
                await self._resume_playback()  # the caller paused: a back-channel, or a sound
            elif self._barge_in.quiet_ms == 0:
                await self._pause_playback()  # (again) they speak on
        elif self._bot_speaking and self._interruptible and self.barge_in_config.enabled and not self._in_utterance:
            state = self._barge_in.caller_audio(detection)
            if state is BargeInState.BARGE_IN and self.barge_in_config.backchannel_max_ms:
                self._barge_in.hold()  # 嗯 or 对 must not stop the bot: wait until it is more than that
                state = BargeInState.CANDIDATE
            if state is BargeInState.BARGE_IN:
                await self._interrupt()
            elif state is BargeInState.CANDIDATE:
                # The recogniser must run to confirm with text, or the speech must outlast a
                # back-channel; its transcript only counts if the interruption is confirmed
                # (TurnTaking drops talked-over speech).
                self._awaiting_confirmation = True
                await self._pause_playback()
                self._detector.start_utterance()
                await self._open_utterance()
        if self._in_utterance and self._end_of_turn is not None and self._end_of_turn.due(self._detector.silence_ms):
            # Tens of ms of CPU: off the event loop; this call's next frames wait, other calls do not.
            complete = await asyncio.get_running_loop().run_in_executor(TURN_THREADS, self._end_of_turn.complete)
            if complete and self._detector.in_speech:
                self._detector.end_utterance()
                await self._close_utterance(cut=False)

    async def _open_utterance(self) -> None:
        assert self._detector is not None
        self._in_utterance = True
        self._paused = False
        if self._end_of_turn is not None:
            self._end_of_turn.utterance_started(self._detector.utterance_ms)
        await self.push(UserStartedSpeaking())

    async def _close_utterance(self, cut: bool) -> None:
        assert self._barge_in is not None
        held, self._awaiting_confirmation = self._awaiting_confirmation, False
        await self._resume_playback()
        if held and self.barge_in_config.backchannel_max_ms:
            if not self._bot_speaking:
                await self._push_interruption()  # said as the bot finished: an answer, not a back-channel
            elif self.text_expected:
                self._judging_final_text = True
            else:
                await self.push(Acknowledgement(""))  # no words to go by: short is a back-channel
        if self._in_utterance:
            self._in_utterance = False
            await self.push(UserStoppedSpeaking(cut_at_max_length=cut, ended_in_pause=self._paused))
            self._paused = False
        self._barge_in.reset()

    async def _judge_short_utterance(self, text: str) -> None:
        """A held utterance ended before it outlasted a back-channel: 嗯/对/好的 acknowledge, other
        words interrupt now (so they count as the caller's turn), no words were noise."""
        if is_backchannel(text):
            await self.push(Acknowledgement(text))
        elif count_characters(text) and self._bot_speaking and self._interruptible:
            await self._push_interruption()

    async def _push_interruption(self) -> None:
        self._awaiting_confirmation = self._playback_paused = False  # the interruption flushes a paused playback
        await self.push(Interruption("speech"))

    async def _pause_playback(self) -> None:
        if self.barge_in_config.pause_when_held and not self._playback_paused:
            self._playback_paused = True
            await self.push(PausePlayback())

    async def _resume_playback(self) -> None:
        if self._playback_paused:
            self._playback_paused = False
            await self.push(ResumePlayback())

    async def _interrupt(self) -> None:
        assert self._detector is not None
        await self._push_interruption()
        if not self._in_utterance:
            self._detector.start_utterance()  # the endpointer's start would come later: one utterance
            await self._open_utterance()


class SpeechRecognition(FrameProcessor):
    def __init__(self, recognizer: Recognizer | None, use_grammars: bool = True) -> None:
        super().__init__()
        self.queued = recognizer is not None  # decoding waits on the recogniser: detection must not
        self.recognizer = recognizer
        self.use_grammars = use_grammars
        self._call_rate: int | None = None
        self._resampler: Resampler | None = None  # one per utterance: between them, nothing to resample
        self._pre_roll: deque[bytes] = deque(maxlen=PRE_ROLL_MS // 20)  # at the call's rate
        self._stream: RecognitionStream | None = None
        self._grammar: list[str] | None = None

    async def process(self, frame: Frame, direction: Direction) -> None:
        if self.recognizer is None:
            await self.push(frame, direction)
            return
        if isinstance(frame, CallStarted):
            self._call_rate = frame.sample_rate
        elif isinstance(frame, AnswerExpected):
            self._grammar = grammar_for(frame.expect) if self.use_grammars and frame.expect else None
        elif isinstance(frame, InputAudio) and self._call_rate is not None:
            if self._stream is None or self._resampler is None:
                self._pre_roll.append(frame.pcm)
            else:
                await self._accept(self._resampler.process(frame.pcm))
        elif isinstance(frame, UserStartedSpeaking) and self._call_rate is not None:
            self._stream = self.recognizer.stream(self._grammar)
            self._resampler = Resampler(self._call_rate, self.recognizer.sample_rate)
            buffered = self._resampler.process(b"".join(self._pre_roll))
            self._pre_roll.clear()
            await self.push(frame, direction)
            await self._accept(buffered)
            return
        elif isinstance(frame, UserPaused) and self._stream is not None:
            await asyncio.get_running_loop().run_in_executor(RECOGNITION_THREADS, self._stream.pause)
        elif isinstance(frame, UserStoppedSpeaking) and self._stream is not None:
            stream, self._stream = self._stream, None
            await self.push(frame, direction)
            text = await asyncio.get_running_loop().run_in_executor(FINISH_THREADS, stream.finish,
                                                                    frame.ended_in_pause)
            final = Transcript(text, final=True)
            # Upstream first: speech detection judges a short utterance the bot talked over by its
            # words (an interruption must reach the turn taking before the words do).
            await self.push(final, Direction.UPSTREAM)
            await self.push(final)
            return
        elif isinstance(frame, Hangup):
            self._stream = None
        await self.push(frame, direction)

    async def _accept(self, pcm: bytes) -> None:
        assert self._stream is not None
        partial = await asyncio.get_running_loop().run_in_executor(RECOGNITION_THREADS, self._stream.accept, pcm)
        if partial:
            transcript = Transcript(partial, final=False)
            await self.push(transcript)
            await self.push(transcript, Direction.UPSTREAM)


class SpeechSynthesis(FrameProcessor):
    """Renders each `Speak` in order on its own queue: the turn taking goes on while a reply
    renders. A barge-in drops the replies still queued (the pipeline, by frame type) and the one
    being rendered (by the epoch it was started in). Once the call has hung up nobody hears
    anything: every reply still queued or rendering is dropped, and none is rendered after (the
    recognition before it still drains: a confirmation said just before hanging up is understood)."""

    queued = True

    def __init__(self, synthesizer: Synthesizer) -> None:
        super().__init__()
        self.synthesizer = synthesizer
        self.sample_rate = TELEPHONE_RATE
        self.slow = False
        self._epoch = 0
        self._hung_up = False

    async def receive(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, Hangup) and direction is Direction.DOWNSTREAM and not self._hung_up:
            self._hung_up = True
            self._epoch += 1
            self._drop_interrupted()
        await super().receive(frame, direction)

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, CallStarted):
            self.sample_rate, self.slow = frame.sample_rate, frame.slow_speech
        elif isinstance(frame, Interruption):
            self._epoch += 1
        elif isinstance(frame, Speak):
            if self._hung_up:
                return
            epoch = self._epoch
            pcm = await self.synthesizer.render(frame.text, self.sample_rate, slow=self.slow)
            # Rendered while the caller barged in: the reply is no longer wanted.
            if epoch == self._epoch:
                await self.push(OutputAudio(pcm, self.sample_rate, frame.text, frame.interruptible))
            return
        await self.push(frame, direction)
