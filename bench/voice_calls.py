"""Whole calls through the voice pipeline (voice.call.run_call) against the real assistant.

Every call runs AudioInput, SpeechDetection (noise suppression, VAD, endpointing, barge-in),
SpeechRecognition, TurnTaking (turns go to the real Rasa over loopback), SpeechSynthesis
(espeak-ng) and AudioOutput on the real 20 ms clock. The caller's line is Mandarin speech from
espeak-ng at -20 dBFS over pink noise at 20 dB SNR, plus a live echo of what the bot actually
sent (60 ms later, -20 dB). The words come from a ScriptedRecognizer (the sentence, at once), so
what recognition costs is measured apart: Vosk's from bench/asr_tts.py's figure, Whisper's in a
set of calls of its own (below).

- barge-in: the caller talks over the greeting; reaction = the end of the last greeting frame
  sent (its send time + 20 ms) minus the moment the caller's first speech frame was fed in; and
  the same to the first pause of the greeting after that moment (`barge_in.pause_when_held`: the
  bot pauses while it waits to tell a barge-in from a back-channel);
- reply: the moment the caller's last speech frame was fed in until the first frame of the
  answer, split into endpointing, the Rasa turn and speech synthesis; with the shipped settings
  (the configured silence ends the turn) and again with Smart Turn asked after a short silence;
  and once more with the caller in Kokoro's voice heard by Whisper (one call at a time), which
  adds the recognition to the reply;
- load: N concurrent calls (disclosure and greeting, speech over them, a turn, the reply):
  late frames of AudioOutput and this process's CPU per second of call.

Bounded: a fixed number of calls, each cut off after at most LOAD_CALL_SECONDS or
BARGE_IN_CALL_SECONDS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench import samples as clips
from bench.stand_ins import RecordingSink, ScriptedRecognizer
from bench.stats import percentile
from voice.asr import Recognizer
from voice.audio import FRAME_SECONDS, TELEPHONE_RATE, frame_bytes, level_dbfs, samples, to_pcm
from voice.call import CallResult, VoiceEngines, run_call
from voice.config import VoiceConfig, load_voice_config
from voice.dialogue import DialogueClient
from voice.frames import CallStarted, Frame, InputAudio
from voice.tts import Synthesizer
from voice.turns import PLAYBACK_RESUMED
from voice.whisper import WhisperRecognizer

SNR_DB = 20.0
ECHO_DB = -20.0
ECHO_DELAY_S = 0.06
BOT_QUIET_S = 0.6  # the bot silent this long: the caller's turn
BARGE_IN_CALLS = 24
BARGE_IN_AT_ONCE = 4
BARGE_IN_CALL_SECONDS = 15.0
LOAD_CALLS = (5, 10, 15, 20)
LOAD_CALL_SECONDS = 16.0
LATE_FRAME_TARGET = 0.01
MACHINE_CORES = 2
CPU_BUDGET = 0.7  # share of each core the calls may use, leaving room for bursts and the OS
CALLER_SPEECH_SHARE = 0.4  # the recogniser only decodes while the caller speaks
WHISPER_READY_BOUND_SECONDS = 120.0
Voice = Callable[[str, int], bytes]  # a sentence rendered as 16-bit PCM at the rate


@dataclass
class Utterance:
    """Something the caller says: `over_bot_s` after the bot's first frame (talking over it), or
    once the bot has been quiet for BOT_QUIET_S (None)."""

    pcm: bytes
    over_bot_s: float | None = None
    onset_at: float | None = None  # monotonic time its first frame was fed in
    end_at: float | None = None  # ... and its last audible frame

    @functools.cached_property
    def audible_frames(self) -> int:
        """Frames up to the last one loud enough to be speech (the clip's tail is quiet)."""
        loud = [index for index, frame in enumerate(clips.frames(self.pcm, TELEPHONE_RATE))
                if level_dbfs(frame) > clips.ONSET_THRESHOLD_DBFS]
        return loud[-1] + 1 if loud else 0


@dataclass
class Caller:
    """A caller's line paced at 20 ms: background noise from the start, the bot's own voice coming
    back as echo, and the utterances when their moment comes."""

    utterances: list[Utterance]
    sink: RecordingSink
    max_seconds: float
    done: Callable[[Caller], bool] = lambda caller: False
    seed: int = 0
    _echo_next: int = field(default=0, init=False)

    async def frames(self) -> AsyncIterator[Frame]:
        size = frame_bytes(TELEPHONE_RATE) // 2
        background = samples(clips.scaled(
            clips.noise("pink", self.max_seconds + 1, TELEPHONE_RATE, seed=self.seed), -SNR_DB)).astype(np.float64)
        pending = list(self.utterances)
        speaking: Utterance | None = None
        speech: list[np.ndarray] = []
        position = 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index in range(int(self.max_seconds / FRAME_SECONDS)):
            now = time.monotonic()
            if speaking is None and pending and self._turn_of(pending[0], now):
                speaking, position = pending.pop(0), 0
                speech = [samples(frame).astype(np.float64) for frame in clips.frames(speaking.pcm, TELEPHONE_RATE)]
                speaking.onset_at = now
            line = background[index * size:(index + 1) * size] + self._echo(now)
            if speaking is not None:
                line = line + speech[position]
                position += 1
                if position == speaking.audible_frames:
                    speaking.end_at = now
                if position == len(speech):
                    speaking = None
            yield InputAudio(to_pcm(line), TELEPHONE_RATE)
            if self.done(self):
                return
            await asyncio.sleep(max(0.0, start + (index + 1) * FRAME_SECONDS - loop.time()))

    def _turn_of(self, utterance: Utterance, now: float) -> bool:
        if not self.sink.frames:
            return False  # the bot has not started: nothing to talk over or to answer yet
        if utterance.over_bot_s is not None:
            return now - self.sink.frames[0][0] >= utterance.over_bot_s
        said_before = max((earlier.end_at or 0.0) for earlier in self.utterances)
        return self.sink.answered_and_quiet(BOT_QUIET_S, after=said_before)

    def _echo(self, now: float) -> np.ndarray | float:
        """The bot frame sent ECHO_DELAY_S ago, attenuated; nothing while the bot was silent."""
        sent = self.sink.frames
        while self._echo_next < len(sent) and sent[self._echo_next][0] <= now - ECHO_DELAY_S:
            self._echo_next += 1
        if not self._echo_next or now - ECHO_DELAY_S - sent[self._echo_next - 1][0] > FRAME_SECONDS:
            return 0.0
        return samples(sent[self._echo_next - 1][1]).astype(np.float64) * 10 ** (ECHO_DB / 20)


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None}
    return {"p50_ms": round(1000 * statistics.median(values), 1),
            "p95_ms": round(1000 * percentile(list(values), 0.95), 1)}


