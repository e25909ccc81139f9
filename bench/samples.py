"""Deterministic test audio for the voice pipeline: Mandarin speech, noise, babble and echo.

Speech comes from espeak-ng's Mandarin voice (or Kokoro's, `natural_speech`), noise from sox;
renders are cached as WAV files under a directory (default var/test-audio/, git-ignored), so
only the first run pays for the subprocesses. Everything is reproducible: sox runs in repeatable mode (-R), espeak-ng is
deterministic, and babble offsets come from a seeded generator.

Levels: caller speech and the bot's playback are both normalised to SPEECH_LEVEL_DBFS over the
active speech; noise "at N dB SNR" sits N dB below that level, echo "at -10 dB" is the bot's
playback delayed by ECHO_DELAY_MS and attenuated by 10 dB.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from voice.audio import FRAME_MS, TELEPHONE_RATE, frame_bytes, read_wav, resample, samples, to_pcm, write_wav
from voice.barge_in import BargeInConfig, BargeInDetector, BargeInState
from voice.detection import DetectionConfig, SpeechDetector, SpeechEvent
from voice.turn_models import SileroStream

if TYPE_CHECKING:
    from voice.kokoro import KokoroVoice

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = ROOT / "var" / "test-audio"

SENTENCES = (
    "我想查一下我的账单",
    "帮我转人工",
    "我要提前还款",
    "我的额度还有多少",
    "这个月的还款日是哪天",
    "我要投诉",
)
BOT_PROMPT = "您好，这里是消费金融智能客服，请问有什么可以帮您"
BABBLE_TALKERS = (  # (sentence, voice variant, pitch, words per minute)
    ("今天天气怎么样我们去哪里吃饭", "cmn+m3", 35, 160),
    ("你把那个文件发给我看一下", "cmn+f2", 70, 185),
    ("下午三点开会别忘了带电脑", "cmn+m1", 50, 200),
    ("孩子的作业写完了没有", "cmn+f4", 80, 170),
    ("车子停在楼下的停车场", "cmn+m7", 40, 190),
    ("周末一起去超市买东西吧", "cmn+f1", 60, 175),
)
NOISE_KINDS = ("white", "pink", "brown", "babble")
SPEECH_LEVEL_DBFS = -20.0
ECHO_DELAY_MS = 60
ONSET_THRESHOLD_DBFS = -45.0  # a frame this loud after normalisation counts as the start of speech


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} is not installed (apt-get install {tool})")
    return path


def _cached(cache_dir: Path, key: str, render) -> tuple[bytes, int]:
    """The WAV cached under a hash of `key`, rendered into it by `render(path)` on first use."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.wav"
    if not path.exists():
        with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
            scratch_path = Path(scratch) / "render.wav"
            render(scratch_path)
            scratch_path.replace(path)  # atomic, so parallel test runs never read half a file
    return read_wav(path)


