"""Barge-in on real audio: the caller interrupts, noise and the bot's own echo do not."""

from __future__ import annotations

import dataclasses

import pytest

from bench import samples
from voice.barge_in import BargeInConfig, BargeInDetector, BargeInState, count_characters
from voice.detection import SpeechDetector

REACTION_LIMIT_MS = 250


def reaction_ms(scenario: samples.Scenario, config: BargeInConfig | None = None) -> float | None:
    outcome = samples.play(scenario, barge_in=config)
    return None if outcome.barge_in_ms is None else outcome.barge_in_ms - scenario.onset_s * 1000


@pytest.mark.parametrize("echo_db", [-10, -20])
@pytest.mark.parametrize("delay_ms", [40, 200])
def test_bot_echo_does_not_barge_in(echo_db, delay_ms):
    scenario = samples.echo_only(echo_db, delay_ms=delay_ms, noise_kind="pink", snr_db=30.0, seed=delay_ms)
    outcome = samples.play(scenario)
    assert outcome.voiced_frames > 100  # the echo is speech to the VAD: only the echo gate stops it
    assert outcome.barge_in_ms is None


@pytest.mark.parametrize("echo_db", [-10, -20])
def test_echo_loss_is_measured_from_the_line_and_errs_low(echo_db):
    scenario = samples.echo_only(echo_db, delay_ms=120, noise_kind="pink", snr_db=30.0, seed=1)
    detector, barge_in = SpeechDetector(8000), BargeInDetector(8000)
    assert barge_in.echo_return_loss_db == BargeInConfig().echo_return_loss_db  # assumed until measured
    for bot_frame, frame in zip(samples.frames(scenario.bot), samples.frames(scenario.caller), strict=False):
        barge_in.bot_audio(bot_frame)
        barge_in.caller_audio(detector.process(frame))
    assert barge_in.echo_delay_frames == 120 // 20 + detector.lag_frames
    assert barge_in.measured_echo_loss_db is not None
    assert -echo_db - 4.0 <= barge_in.echo_return_loss_db <= -echo_db  # never more loss than the line has


def test_the_measured_echo_loss_is_kept_into_the_next_prompt():
    """The line's echo loss is a property of the line: a new prompt (reset) starts with it, not
    with the assumed loss, while the new prompt's history is still too short to measure again."""
    scenario = samples.echo_only(-20, delay_ms=120, noise_kind="pink", snr_db=30.0, seed=1)
    detector, barge_in = SpeechDetector(8000), BargeInDetector(8000)
    pairs = list(zip(samples.frames(scenario.bot), samples.frames(scenario.caller), strict=False))
    for bot_frame, frame in pairs:
        barge_in.bot_audio(bot_frame)
        barge_in.caller_audio(detector.process(frame))
    measured = barge_in.measured_echo_loss_db
    assert measured is not None
    barge_in.reset()
    losses = []
    for bot_frame, frame in pairs[:60]:
        barge_in.bot_audio(bot_frame)
        barge_in.caller_audio(detector.process(frame))
        losses.append(barge_in.measured_echo_loss_db)
    assert None not in losses, losses


def test_an_echo_below_the_noise_bounds_the_loss_without_a_delay():
    scenario = samples.echo_only(-30, delay_ms=120, noise_kind="pink", snr_db=20.0, seed=2)
    detector, barge_in = SpeechDetector(8000), BargeInDetector(8000)
    for bot_frame, frame in zip(samples.frames(scenario.bot), samples.frames(scenario.caller), strict=False):
        barge_in.bot_audio(bot_frame)
        barge_in.caller_audio(detector.process(frame))
    assert barge_in.echo_delay_frames is None  # the line's envelope does not follow the bot's
    assert barge_in.measured_echo_loss_db is not None
    assert BargeInConfig().echo_return_loss_db + 5.0 < barge_in.echo_return_loss_db <= 30.0