def _first(result: CallResult, prefix: str) -> float | None:
    return next((moment for moment, event in result.turns.timeline if event.startswith(prefix)), None)


async def _call(engines: VoiceEngines, caller: Caller, sink: RecordingSink) -> CallResult:
    return await run_call(engines, CallStarted(call_id=f"bench-voice-{uuid.uuid4().hex[:10]}"), caller.frames(), sink)


async def _barge_in_call(config: VoiceConfig, dialogue: DialogueClient, number: int,
                         recognizer: Recognizer | None = None, voice: Voice = clips.speech) -> dict[str, float]:
    """The caller talks over the greeting, then waits for the answer. The reply is rendered on demand
    (a fresh synthesiser; only the greeting is warmed), as for a reply with an amount in it.
    `recognizer`: what hears the caller (None: a ScriptedRecognizer giving the sentence at once);
    `voice`: how the caller's sentence is rendered."""
    sentence = clips.SENTENCES[number % len(clips.SENTENCES)]
    utterance = Utterance(voice(sentence, TELEPHONE_RATE), over_bot_s=1.5 + 0.1 * (number % 10))
    synthesizer = Synthesizer(config.tts)
    await synthesizer.prerender([config.turns.prompts.greeting], TELEPHONE_RATE)
    sink = RecordingSink()

    def heard_the_answer(caller: Caller) -> bool:
        """Half a second of what the bot said after the caller finished: the answer, or the
        greeting still playing because the barge-in was missed."""
        if utterance.end_at is None:
            return False
        after = [moment for moment, _ in sink.frames if moment > utterance.end_at + 0.3]
        return bool(after) and time.monotonic() - after[0] > 0.5

    caller = Caller([utterance], sink, BARGE_IN_CALL_SECONDS, heard_the_answer, seed=number)
    # Spare text in case the detector splits the sentence into two utterances.
    engines = VoiceEngines(config, recognizer or ScriptedRecognizer([sentence] * 3), synthesizer, dialogue)
    try:
        result = await _call(engines, caller, sink)
    finally:
        synthesizer.close()
    barge_in, sent, answer = _first(result, "barge-in"), _first(result, "sent "), _first(result, "answered ")
    stopped = _first(result, "caller stopped speaking")
    onset, end = utterance.onset_at, utterance.end_at
    figures = {"missed": float(barge_in is None), "early": 0.0, "late_frames": float(result.output.late_frames),
               "frames_sent": float(result.output.frames_sent)}
    if barge_in is None or onset is None or end is None:
        return figures
    figures["early"] = float(barge_in < onset)
    figures["decision_s"] = barge_in - onset
    greeting = [moment for moment, _ in sink.frames if sent is None or moment < sent]
    figures["playback_stopped_s"] = greeting[-1] + FRAME_SECONDS - onset  # the last frame sent still plays 20 ms
    paused = next((moment for moment, _ in sink.gaps(after=onset, before=math.inf if sent is None else sent)),
                  greeting[-1])
    figures["playback_paused_s"] = paused + FRAME_SECONDS - onset
    if any(event == PLAYBACK_RESUMED for _, event in result.turns.timeline):
        figures["resumed"] = 1.0
        figures["played_after_the_pause_s"] = FRAME_SECONDS * sum(1 for moment in greeting if moment > paused)
    # None: the call ended before the answer was heard (counted as a reply not measured)
    reply = next((moment for moment, _ in sink.frames if moment > answer), None) if answer is not None else None
    if stopped is not None and sent is not None and reply is not None:
        figures.update(reply_s=reply - end, endpointing_s=stopped - end, recognition_s=sent - stopped,
                       dialogue_s=answer - sent, synthesis_s=reply - answer)
    return figures


