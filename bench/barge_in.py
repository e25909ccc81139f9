"""Barge-in figures: how often noise or echo falsely interrupts the bot, how often a caller
fails to, how fast the decision comes, and what detection costs in CPU.

Runs the real SpeechDetector and BargeInDetector (webrtcvad, noisereduce) over generated 8 kHz
scenarios (bench/samples.py) while the bot "speaks". Bounded: a fixed set of scenarios,
about a minute of CPU. Targets: barge-in p95 < 250 ms, false barge-in < 2 % at 10 dB SNR, no
missed barge-in at 20 dB SNR.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench import samples
from bench.stats import percentile
from voice.audio import TELEPHONE_RATE
from voice.barge_in import BargeInConfig
from voice.detection import DetectionConfig

SNRS_DB = (20, 10, 5, 0)
ECHO_LEVELS_DB = (-10, -20)
ECHO_DELAYS_MS = (40, 120, 220)
ECHO_SEEDS = 4  # echo-only runs per level: each delay over four stretches of background
NOISE_SCENARIOS_PER_CONDITION = 24  # with 12, a 1-in-24 false barge-in (babble rising after a quiet start) hid
NOISE_SCENARIO_SECONDS = 5.0


def figures(detection: DetectionConfig | None = None, barge_in: BargeInConfig | None = None) -> dict[str, Any]:
    audio_seconds = 0.0
    cpu_seconds = 0.0
    reactions_ms: list[float] = []  # every barge-in on caller speech
    reactions_at_10db_or_better_ms: list[float] = []  # echo scenarios and noise at 10-20 dB SNR

    def play(scenario: samples.Scenario, snr_db: float = 30.0) -> samples.Outcome:
        nonlocal audio_seconds, cpu_seconds
        started = time.process_time()
        outcome = samples.play(scenario, detection, barge_in)
        cpu_seconds += time.process_time() - started
        audio_seconds += scenario.seconds
        if outcome.barge_in_ms is not None and scenario.onset_s is not None:
            reactions_ms.append(outcome.barge_in_ms - scenario.onset_s * 1000)
            if snr_db >= 10:
                reactions_at_10db_or_better_ms.append(reactions_ms[-1])
        return outcome

    def barged_in_early(outcome: samples.Outcome, scenario: samples.Scenario) -> bool:
        """A barge-in before the caller said anything is a false one."""
        return outcome.barge_in_ms is not None and (scenario.onset_s is None or
                                                    outcome.barge_in_ms < scenario.onset_s * 1000)

    false_on_noise: dict[str, dict[str, float]] = {}
    missed_over_noise: dict[str, dict[str, float]] = {}
    for kind in samples.NOISE_KINDS:
        false_on_noise[kind], missed_over_noise[kind] = {}, {}
        for snr in SNRS_DB:
            noise_runs = [samples.noise_only(kind, snr, NOISE_SCENARIO_SECONDS, TELEPHONE_RATE, seed=seed)
                          for seed in range(NOISE_SCENARIOS_PER_CONDITION)]
            false_on_noise[kind][f"{snr}dB"] = statistics.fmean(
                barged_in_early(play(scenario), scenario) for scenario in noise_runs)
            speech_runs = [samples.speech_over_noise(sentence, kind, snr, TELEPHONE_RATE, seed=seed)
                           for seed, sentence in enumerate(samples.SENTENCES)]
            missed = []
            for scenario in speech_runs:
                outcome = play(scenario, snr)
                missed.append(outcome.barge_in_ms is None or barged_in_early(outcome, scenario))
            missed_over_noise[kind][f"{snr}dB"] = statistics.fmean(missed)

    false_on_echo: dict[str, float] = {}
    missed_over_echo: dict[str, float] = {}
    for echo_db in ECHO_LEVELS_DB:
        echo_runs = [samples.echo_only(echo_db, TELEPHONE_RATE, delay_ms=delay, noise_kind="pink", seed=seed)
                     for seed in range(ECHO_SEEDS) for delay in ECHO_DELAYS_MS]
        false_on_echo[f"{echo_db}dB"] = statistics.fmean(barged_in_early(play(run), run) for run in echo_runs)
        missed = []
        for index, sentence in enumerate(samples.SENTENCES):
            scenario = samples.speech_over_echo(sentence, echo_db, TELEPHONE_RATE, delay_ms=ECHO_DELAYS_MS[index % 3],
                                                noise_kind="pink", snr_db=30.0, seed=index)
            outcome = play(scenario)
            missed.append(outcome.barge_in_ms is None or barged_in_early(outcome, scenario))
        missed_over_echo[f"{echo_db}dB"] = statistics.fmean(missed)

    return {
        "false_barge_in_rate_noise_only": false_on_noise,
        "false_barge_in_rate_echo_only": false_on_echo,
        "missed_barge_in_rate_speech_over_noise": missed_over_noise,
        "missed_barge_in_rate_speech_over_echo": missed_over_echo,
        "reaction_ms_p50": percentile(reactions_at_10db_or_better_ms, 0.5) if reactions_at_10db_or_better_ms else None,
        "reaction_ms_p95": percentile(reactions_at_10db_or_better_ms, 0.95) if reactions_at_10db_or_better_ms else None,
        "reactions_measured": len(reactions_at_10db_or_better_ms),
        "reaction_ms_p50_all_snrs": percentile(reactions_ms, 0.5) if reactions_ms else None,
        "reaction_ms_p95_all_snrs": percentile(reactions_ms, 0.95) if reactions_ms else None,
        "cpu_seconds_per_audio_second": cpu_seconds / audio_seconds,
        "audio_seconds": round(audio_seconds, 1),
        "sample_rate": TELEPHONE_RATE,
    }