def test_every_sentence_over_echo_and_noise_barges_in_within_250ms():
    """The caller over the bot's echo (-20 dB) and pink noise (20 dB below them) at once: the
    echo estimate must come from the line, not the assumed loss, or weak first syllables (这)
    wait for the next one."""
    reactions = [reaction_ms(samples.speech_over_echo(sentence, -20, delay_ms=delay, noise_kind="pink", snr_db=20.0,
                                                      seed=index))
                 for index, (sentence, delay) in enumerate(zip(samples.SENTENCES, (40, 60, 120) * 2, strict=True))]
    assert all(reaction is not None and 0 < reaction <= REACTION_LIMIT_MS for reaction in reactions), reactions


@pytest.mark.parametrize("echo_db", [-10, -20])
def test_caller_speech_over_echo_barges_in_within_250ms(echo_db):
    reactions = [reaction_ms(samples.speech_over_echo(sentence, echo_db, delay_ms=delay, seed=index))
                 for index, (sentence, delay) in enumerate(zip(samples.SENTENCES[:3], (40, 120, 200), strict=True))]
    assert all(reaction is not None and 0 < reaction <= REACTION_LIMIT_MS for reaction in reactions), reactions


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "babble"])
def test_caller_speech_over_noise_at_20db_barges_in(kind):
    reaction = reaction_ms(samples.speech_over_noise(samples.SENTENCES[4], kind, 20, seed=11))
    assert reaction is not None and 0 < reaction <= REACTION_LIMIT_MS


def test_babble_at_10db_below_the_caller_does_not_barge_in():
    seeds = (13, 20, 21, 22, 23, 24)  # 13: the babble lulls briefly before it gets loud
    false_barge_ins = [samples.play(samples.noise_only("babble", 10, 5.0, seed=seed)).barge_in_ms for seed in seeds]
    assert false_barge_ins == [None] * len(seeds)


def _after_the_caller_spoke(sound: bytes, seed: int) -> tuple[samples.Scenario, float]:
    """The caller says a sentence, 2 s of a quiet line, then `sound` while the bot speaks; and
    when the bot starts speaking (a second after the caller's sentence)."""
    first = samples.speech(samples.SENTENCES[seed % len(samples.SENTENCES)])
    before = samples.silence(1.0) + first + samples.silence(2.0)
    quiet = samples.scaled(samples.noise("brown", len(before) / 16000 + 4.0, seed=seed), -45.0)
    scenario = samples.Scenario(samples.mix(quiet, before + sound), None, len(before) / 16000, 8000)
    return scenario, (len(before) / 16000) - 1.0


@pytest.mark.parametrize("seed", range(4))
def test_a_talker_10db_below_the_caller_does_not_barge_in_once_the_caller_was_heard(seed):
    babble = samples.scaled(samples.noise("babble", 3.0, seed=seed), -10.0)
    scenario, bot_speaks_from_s = _after_the_caller_spoke(babble, seed)
    ungated = samples.play(scenario, barge_in=BargeInConfig(talker_margin_db=None), bot_speaks_from_s=bot_speaks_from_s)
    assert ungated.barge_in_ms is not None  # babble after a quiet stretch is speech to the VAD: only the level stops it
    assert samples.play(scenario, bot_speaks_from_s=bot_speaks_from_s).barge_in_ms is None


@pytest.mark.parametrize("softer_db", [0.0, 6.0])
def test_the_caller_speaking_again_barges_in_even_6db_softer(softer_db):
    again = samples.scaled(samples.speech(samples.SENTENCES[2]), -softer_db)
    scenario, bot_speaks_from_s = _after_the_caller_spoke(again, seed=1)
    reaction = samples.play(scenario, bot_speaks_from_s=bot_speaks_from_s).barge_in_ms
    assert reaction is not None and 0 < reaction - scenario.onset_s * 1000 <= REACTION_LIMIT_MS