async def _barge_in_figures(config: VoiceConfig, rasa_url: str, channel_token: str,
                            recognizer: Recognizer | None = None, voice: Voice = clips.speech,
                            at_once: int = BARGE_IN_AT_ONCE) -> dict[str, Any]:
    barge_in_config = dataclasses.replace(config, turns=dataclasses.replace(
        config.turns, prompts=dataclasses.replace(config.turns.prompts, disclosure="")))  # greeting first
    dialogue = DialogueClient(rasa_url, channel_token)
    runs: list[dict[str, float]] = []
    try:
        for first in range(0, BARGE_IN_CALLS, at_once):
            runs += await asyncio.gather(*(_barge_in_call(barge_in_config, dialogue, number, recognizer, voice)
                                           for number in range(first, first + at_once)))
    finally:
        await dialogue.close()

    def measured(key: str) -> dict[str, float | None]:
        return _stats([run[key] for run in runs if key in run and not run["early"]])

    return {
        "calls": len(runs),
        "concurrent_calls": at_once,
        "missed": int(sum(run["missed"] for run in runs)),
        "before_the_caller_spoke": int(sum(run["early"] for run in runs)),
        "playback_stopped": measured("playback_stopped_s"),
        "playback_paused": measured("playback_paused_s"),
        "pause_when_held": config.barge_in.pause_when_held,
        "resume_after_ms": config.barge_in.resume_after_ms,
        "resumed_before_the_barge_in": int(sum(run.get("resumed", 0.0) for run in runs)),
        "played_after_the_pause": measured("played_after_the_pause_s"),
        "decision": measured("decision_s"),
        "end_of_speech_to_reply": measured("reply_s"),
        "replies_measured": sum("reply_s" in run for run in runs),
        "endpointing": measured("endpointing_s"),
        "endpointer_silence_ms": config.detection.speech_end_silence_ms,
        "backchannel_max_ms": config.barge_in.backchannel_max_ms,
        "recognition_finish": measured("recognition_s"),
        "rasa_turn": measured("dialogue_s"),
        "synthesis_to_first_frame": measured("synthesis_s"),
        "late_frame_ratio": round(sum(run["late_frames"] for run in runs)
                                  / max(1.0, sum(run["frames_sent"] for run in runs)), 5),
    }