def active_level_dbfs(pcm: bytes, sample_rate: int) -> float:
    """RMS level over the 20 ms frames within 30 dB of the loudest one (pauses do not count)."""
    values = samples(pcm).astype(np.float64)
    size = frame_bytes(sample_rate) // 2
    frames = values[: len(values) // size * size].reshape(-1, size)
    energy = np.mean(frames * frames, axis=1)
    active = energy[energy >= energy.max() / 1000.0]
    return float(10.0 * np.log10(np.mean(active) / 32768.0**2))


def scaled(pcm: bytes, gain_db: float) -> bytes:
    return to_pcm(samples(pcm).astype(np.float64) * 10.0 ** (gain_db / 20.0))


def normalised(pcm: bytes, sample_rate: int, level_dbfs: float = SPEECH_LEVEL_DBFS) -> bytes:
    return scaled(pcm, level_dbfs - active_level_dbfs(pcm, sample_rate))


def _trim_leading_silence(pcm: bytes, sample_rate: int) -> bytes:
    values = samples(pcm).astype(np.float64)
    threshold = 32768.0 * 10.0 ** (ONSET_THRESHOLD_DBFS / 20.0)
    loud = np.flatnonzero(np.abs(values) > threshold)
    start = max(0, int(loud[0]) - sample_rate // 100) if loud.size else 0  # keep 10 ms of lead-in
    return to_pcm(values[start:])


def speech(sentence: str, rate: int = TELEPHONE_RATE, *, voice: str = "cmn", pitch: int = 50,
           words_per_minute: int = 175, cache_dir: Path = DEFAULT_CACHE) -> bytes:
    """A sentence spoken by espeak-ng, starting right away (leading silence trimmed), at
    SPEECH_LEVEL_DBFS."""
    espeak = _require("espeak-ng")

    def render(path: Path) -> None:
        subprocess.run([espeak, "-v", voice, "-p", str(pitch), "-s", str(words_per_minute), "-w", str(path), sentence],
                       check=True, capture_output=True, timeout=60)

    raw, raw_rate = _cached(cache_dir, f"espeak|{voice}|{pitch}|{words_per_minute}|{sentence}", render)
    pcm = _trim_leading_silence(resample(raw, raw_rate, rate), rate)
    return normalised(pcm, rate)


def natural_speech(sentence: str, rate: int = TELEPHONE_RATE, *, voice: str = "jf_gongitsune",
                   cache_dir: Path = DEFAULT_CACHE) -> bytes:
    """A sentence in Kokoro's voice (voice/kokoro.py: about a CPU-second per sentence the first
    time, cached after), leading silence trimmed, at SPEECH_LEVEL_DBFS. Its intonation rises and
    falls like a person's, which an end-of-turn model listens to and espeak-ng's does not."""
    def render(path: Path) -> None:
        write_wav(path, _kokoro(voice, os.getpid()).render(sentence, sample_rate=rate), rate)

    pcm, _ = _cached(cache_dir, f"kokoro|{voice}|{rate}|{sentence}", render)
    return normalised(_trim_leading_silence(pcm, rate), rate)


@functools.cache
def _kokoro(voice: str, process: int) -> KokoroVoice:
    """One Kokoro per voice and process (a forked child builds its own ONNX Runtime session):
    loading it costs about as much CPU as rendering a sentence."""
    from voice.kokoro import KokoroConfig, KokoroVoice  # the model loads only when a sentence is rendered

    return KokoroVoice(KokoroConfig(voice=voice))


def lengthen_pause(pcm: bytes, pause_s: float, rate: int = TELEPHONE_RATE) -> bytes:
    """The clip with its longest pause inside the speech (frames below ONSET_THRESHOLD_DBFS)
    made `pause_s` long: 我想查一下……我的账单 with the hesitation a caller may make."""
    values = samples(pcm).astype(np.float64)
    size = frame_bytes(rate) // 2
    frames_count = values.size // size
    energy = np.mean(values[: frames_count * size].reshape(-1, size) ** 2, axis=1)
    quiet = 10.0 * np.log10(np.maximum(energy, 1e-12) / 32768.0**2) < ONSET_THRESHOLD_DBFS
    loud = np.flatnonzero(~quiet)
    best: tuple[int, int] = (0, 0)  # (first quiet frame, length) of the longest pause between loud frames
    start: int | None = None
    for index in range(int(loud[0]), int(loud[-1]) + 1) if loud.size else ():
        if quiet[index] and start is None:
            start = index
        elif not quiet[index] and start is not None:
            best = max(best, (start, index - start), key=lambda pause: pause[1])
            start = None
    if not best[1]:
        raise ValueError("the clip has no pause inside its speech")
    middle = (best[0] + best[1] // 2) * size
    added = max(0, int(pause_s * rate) - best[1] * size)
    return to_pcm(np.concatenate([values[:middle], np.zeros(added), values[middle:]]))


def _sox_noise(kind: str, seconds: float, rate: int, cache_dir: Path) -> bytes:
    sox = _require("sox")

    def render(path: Path) -> None:
        subprocess.run([sox, "-R", "-n", "-r", str(rate), "-b", "16", "-c", "1", str(path),
                        "synth", f"{seconds:.3f}", f"{kind}noise"], check=True, capture_output=True, timeout=60)

    return _cached(cache_dir, f"sox|{kind}|{seconds:.3f}|{rate}", render)[0]


def _babble(seconds: float, rate: int, seed: int, cache_dir: Path) -> bytes:
    """Several talkers, each looping their sentence from a random offset, summed."""
    generator = np.random.default_rng(seed)
    length = int(seconds * rate)
    mix = np.zeros(length)
    for sentence, voice, pitch, words_per_minute in BABBLE_TALKERS:
        talker = samples(speech(sentence, rate, voice=voice, pitch=pitch, words_per_minute=words_per_minute,
                                cache_dir=cache_dir)).astype(np.float64)
        talker = np.concatenate([talker, np.zeros(int(0.15 * rate))])  # breath between repetitions
        looped = np.tile(talker, length // talker.size + 2)
        offset = int(generator.integers(0, talker.size))
        mix += looped[offset:offset + length]
    return to_pcm(mix)


def noise(kind: str, seconds: float, rate: int = TELEPHONE_RATE, *, seed: int = 0,
          cache_dir: Path = DEFAULT_CACHE) -> bytes:
    """`seconds` of white, pink, brown or babble noise at SPEECH_LEVEL_DBFS (mix or scale it
    down to the SNR wanted). Different seeds give different stretches of the same noise."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {', '.join(NOISE_KINDS)}")
    if kind == "babble":
        return normalised(_babble(seconds, rate, seed, cache_dir), rate)
    pool_seconds = 60.0  # one long render per kind; seeds pick different stretches of it
    pool = samples(_sox_noise(kind, pool_seconds, rate, cache_dir))
    length = int(seconds * rate)
    if length > pool.size:
        raise ValueError(f"at most {pool_seconds:.0f} s of {kind} noise per clip")
    offset = int(np.random.default_rng(seed).integers(0, pool.size - length + 1))
    return normalised(pool[offset:offset + length].tobytes(), rate)


def chord(seconds: float, rate: int = TELEPHONE_RATE) -> bytes:
    """Four notes held together (hold music, a television jingle), 5 dB below a caller: voiced
    to webrtcvad, no speech to Silero."""
    times = np.arange(int(seconds * rate)) / rate
    notes = sum(np.sin(2 * np.pi * frequency * times) for frequency in (262, 330, 392, 523))
    return normalised(to_pcm(notes * 1000), rate, SPEECH_LEVEL_DBFS - 5)


def silence(seconds: float, rate: int = TELEPHONE_RATE) -> bytes:
    return bytes(2 * int(seconds * rate))


def mix(*tracks: bytes) -> bytes:
    """Sum tracks sample by sample; shorter ones are padded with silence."""
    arrays = [samples(track).astype(np.float64) for track in tracks]
    total = np.zeros(max(array.size for array in arrays))
    for array in arrays:
        total[: array.size] += array
    return to_pcm(total)


def delayed(pcm: bytes, seconds: float, rate: int = TELEPHONE_RATE) -> bytes:
    return silence(seconds, rate) + pcm


def mix_at_snr(signal: bytes, noise_pcm: bytes, snr_db: float, rate: int = TELEPHONE_RATE) -> bytes:
    """Signal plus noise scaled so the signal's active level is `snr_db` above the noise."""
    noise_gain = active_level_dbfs(signal, rate) - snr_db - active_level_dbfs(noise_pcm, rate)
    return mix(signal, scaled(noise_pcm, noise_gain))


@dataclass(frozen=True)
class Scenario:
    """What reaches the detectors: the caller's line, what the bot played meanwhile (the echo
    reference, None when the bot is silent) and when the caller started speaking (None: never)."""

    caller: bytes
    bot: bytes | None
    onset_s: float | None
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.caller) / 2 / self.rate


def bot_prompt(rate: int = TELEPHONE_RATE, cache_dir: Path = DEFAULT_CACHE) -> bytes:
    return speech(BOT_PROMPT, rate, voice="cmn+f3", pitch=60, cache_dir=cache_dir)


def speech_over_noise(sentence: str, kind: str, snr_db: float, rate: int = TELEPHONE_RATE, *, onset_s: float = 1.5,
                      tail_s: float = 1.5, seed: int = 0, cache_dir: Path = DEFAULT_CACHE) -> Scenario:
    """Noise from the start, the caller speaking from `onset_s`, then `tail_s` of noise again."""
    spoken = delayed(speech(sentence, rate, cache_dir=cache_dir), onset_s, rate)
    seconds = len(spoken) / 2 / rate + tail_s
    background = scaled(noise(kind, seconds, rate, seed=seed, cache_dir=cache_dir), -snr_db)
    return Scenario(mix(spoken, background), None, onset_s, rate)


def noise_only(kind: str, snr_db: float, seconds: float, rate: int = TELEPHONE_RATE, *, seed: int = 0,
               cache_dir: Path = DEFAULT_CACHE) -> Scenario:
    """Noise at the level it would have `snr_db` below a caller speaking at SPEECH_LEVEL_DBFS."""
    background = scaled(noise(kind, seconds, rate, seed=seed, cache_dir=cache_dir), -snr_db)
    return Scenario(background, None, None, rate)


def _echo(prompt: bytes, echo_db: float, delay_ms: int, rate: int) -> bytes:
    return scaled(delayed(prompt, delay_ms / 1000.0, rate), echo_db)


def echo_only(echo_db: float, rate: int = TELEPHONE_RATE, *, delay_ms: int = ECHO_DELAY_MS,
              noise_kind: str | None = None, snr_db: float = 30.0, seed: int = 0,
              cache_dir: Path = DEFAULT_CACHE) -> Scenario:
    """The bot's prompt coming back on the caller's line, `echo_db` relative to its playback,
    optionally over background noise `snr_db` below a caller's speaking level."""
    prompt = bot_prompt(rate, cache_dir)
    caller = _echo(prompt, echo_db, delay_ms, rate)
    if noise_kind is not None:
        caller = mix(caller, scaled(noise(noise_kind, len(caller) / 2 / rate, rate, seed=seed, cache_dir=cache_dir),
                                    -snr_db))
    return Scenario(caller, prompt, None, rate)


def speech_over_echo(sentence: str, echo_db: float, rate: int = TELEPHONE_RATE, *, onset_s: float = 1.2,
                     delay_ms: int = ECHO_DELAY_MS, noise_kind: str | None = None, snr_db: float = 20.0, seed: int = 0,
                     cache_dir: Path = DEFAULT_CACHE) -> Scenario:
    """The bot speaking (its echo on the line) and the caller cutting in at `onset_s`,
    optionally over background noise `snr_db` below the caller."""
    prompt = bot_prompt(rate, cache_dir)
    spoken = delayed(speech(sentence, rate, cache_dir=cache_dir), onset_s, rate)
    caller = mix(_echo(prompt, echo_db, delay_ms, rate), spoken)
    if noise_kind is not None:
        background = scaled(noise(noise_kind, len(caller) / 2 / rate, rate, seed=seed, cache_dir=cache_dir), -snr_db)
        caller = mix(caller, background)
    return Scenario(caller, prompt, onset_s, rate)


def frames(pcm: bytes, rate: int = TELEPHONE_RATE) -> list[bytes]:
    """Whole 20 ms frames of a clip (a partial last frame is dropped)."""
    size = frame_bytes(rate)
    return [pcm[start:start + size] for start in range(0, len(pcm) - size + 1, size)]


@dataclass
class Outcome:
    """What the detectors did over a scenario; times are in ms of input audio, taken when the
    decision was available (after the frame that caused it was passed in)."""

    events: list[tuple[SpeechEvent, int]]
    barge_in_ms: int | None
    voiced_frames: int

    def times(self, event: SpeechEvent) -> list[int]:
        return [at for kind, at in self.events if kind is event]


def play(scenario: Scenario, detection: DetectionConfig | None = None,
         barge_in: BargeInConfig | None = None, onset: tuple[SileroStream, float] | None = None,
         bot_speaks_from_s: float = 0.0) -> Outcome:
    """Run a scenario through SpeechDetector and, while the bot "speaks" (from `bot_speaks_from_s`
    to the end), BargeInDetector, the way the pipeline does frame by frame; `onset`: Silero
    confirms speech."""
    detector = SpeechDetector(scenario.rate, detection, onset)
    barge_in_detector = BargeInDetector(scenario.rate, barge_in)
    bot_frames = frames(scenario.bot, scenario.rate) if scenario.bot is not None else []
    silent_frame = bytes(frame_bytes(scenario.rate))
    outcome = Outcome([], None, 0)
    first_bot_frame = round(bot_speaks_from_s * 1000 / FRAME_MS)
    for index, frame in enumerate(frames(scenario.caller, scenario.rate)):
        detected = detector.process(frame)
        decided_at_ms = (index + 1) * FRAME_MS
        outcome.voiced_frames += detected.speech
        if detected.event is not None:
            outcome.events.append((detected.event, decided_at_ms))
        if index < first_bot_frame:
            continue
        barge_in_detector.bot_audio(bot_frames[index] if index < len(bot_frames) else silent_frame)
        state = barge_in_detector.caller_audio(detected)
        if state is BargeInState.BARGE_IN and outcome.barge_in_ms is None:
            outcome.barge_in_ms = decided_at_ms
    return outcome
