"""Speech detection on real audio through the real spectral gate and webrtcvad."""

from __future__ import annotations

import dataclasses
import statistics

import numpy as np
import pytest
from noisereduce.spectralgate.stationary import SpectralGateStationary

from bench import samples
from voice.audio import clipping_ratio, frame_bytes, level_dbfs
from voice.audio import samples as pcm_samples
from voice.detection import (
    BLOCK_FRAMES,
    CONTEXT_FRAMES,
    NOISE_FLOOR_PERCENTILE,
    DetectionConfig,
    NoiseSuppressor,
    SpeechDetector,
    SpeechEvent,
    StationaryGate,
)

START, END, CUT = SpeechEvent.STARTED, SpeechEvent.ENDED, SpeechEvent.CUT_AT_MAX_LENGTH
DEFAULTS = DetectionConfig()


def speech_ms(sentence: str, rate: int = 8000) -> float:
    return len(samples.speech(sentence, rate)) / 2 / rate * 1000


def test_speech_over_pink_noise_at_10db_starts_and_ends_an_utterance():
    sentence = samples.SENTENCES[0]
    scenario = samples.speech_over_noise(sentence, "pink", 10, onset_s=1.5, tail_s=2.0, seed=3)
    outcome = samples.play(scenario)
    onset_ms = scenario.onset_s * 1000
    assert [event for event, _ in outcome.events] == [START, END]
    started, ended = outcome.times(START)[0], outcome.times(END)[0]
    assert onset_ms < started <= onset_ms + 300
    expected_end = onset_ms + speech_ms(sentence) + DEFAULTS.speech_end_silence_ms
    assert expected_end - 300 <= ended <= expected_end + 200


@pytest.mark.parametrize("kind", ["white", "pink", "brown"])
def test_steady_noise_at_10db_snr_never_starts_speech(kind):
    outcome = samples.play(samples.noise_only(kind, 10, 20.0, seed=7))
    assert outcome.events == []


def test_minutes_of_silence_never_start_speech():
    digital_silence = samples.silence(60.0)
    quiet_room = samples.scaled(samples.noise("brown", 60.0, seed=1), -45.0)
    outcome = samples.play(samples.Scenario(digital_silence + quiet_room, None, None, 8000))
    assert outcome.events == []
    assert outcome.voiced_frames == 0


def test_thirty_second_monologue_is_cut_at_max_length():
    pause = samples.silence(0.25)
    monologue = b""
    while len(monologue) < 30 * 16000:
        for sentence in samples.SENTENCES:
            monologue += samples.speech(sentence) + pause
    monologue = monologue[: 30 * 16000]
    after = samples.silence(1.5) + samples.speech(samples.SENTENCES[1]) + samples.silence(1.5)
    line = samples.silence(1.0) + monologue + after
    line = samples.mix(line, samples.scaled(samples.noise("pink", len(line) / 16000, seed=2), -20.0))
    outcome = samples.play(samples.Scenario(line, None, 1.0, 8000))
    kinds = [event for event, _ in outcome.events]
    assert kinds == [START, CUT, START, END]  # no restart while the monologue goes on
    started, cut, restarted = outcome.times(START)[0], outcome.times(CUT)[0], outcome.times(START)[1]
    assert cut - started == pytest.approx(DEFAULTS.max_utterance_ms, abs=DEFAULTS.speech_start_window_ms + 40)
    assert restarted > 31_000 + DEFAULTS.speech_end_silence_ms  # only after the monologue stopped


def test_clipped_audio_is_still_detected():
    hot = samples.scaled(samples.speech(samples.SENTENCES[2]), 18.0)
    assert clipping_ratio(hot) > 0.05
    line = samples.silence(1.0) + hot + samples.silence(1.5)
    line = samples.mix(line, samples.scaled(samples.noise("white", len(line) / 16000, seed=4), -30.0))
    outcome = samples.play(samples.Scenario(line, None, 1.0, 8000))
    assert [event for event, _ in outcome.events] == [START, END]


def test_speech_at_16khz_over_white_noise_is_detected():
    scenario = samples.speech_over_noise(samples.SENTENCES[1], "white", 10, rate=16000, seed=5)
    outcome = samples.play(scenario)
    assert [event for event, _ in outcome.events] == [START, END]
    assert outcome.times(START)[0] <= scenario.onset_s * 1000 + 300