async def _load(config: VoiceConfig, rasa_url: str, channel_token: str, calls: int) -> dict[str, Any]:
    """`calls` concurrent calls: the disclosure and the greeting with the
    caller talking over the disclosure, then a turn and its reply, until LOAD_CALL_SECONDS."""
    synthesizer = Synthesizer(config.tts)  # one per process, as in the gateway
    prompts = config.turns.prompts
    await synthesizer.prerender([prompts.disclosure, prompts.greeting], TELEPHONE_RATE)
    dialogue = DialogueClient(rasa_url, channel_token)
    talked_over = clips.speech("喂你好", TELEPHONE_RATE)

    async def one(number: int) -> CallResult:
        # Calls spread over the 20 ms frame period, as real arrivals are: in step, every call's
        # frame would be processed at the same instant.
        await asyncio.sleep(number * (2 * FRAME_SECONDS + FRAME_SECONDS / calls))
        sentence = clips.SENTENCES[number % len(clips.SENTENCES)]
        sink = RecordingSink()
        utterances = [Utterance(talked_over, over_bot_s=0.5), Utterance(clips.speech(sentence, TELEPHONE_RATE))]
        caller = Caller(utterances, sink, LOAD_CALL_SECONDS, seed=number)
        # Enough scripted text for any utterance the detector opens.
        recognizer = ScriptedRecognizer([sentence] * 4)
        return await _call(VoiceEngines(config, recognizer, synthesizer, dialogue), caller, sink)

    cpu_before = time.process_time()
    try:
        results = await asyncio.gather(*(one(number) for number in range(calls)))
    finally:
        await dialogue.close()
        synthesizer.close()
    cpu = time.process_time() - cpu_before
    sent = sum(result.output.frames_sent for result in results)
    late = sum(result.output.late_frames for result in results)
    return {
        "calls": calls,
        "call_seconds": round(sum(result.seconds for result in results), 1),
        "turns": sum(len(result.turns.turns) for result in results),
        "frames_sent": sent,
        "late_frame_ratio": round(late / sent, 5) if sent else 0.0,
        "cpu_seconds_per_call_second": round(cpu / sum(result.seconds for result in results), 4),
    }


def _whisper_figures(config: VoiceConfig, rasa_url: str, channel_token: str) -> dict[str, Any]:
    """The barge-in calls with the caller in Kokoro's voice, heard by Whisper as a gateway hears
    callers (the shipped settings, the model loaded before the first call), one call at a time:
    the reply as a caller of an idle gateway waits for it, recognition included."""
    whisper = WhisperRecognizer(config.whisper, load_at_start=True)
    try:
        deadline = time.monotonic() + WHISPER_READY_BOUND_SECONDS
        while whisper.state == "loading" and time.monotonic() < deadline:
            time.sleep(0.1)
        return asyncio.run(_barge_in_figures(config, rasa_url, channel_token, whisper, clips.natural_speech, 1))
    finally:
        whisper.close()