def test_the_callers_level_is_the_median_of_their_last_utterances():
    detector = SpeechDetector(8000)
    quiet = samples.silence(1.0)
    levels = []
    for gain_db in (0.0, -12.0, -3.0, -20.0):
        line = quiet + samples.scaled(samples.speech(samples.SENTENCES[0]), gain_db) + quiet
        line = samples.mix(samples.scaled(samples.noise("pink", len(line) / 16000, seed=2), -45.0), line)
        for frame in samples.frames(line):
            detection = detector.process(frame)
        levels.append(detection.caller_level_db)
    assert levels[0] is not None and levels[1] is not None
    assert levels[1] < levels[0] - 5  # a median of two: between them
    assert abs(levels[2] - levels[0]) < 4  # 0, -12, -3 dB: the -3 dB utterance's level
    assert levels[3] < levels[2]  # -12, -3, -20 dB: only the last three count


def test_before_the_caller_has_said_anything_their_level_is_unknown():
    detector = SpeechDetector(8000)
    short = samples.speech(samples.SENTENCES[1])[: 2 * 8000 * 200 // 1000]  # too little speech to tell a voice
    line = samples.silence(1.5) + short + samples.silence(1.5)
    detections = [detector.process(frame) for frame in samples.frames(line)]
    assert all(detection.caller_level_db is None for detection in detections)


def test_a_cough_sized_burst_of_speech_does_not_barge_in():
    burst_ms = BargeInConfig().min_speech_ms - 20  # one frame short of a barge-in
    burst = samples.speech(samples.SENTENCES[0])[: 2 * 8000 * burst_ms // 1000]
    line = samples.silence(1.5) + burst + samples.silence(1.0)
    line = samples.mix(line, samples.scaled(samples.noise("pink", len(line) / 16000, seed=3), -25.0))
    assert samples.play(samples.Scenario(line, None, 1.5, 8000)).barge_in_ms is None


def test_barge_in_is_reported_once_until_reset():
    scenario = samples.speech_over_echo(samples.SENTENCES[0], -20)
    detector = SpeechDetector(8000)
    barge_in = BargeInDetector(8000)
    bot_frames = samples.frames(scenario.bot)
    states = []
    for index, frame in enumerate(samples.frames(scenario.caller)[: len(bot_frames)]):
        barge_in.bot_audio(bot_frames[index])
        states.append(barge_in.caller_audio(detector.process(frame)))
    assert states.count(BargeInState.BARGE_IN) == 1
    assert barge_in.state is BargeInState.BARGE_IN
    barge_in.reset()
    assert barge_in.state is BargeInState.NONE


def test_disabled_barge_in_never_interrupts():
    config = BargeInConfig(enabled=False)
    assert reaction_ms(samples.speech_over_echo(samples.SENTENCES[1], -20), config) is None


def test_candidate_waits_for_enough_recognised_characters():
    config = dataclasses.replace(BargeInConfig(), confirm_characters=2)
    scenario = samples.speech_over_echo(samples.SENTENCES[2], -20)
    detector = SpeechDetector(8000)
    barge_in = BargeInDetector(8000, config)
    bot_frames = samples.frames(scenario.bot)
    states = []
    for index, frame in enumerate(samples.frames(scenario.caller)[: len(bot_frames)]):
        barge_in.bot_audio(bot_frames[index])
        states.append(barge_in.caller_audio(detector.process(frame)))
        if states[-1] is BargeInState.CANDIDATE:
            break  # the caller is still speaking: the recogniser's partials come now
    assert BargeInState.BARGE_IN not in states
    assert states.count(BargeInState.CANDIDATE) == 1
    assert barge_in.state is BargeInState.CANDIDATE
    assert not barge_in.confirm("我，")
    assert barge_in.confirm("我要")
    assert barge_in.state is BargeInState.BARGE_IN
    assert not barge_in.confirm("我要提前")  # decided once


def test_confirm_without_a_candidate_is_false():
    barge_in = BargeInDetector(8000, BargeInConfig(confirm_characters=1))
    assert not barge_in.confirm("我要投诉")


def test_confirmation_counts_chinese_characters_not_words():
    assert count_characters("帮我转人工") == 5
    assert count_characters("我 要，还款！") == 4
    assert count_characters("转 VIP 客服 123") == 9
    assert count_characters("  ，。？…  ") == 0
