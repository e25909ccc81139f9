"""Faster turns (issue 14): Smart Turn against the fixed end-of-speech silence, Silero on sudden
sounds after a quiet stretch, back-channels while the bot speaks.

Runs the real caller-side processors (AudioInput, SpeechDetection: noisereduce, webrtcvad, the
endpointer; the turn models from var/models/turn) over 8 kHz speech rendered by Kokoro
(bench/samples.py natural_speech; espeak-ng's flat intonation tells an end-of-turn model
nothing) on a line with pink noise 35 dB down. No Rasa: the end of the caller's turn is where
the reply starts; bench/voice_calls.py adds the rest on whole calls.

- end of turn: each sentence of PAUSED_SENTENCES once whole and once with a 0.6 s hesitation
  at its "……". One pass per sentence with Smart Turn asked at every pause but never obeyed
  records each decision's probability and frame, and when the configured silence ended the
  utterance; every threshold's outcome follows from that exactly (a decision at or above it
  ends the turn there). Cut off = a decision above the threshold before the last syllable.
  The same for the held-out requests of bench/spoken_requests.py, one per intent, as Kokoro says
  them: longer sentences in clauses, with the pauses its phrasing puts in.
- per-decision CPU: process time of SmartTurn.probability (8 s of audio, features and model).
- onset: false barge-ins on music, noise bursts and babble 10 dB below the caller starting
  after the caller's first words and 2 s of a quiet line (babble also before the caller spoke),
  and missed barge-ins on the caller speaking again (as loud, 6 dB softer), with webrtcvad alone
  and with Silero; the barge-in detector's caller-level gate is on in both.
- back-channels: 嗯, 对对, 是的, 好的, 嗯嗯 said over the bot's prompt as AudioOutput really plays it
  (on virtual time; the echo, 20 dB down, is what it sent), without a recogniser (length alone
  decides): how many stop the bot, with the hold and without; how long the bot paused for one
  (`barge_in.pause_when_held`) and whether it then played all of its prompt.
Bounded: fixed sentence and scenario lists.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import samples
from bench.spoken_requests import requests
from bench.stand_ins import RecordingSink, ScriptedRecognizer, VirtualTime
from bench.stats import percentile
from voice.audio import FRAME_MS, TELEPHONE_RATE, frame_bytes, level_dbfs
from voice.barge_in import BargeInConfig
from voice.detection import DetectionConfig
from voice.frames import (
    Acknowledgement,
    CallStarted,
    Direction,
    Frame,
    InputAudio,
    Interruption,
    OutputAudio,
    UserStoppedSpeaking,
)
from voice.output import AudioOutput
from voice.pipeline import FrameProcessor, Pipeline
from voice.processors import AudioInput, SpeechDetection, SpeechRecognition
from voice.turn_models import EndOfTurn, SmartTurn, TurnModels, TurnModelsConfig, turn_models

PAUSED_SENTENCES = (
    "我想查一下……我的账单。", "我要提前……还款。", "我的额度……还有多少？", "这个月的……还款日是哪天？",
    "请问一下……怎么还款？", "我上个月……已经还清了。", "我想……改一下手机号。", "那个……我的卡丢了。",
    "帮我……转人工。", "我要……投诉。", "我昨天……还了五百块。", "我的银行卡……扣款失败了。",
    "能不能……帮我延期还款？", "我想问一下……利息怎么算？", "我的账户……被冻结了。", "为什么……多扣了我的钱？",
)
HESITATION_S = 0.6
THRESHOLDS = (0.5, 0.7, 0.9, 0.95, 0.98, 0.99)
BEFORE_S, AFTER_S = 1.2, 1.5
ONSET_SEEDS = 24  # a 2 % target needs more than a handful
BACKCHANNELS = ("嗯。", "对对。", "是的。", "好的。", "嗯嗯。")
ECHO_DELAY_S = 0.06


class _Ends(FrameProcessor):
    """The end of the bench pipeline: when each utterance ended, in frames fed."""

    def __init__(self, pass_on: bool = False) -> None:
        super().__init__()
        self.frame = 0
        self.ended_at: list[int] = []
        self.frames: list[Frame] = []
        self.pass_on = pass_on  # True: in the middle of the pipeline, frames go on as they came

    async def process(self, frame: Frame, direction: Direction) -> None:
        self.frames.append(frame)
        if isinstance(frame, UserStoppedSpeaking):
            self.ended_at.append(self.frame)
        if self.pass_on:
            await self.push(frame, direction)


class _Recording(EndOfTurn):
    """Asks Smart Turn at every pause, records the answer and its frame, never ends the turn."""

    def __init__(self, *args: Any, ends: _Ends, decisions: list[tuple[int, float]], cpu: list[float]) -> None:
        super().__init__(*args)
        self._ends, self._decisions, self._cpu = ends, decisions, cpu

    def complete(self) -> bool:
        started = time.process_time()
        super().complete()
        self._cpu.append(time.process_time() - started)
        assert self.last_probability is not None
        self._decisions.append((self._ends.frame, self.last_probability))
        return False


def _line(speech: bytes, seed: int) -> bytes:
    line = samples.silence(BEFORE_S) + speech + samples.silence(AFTER_S)
    return samples.mix(line, samples.scaled(samples.noise("pink", len(line) / 16000, seed=seed), -35.0))


def _last_loud_frame(pcm: bytes) -> int:
    threshold = samples.ONSET_THRESHOLD_DBFS
    return max(index for index, frame in enumerate(samples.frames(pcm)) if level_dbfs(frame) > threshold)


class _RecordingDetection(SpeechDetection):
    def __init__(self, models: TurnModels, ends: _Ends, cpu: list[float]) -> None:
        super().__init__(DetectionConfig(), BargeInConfig(), models)
        self.ends, self.cpu = ends, cpu
        self.decisions: list[tuple[int, float]] = []

    def end_of_turn(self, model: SmartTurn, sample_rate: int, config: TurnModelsConfig) -> EndOfTurn:
        return _Recording(model, sample_rate, config, ends=self.ends, decisions=self.decisions, cpu=self.cpu)


async def _decisions(models: TurnModels, speech: bytes, seed: int,
                     cpu: list[float]) -> tuple[list[tuple[int, float]], list[int]]:
    """Smart Turn's (frame, probability) at each pause, and the frames where the configured silence ended utterances."""
    ends = _Ends()
    detection = _RecordingDetection(models, ends, cpu)
    pipeline = Pipeline([AudioInput(), detection, ends])
    await pipeline.send(CallStarted("bench-turns", TELEPHONE_RATE))
    for frame in samples.frames(_line(speech, seed)):
        ends.frame += 1
        await pipeline.send(InputAudio(frame, TELEPHONE_RATE))
    await pipeline.close()
    return detection.decisions, ends.ended_at