def figures(rasa_url: str, channel_token: str, vosk_real_time_factor: float | None = None) -> dict[str, Any]:
    """Barge-in and reply latency over whole calls, and concurrent calls held in real time.
    `vosk_real_time_factor` (CPU seconds per audio second, bench/asr_tts.py) turns the measured
    pipeline CPU into an estimate of calls per machine with real speech recognition."""
    config = load_voice_config()
    barge_in = asyncio.run(_barge_in_figures(config, rasa_url, channel_token))
    # The same calls with Smart Turn ending turns at its short silence (off as shipped: voice.yaml).
    smart_turn = dataclasses.replace(config, turn_models=dataclasses.replace(config.turn_models, smart_turn=True))
    with_smart_turn = asyncio.run(_barge_in_figures(smart_turn, rasa_url, channel_token))
    with_whisper = _whisper_figures(config, rasa_url, channel_token)
    # The baseline: Whisper started only once the endpointer has ended the utterance.
    at_the_end = dataclasses.replace(config, detection=dataclasses.replace(config.detection, pause_ms=0))
    whisper_at_the_end = _whisper_figures(at_the_end, rasa_url, channel_token)
    # The baseline of the pause: the bot talks on until the barge-in is decided.
    talked_on = dataclasses.replace(config, barge_in=dataclasses.replace(config.barge_in, pause_when_held=False))
    whisper_talked_on = _whisper_figures(talked_on, rasa_url, channel_token)
    load = [asyncio.run(_load(config, rasa_url, channel_token, calls)) for calls in LOAD_CALLS]
    held = 0  # up to the first call count that failed: a later pass is luck, not capacity
    for run in load:
        if run["late_frame_ratio"] > LATE_FRAME_TARGET:
            break
        held = run["calls"]
    # The lightest load: nothing saturated, and per-run costs spread over the fewest calls (the highest figure).
    cpu = load[0]["cpu_seconds_per_call_second"]
    capacity: dict[str, Any] = {
        "cpu_seconds_per_call_second": cpu,
        "calls_per_machine_without_recognition": int(MACHINE_CORES * CPU_BUDGET / cpu),
    }
    if vosk_real_time_factor is not None:
        capacity["calls_per_machine_with_vosk_all_caller_audio"] = int(
            MACHINE_CORES * CPU_BUDGET / (cpu + vosk_real_time_factor))
        capacity["calls_per_machine_with_vosk_caller_speaking_40pct"] = int(
            MACHINE_CORES * CPU_BUDGET / (cpu + CALLER_SPEECH_SHARE * vosk_real_time_factor))
    return {
        "barge_in_calls": barge_in,
        "barge_in_calls_smart_turn": {key: with_smart_turn[key] for key in (
            "calls", "replies_measured", "end_of_speech_to_reply", "endpointing", "missed")},
        "barge_in_calls_whisper": {key: with_whisper[key] for key in (
            "calls", "concurrent_calls", "backchannel_max_ms", "playback_stopped", "playback_paused",
            "pause_when_held", "resume_after_ms", "resumed_before_the_barge_in", "played_after_the_pause",
            "replies_measured",
            "end_of_speech_to_reply", "endpointing", "recognition_finish", "rasa_turn", "synthesis_to_first_frame",
            "missed")}
        | {"pause_ms": config.detection.pause_ms},
        "barge_in_calls_whisper_talked_on": {key: whisper_talked_on[key] for key in (
            "calls", "pause_when_held", "playback_stopped", "playback_paused", "missed")},
        "barge_in_calls_whisper_started_at_the_end": {key: whisper_at_the_end[key] for key in (
            "calls", "replies_measured", "end_of_speech_to_reply", "recognition_finish", "missed")},
        "load": load,
        "max_calls_held_in_one_process": held,
        "capacity": capacity,
        "machine_cores": MACHINE_CORES,
        "cpu_budget": CPU_BUDGET,
    }