def test_noise_profile_is_learned_from_the_calls_background_and_gates_it():
    detector = SpeechDetector(8000)
    frames = samples.frames(samples.noise_only("pink", 5, 3.0, seed=6).caller)
    detections = [detector.process(frame) for frame in frames]
    settled = detections[len(detections) // 2:]
    suppression = [d.raw_level_db - d.level_db for d in settled]
    assert min(suppression) > 10.0  # the background is gated, not just turned down a little
    typical_level = statistics.median(d.raw_level_db for d in settled)
    assert all(typical_level - 6.0 < d.noise_floor_db < typical_level for d in settled)
    assert not any(d.speech for d in settled)


def test_suppression_takes_far_more_from_the_background_than_from_speech():
    suppressor = NoiseSuppressor(8000, DetectionConfig())
    for frame in samples.frames(samples.noise_only("white", 10, 1.0, seed=8).caller):
        suppressor.learn(frame)
    line = samples.speech_over_noise(samples.SENTENCES[3], "white", 10, onset_s=0.5, tail_s=1.0, seed=9).caller
    frames = samples.frames(line)
    outputs = [suppressor.process(frame) for frame in frames][1:]  # the suppressor lags one frame
    loss = [level_dbfs(frame) - level_dbfs(output) for frame, output in zip(frames[:-1], outputs, strict=True)]
    loud_speech = [loss[index] for index, frame in enumerate(frames[:-1]) if level_dbfs(frame) > -22.0]
    background = loss[5:20]  # before the onset at 0.5 s
    assert len(loud_speech) > 20
    assert statistics.median(loud_speech) < 8.0
    assert statistics.median(background) > statistics.median(loud_speech) + 10.0


@pytest.mark.parametrize("rate", [8000, 16000])
def test_the_spectral_gate_gives_noisereduces_stationary_gate_output(rate: int) -> None:
    """The detector's gate is noisereduce's algorithm rewritten for one block size (a third of
    the CPU): the same background and the same blocks of speech over noise give the same audio."""
    n_fft, threshold_std = 256 * rate // 8000, DEFAULTS.noise_threshold_std
    background = pcm_samples(samples.noise_only("pink", 10, 1.0, rate, seed=4).caller).astype(np.float64)
    reference = SpectralGateStationary(
        y=np.zeros(1), sr=rate, y_noise=background, n_std_thresh_stationary=threshold_std, chunk_size=background.size,
        clip_noise_stationary=False, padding=0, n_fft=n_fft, win_length=None, hop_length=n_fft // 2,
        time_constant_s=2.0, freq_mask_smooth_hz=500, time_mask_smooth_ms=50, tmp_folder=None, prop_decrease=1.0,
        use_tqdm=False, n_jobs=1)
    block = (CONTEXT_FRAMES + BLOCK_FRAMES) * frame_bytes(rate) // 2
    gate = StationaryGate(rate, n_fft, block, threshold_std)
    gate.learn(background)
    line = pcm_samples(samples.speech_over_noise(samples.SENTENCES[2], "pink", 10, onset_s=0.3, rate=rate,
                                                 seed=5).caller).astype(np.float64)
    blocks = [line[start:start + block] for start in range(0, line.size - block, block // 2)]
    gated = [gate.apply(audio) for audio in blocks]
    expected = [reference.spectral_gating_stationary(audio[np.newaxis, :])[0] for audio in blocks]
    assert max(float(np.abs(ours - theirs).max()) for ours, theirs in zip(gated, expected, strict=True)) < 1e-6
    assert sum(np.abs(audio).sum() for audio in gated) < 0.9 * sum(np.abs(audio).sum() for audio in blocks)


def test_the_noise_floor_is_the_low_percentile_of_the_recent_frame_levels():
    """The running percentile kept in order gives numpy's figure (linear interpolation) frame by frame."""
    detector = SpeechDetector(8000)
    frames = samples.frames(samples.speech_over_noise(samples.SENTENCES[1], "brown", 15, onset_s=1.0, tail_s=1.5,
                                                      seed=2).caller)
    window = DEFAULTS.noise_floor_window_ms // 20
    levels = [level_dbfs(frame) for frame in frames]
    floors = [detector.process(frame).noise_floor_db for frame in frames]
    expected = [float(np.percentile(levels[max(0, index + 1 - window):index + 1], NOISE_FLOOR_PERCENTILE))
                for index in range(len(frames))]
    assert len(frames) > window and np.allclose(floors, expected, atol=1e-9)


def test_disabling_noise_suppression_removes_the_lag():
    config = dataclasses.replace(DEFAULTS, noise_suppression=False)
    detector = SpeechDetector(8000, config)
    assert detector.lag_frames == 0
    assert detector.process(bytes(320)).frame_index == 0


def test_wrong_frame_size_is_a_clear_error():
    detector = SpeechDetector(8000)
    with pytest.raises(ValueError, match=r"one 20 ms frame: 320 bytes at 8000 Hz, got 317 bytes.*FrameChunker"):
        detector.process(bytes(317))
    with pytest.raises(ValueError, match="unsupported sample rate"):
        SpeechDetector(44100)
    with pytest.raises(ValueError, match="vad_aggressiveness"):
        DetectionConfig(vad_aggressiveness=4)


def test_reset_forgets_an_open_utterance():
    detector = SpeechDetector(8000)
    line = samples.speech_over_noise(samples.SENTENCES[0], "brown", 20, onset_s=0.5, seed=1).caller
    for frame in samples.frames(line)[:75]:
        detector.process(frame)
    assert detector.in_speech
    detector.reset()
    assert not detector.in_speech
    assert detector.process(bytes(frame_bytes(8000))).frame_index == 0


def test_an_utterance_opened_by_a_barge_in_ends_after_the_configured_silence():
    detector = SpeechDetector(8000)
    for frame in samples.frames(samples.silence(1.5)):
        detector.process(frame)
    detector.start_utterance()
    assert detector.in_speech
    events = [detector.process(frame).event for frame in samples.frames(samples.silence(1.0))]
    ended_at = events.index(SpeechEvent.ENDED)
    assert SpeechEvent.STARTED not in events
    assert (ended_at + 1) * 20 == pytest.approx(DetectionConfig().speech_end_silence_ms, abs=40)