def _stats_ms(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None}
    return {"p50_ms": round(statistics.median(values), 1), "p95_ms": round(percentile(values, 0.95), 1)}


Run = tuple[list[tuple[int, float]], list[int], int]  # decisions, the configured silence's ends, the last syllable


def _runs(models: TurnModels, speeches: list[tuple[bytes, int]], cpu: list[float]) -> list[Run]:
    """Each (speech, noise seed) through the detector with Smart Turn asked at every pause."""
    runs = []
    for speech, seed in speeches:
        decisions, ended_at = asyncio.run(_decisions(models, speech, seed, cpu))
        runs.append((decisions, ended_at, int(BEFORE_S * 1000 / FRAME_MS) + _last_loud_frame(speech) + 1))
    return runs


def _outcome(runs: list[Run], threshold: float | None) -> dict[str, Any]:
    """None: the configured silence alone."""
    to_turn_end_ms, cut, early = [], 0, 0
    for decisions, ended_at, last in runs:
        first = next((frame for frame, probability in decisions
                      if threshold is not None and probability >= threshold and frame <= ended_at[0]), None)
        end = first if first is not None else ended_at[0]
        if end < last:
            cut += 1
            continue
        early += first is not None
        to_turn_end_ms.append(float((end - last) * FRAME_MS))
    return {"end_of_speech_to_end_of_turn": _stats_ms(to_turn_end_ms), "cut_off_rate": round(cut / len(runs), 3),
            "ended_at_the_short_silence_rate": round(early / len(runs), 3)}


def _by_threshold(runs: list[Run]) -> dict[str, Any]:
    return {"fixed_silence": _outcome(runs, None),
            "smart_turn_by_threshold": {str(threshold): _outcome(runs, threshold) for threshold in THRESHOLDS}}


def end_of_turn(models: TurnModels) -> dict[str, Any]:
    cpu: list[float] = []
    paused = _runs(models, [(speech, seed) for seed, sentence in enumerate(PAUSED_SENTENCES)
                            for speech in (samples.natural_speech(sentence.replace("……", "")),
                                           samples.lengthen_pause(samples.natural_speech(sentence), HESITATION_S))],
                   cpu)
    # Requests as callers make them: longer, in clauses, with the pauses Kokoro's phrasing puts in.
    said = _runs(models, [(samples.natural_speech(text), seed) for seed, (text, _) in enumerate(requests())], cpu)
    return {
        "sentences": len(paused),
        "hesitation_ms": int(HESITATION_S * 1000),
        "check_after_silence_ms": models.config.check_after_silence_ms,
        "configured_silence_ms": DetectionConfig().speech_end_silence_ms,
        "shipped_threshold": models.config.complete_probability,
        **_by_threshold(paused),
        "requests": {"sentences": len(said), **_by_threshold(said)},
        "decision_cpu_ms": _stats_ms([1000 * seconds for seconds in cpu]),
        "decisions": len(cpu),
    }


def _caller(seed: int) -> bytes:
    return samples.natural_speech(samples.SENTENCES[seed % len(samples.SENTENCES)])


ONSET_SOUNDS: dict[str, Callable[[int], bytes]] = {  # what starts after the quiet stretch
    "music": lambda seed: samples.chord(1.5),
    "noise_burst": lambda seed: samples.scaled(samples.noise("pink", 1.0, seed=seed), -5.0),
    "babble_10dB_below_the_caller": lambda seed: samples.scaled(samples.noise("babble", 3.0, seed=seed), -10.0),
    "the_caller": lambda seed: _caller(seed + 1),
    "the_caller_6dB_softer": lambda seed: samples.scaled(_caller(seed + 1), -6.0),
}
CALLERS = ("the_caller", "the_caller_6dB_softer")


def onset(models: TurnModels) -> dict[str, Any]:
    """Each sound after the caller said a first sentence (Kokoro's voice) and 2 s of a quiet line,
    while the bot speaks; babble also with no words of the caller before (their level unknown)."""
    assert models.silero is not None
    figures: dict[str, Any] = {}
    cpu, audio_seconds = 0.0, 0.0
    scenes = [(name, sound, True) for name, sound in ONSET_SOUNDS.items()]
    scenes.append(("babble_before_the_caller_spoke", ONSET_SOUNDS["babble_10dB_below_the_caller"], False))
    for name, sound, caller_first in scenes:
        counts = {"webrtcvad": 0, "silero": 0}
        for seed in range(ONSET_SEEDS):
            first = _caller(seed) if caller_first else b""
            before = samples.silence(1.0) + first + samples.silence(2.0)
            quiet = samples.scaled(samples.noise("brown", len(before) / 2 / TELEPHONE_RATE + 4.0, seed=seed), -45.0)
            line = samples.mix(quiet, before + sound(seed))
            scenario = samples.Scenario(line, None, len(before) / 2 / TELEPHONE_RATE, TELEPHONE_RATE)
            bot_speaks_from_s = len(before) / 2 / TELEPHONE_RATE - 1.0  # a second after the caller's words
            counts["webrtcvad"] += samples.play(scenario, bot_speaks_from_s=bot_speaks_from_s).barge_in_ms is not None
            started = time.process_time()
            counts["silero"] += samples.play(scenario, bot_speaks_from_s=bot_speaks_from_s, onset=(
                models.silero.stream(TELEPHONE_RATE), models.config.onset_probability)).barge_in_ms is not None
            cpu += time.process_time() - started
            audio_seconds += scenario.seconds
        missed = name in CALLERS
        figures[name] = {"missed_barge_in_rate" if missed else "false_barge_in_rate": {
            detector: round((ONSET_SEEDS - count if missed else count) / ONSET_SEEDS, 3)
            for detector, count in counts.items()}}
    figures["cpu_seconds_per_audio_second_with_silero"] = round(cpu / audio_seconds, 4)
    figures["scenarios_each"] = ONSET_SEEDS
    figures["talker_margin_db"] = BargeInConfig().talker_margin_db
    return figures


@dataclass
class OverThePlayingBot:
    """What happened when the caller spoke over a prompt: the frames past the recogniser, what the
    bot sent and when (virtual time), and when the caller started."""

    frames: list[Frame]
    sink: RecordingSink
    onset_s: float

    def of(self, kind: type) -> list[Frame]:
        return [frame for frame in self.frames if isinstance(frame, kind)]

    @property
    def longest_pause_s(self) -> float:
        """The longest gap in the prompt's frames after the caller started (0: none)."""
        return max((length for _, length in self.sink.gaps(after=self.onset_s)), default=0.0)


async def over_the_playing_bot(caller_speech: bytes, said: list[str] | None = None,
                               barge_in: BargeInConfig | None = None, onset_s: float = 1.5, partials: bool = False,
                               tap: FrameProcessor | None = None, snr_db: float = 35.0) -> OverThePlayingBot:
    """The bot's prompt really plays (AudioOutput on virtual time) and the line's echo is what it
    sent, 60 ms later and 20 dB down, so a paused bot leaves a quiet line; the caller says
    `caller_speech` `onset_s` in over pink noise `snr_db` down. `said`: what a recogniser gives (None:
    no recogniser, length alone decides), only at the end as Whisper does or with `partials` as it
    goes; `tap` sees the frames right after the speech detection."""
    time_ = VirtualTime()
    sink = RecordingSink(clock=time_.clock)
    prompt = samples.bot_prompt()
    caller = samples.silence(onset_s) + caller_speech
    ends = _Ends(pass_on=True)
    recognizer = ScriptedRecognizer(said, ms_per_character=100 if partials else 10**6) if said is not None else None
    pipeline = Pipeline([AudioInput(), SpeechDetection(DetectionConfig(), barge_in or BargeInConfig(),
                                                       text_expected=said is not None),
                         *([tap] if tap is not None else []),
                         SpeechRecognition(recognizer), ends, AudioOutput(sink, time_.clock, time_.sleep)])
    await pipeline.send(CallStarted("bench-over-the-bot", TELEPHONE_RATE))
    await pipeline.send(OutputAudio(prompt, TELEPHONE_RATE, samples.BOT_PROMPT))
    background = samples.scaled(samples.noise("pink", len(prompt) / 16000 + 4, seed=5), -snr_db)
    size = frame_bytes(TELEPHONE_RATE)
    for index, noise in enumerate(samples.frames(background)):
        await time_.advance_to(index * FRAME_MS / 1000)
        echoed = [samples.scaled(pcm, -20.0) for moment, pcm in sink.frames
                  if abs(moment - (time_.now - ECHO_DELAY_S)) < FRAME_MS / 2000]
        await pipeline.send(InputAudio(samples.mix(noise, caller[index * size:(index + 1) * size], *echoed),
                                       TELEPHONE_RATE))
        await pipeline.idle()
    await pipeline.close()
    return OverThePlayingBot(ends.frames, sink, onset_s)


def backchannels() -> dict[str, Any]:
    held, at_once = BargeInConfig(), dataclasses.replace(BargeInConfig(), backchannel_max_ms=0)
    outcomes = {word: (asyncio.run(over_the_playing_bot(samples.natural_speech(word), barge_in=held)),
                       asyncio.run(over_the_playing_bot(samples.natural_speech(word), barge_in=at_once)))
                for word in BACKCHANNELS}
    pauses = [1000 * with_hold.longest_pause_s for with_hold, _ in outcomes.values()]
    return {
        "backchannel_max_ms": held.backchannel_max_ms,
        "words": len(BACKCHANNELS),
        "stopped_the_bot_with_hold": sum(bool(with_hold.of(Interruption)) for with_hold, _ in outcomes.values()),
        "recorded_as_acknowledgement": sum(bool(with_hold.of(Acknowledgement)) for with_hold, _ in outcomes.values()),
        "stopped_the_bot_without_hold": sum(bool(without.of(Interruption)) for _, without in outcomes.values()),
        "pause_when_held": held.pause_when_held,
        "bot_paused_ms": {"p50_ms": round(statistics.median(pauses)), "max_ms": round(max(pauses))},
        "whole_prompt_played": sum(with_hold.sink.audio.rstrip(b"\0") == samples.bot_prompt().rstrip(b"\0")
                                   for with_hold, _ in outcomes.values()),
        "recogniser": "none (length alone decides)",
    }


def figures(config: TurnModelsConfig | None = None) -> dict[str, Any]:
    models = turn_models(config or TurnModelsConfig(smart_turn=True))  # measured whether or not voice.yaml turns it on
    if models.smart_turn is None or not models.smart_turn.available or models.silero is None \
            or not models.silero.available:
        return {"skipped": "the turn models are not installed (make setup)"}
    return {"end_of_turn": end_of_turn(models), "onset": onset(models), "backchannels": backchannels()}


if __name__ == "__main__":
    import json

    print(json.dumps(figures(), indent=2, ensure_ascii=False))
