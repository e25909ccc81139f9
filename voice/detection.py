"""Caller speech detection: noise suppression, voice activity and the endpointer.

The chain runs on the DETECTION path only; the recogniser gets the raw audio, because noise
reduction lowers recognition accuracy. Per 20 ms frame:

1. `NoiseSuppressor`: a stationary spectral gate (noisereduce's algorithm, `StationaryGate`),
   with a noise profile learned from this call's own background (frames at the background
   level, found by minimum statistics), kept up to date in a rolling buffer. To halve its CPU
   cost it works on 40 ms blocks, so the detections lag the input by one frame (20 ms).
2. webrtcvad on the suppressed audio: is this frame voiced? Optionally Silero VAD on the raw
   audio must agree before a voiced frame counts towards a start or a barge-in
   (`Detection.confirmed_speech`): webrtcvad calls hold music or a burst of noise voiced,
   Silero does not (babble is speech to both).
3. The endpointer: speech starts when enough of a short window is voiced (so a click or a
   single noisy frame does not open an utterance), ends after `speech_end_silence_ms` of
   silence, and is cut at `max_utterance_ms`. The speech processor may end it earlier, on
   Smart Turn's word after a short silence (`end_utterance`, voice/turn_models.py). A shorter
   silence, `pause_ms`, is a pause the utterance may end in: the speech processor tells the
   recogniser, and Whisper starts hearing the words so far while the endpointer still waits.
"""

from __future__ import annotations

import bisect
import logging
from collections import deque
from dataclasses import dataclass
from enum import Enum

import numpy as np
import webrtcvad

from voice.audio import FRAME_MS, SILENCE_FLOOR_DBFS, frame_bytes, level_dbfs, samples, to_pcm
from voice.turn_models import SileroStream

log = logging.getLogger(__name__)

SUPPORTED_RATES = (8000, 16000)
NOISE_FLOOR_PERCENTILE = 25  # the quiet quarter of recent frames is background (babble's brief lulls are not)
NOISE_PROFILE_MIN_MS = 200  # less background than this says too little about the noise to gate it
NOISE_PROFILE_REFRESH_MS = 200
NOISE_FLOOR_SETTLE_MS = 1000  # before this the floor has seen too little of the line to compare voices with
BLOCK_FRAMES = 2  # frames denoised together: one STFT per 40 ms instead of per 20 ms
CONTEXT_FRAMES = 2  # earlier frames the STFT sees, so the block is not at the window's edge
# Silero only listens around webrtcvad's speech (its network is most of the detector's CPU):
SILERO_AWAKE_FRAMES = 15  # it goes on this long after webrtcvad's last voiced frame (pauses inside speech)
SILERO_WARM_UP_FRAMES = 8  # woken, it starts afresh on this much audio before the voiced frame (five windows)
GATE_FREQUENCY_SMOOTHING_HZ = 500  # the mask is smoothed over this much spectrum …
GATE_TIME_SMOOTHING_MS = 50  # … and this much time, so it does not chop speech into musical noise
FLOAT_EPSILON = float(np.finfo(np.float64).eps)  # noisereduce's floor under a bin's magnitude
GATE_DB_RANGE = 80.0  # bins more than this below their frequency's loudest count as that much below
# The caller's voice level, from their own utterances (barge-in compares new speech with it):
CALLER_LEVEL_MIN_FRAMES = 15  # an utterance with less confirmed speech than 300 ms says little of the voice
CALLER_LEVEL_PERCENTILE = 90  # the utterance's loudest syllables: its soft ends and stop closures vary most
CALLER_LEVEL_UTTERANCES = 3  # the median of the last three: one shouted or muttered answer does not decide


@dataclass(frozen=True)
class DetectionConfig:
    vad_aggressiveness: int = 3
    speech_start_ms: int = 120
    speech_start_window_ms: int = 200
    speech_end_silence_ms: int = 700
    # Whisper hears an utterance in about 800 ms once it has it: started at this pause, its text is
    # mostly there when the endpointer ends the utterance (kept if nothing more was said). 0: off.
    pause_ms: int = 200
    max_utterance_ms: int = 15000
    noise_suppression: bool = True
    noise_profile_ms: int = 1000
    noise_floor_window_ms: int = 2000
    noise_frame_margin_db: float = 3.0
    noise_threshold_std: float = 1.5

    def __post_init__(self) -> None:
        if not 0 <= self.vad_aggressiveness <= 3:
            raise ValueError(f"vad_aggressiveness must be 0-3, not {self.vad_aggressiveness}")
        if not 0 < self.speech_start_ms <= self.speech_start_window_ms:
            raise ValueError("speech_start_ms must be positive and at most speech_start_window_ms")
        for name in ("speech_end_silence_ms", "max_utterance_ms", "noise_profile_ms", "noise_floor_window_ms"):
            if getattr(self, name) < FRAME_MS:
                raise ValueError(f"{name} must be at least one frame ({FRAME_MS} ms)")
        if self.pause_ms and not FRAME_MS <= self.pause_ms < self.speech_end_silence_ms:
            raise ValueError(f"pause_ms must be 0 (off) or from one frame ({FRAME_MS} ms) to below "
                             f"speech_end_silence_ms ({self.speech_end_silence_ms}), got {self.pause_ms}")


class SpeechEvent(Enum):
    STARTED = "started"
    ENDED = "ended"
    CUT_AT_MAX_LENGTH = "cut_at_max_length"


@dataclass
class Detection:
    """What the detector concluded about one 20 ms frame (`frame_index`, counted from the
    start or the last reset; it lags the frame just passed in by `SpeechDetector.lag_frames`).
    `confirmed_speech`: voiced and, with Silero on, Silero agrees (what may start speech)."""

    speech: bool
    confirmed_speech: bool
    event: SpeechEvent | None
    level_db: float
    raw_level_db: float
    noise_floor_db: float
    noise_floor_settled: bool
    in_speech: bool
    frame_index: int
    caller_level_db: float | None = None  # how loud the caller's own speech was (None: not heard yet)


def _check_rate(sample_rate: int) -> None:
    if sample_rate not in SUPPORTED_RATES:
        raise ValueError(f"unsupported sample rate {sample_rate} Hz; expected one of {SUPPORTED_RATES}")


def _triangle(steps: int) -> np.ndarray:
    """Weights rising over `steps` points to 1 and falling back (2 × steps - 1 points, sum 1)."""
    rising = np.linspace(0, 1, steps + 1, endpoint=False)[1:]
    weights = np.concatenate([rising, [1.0], rising[::-1]])
    return weights / weights.sum()


def _same_convolution(kernel: np.ndarray, size: int) -> np.ndarray:
    """The matrix M with M @ x == np.convolve(x, kernel, mode="same") for x of `size` (odd kernel)."""
    centre = (kernel.size - 1) // 2
    offsets = np.arange(size)[:, np.newaxis] + centre - np.arange(size)[np.newaxis, :]
    inside = (offsets >= 0) & (offsets < kernel.size)
    return np.where(inside, kernel[np.clip(offsets, 0, kernel.size - 1)], 0.0)


class StationaryGate:
    """noisereduce's stationary spectral gate (`SpectralGateStationary`, prop_decrease 1) for one
    fixed block length, without its per-call overheads: a bin passes when its level is above the
    background's mean + `threshold_std` standard deviations at that frequency, and the pass/stop
    mask is smoothed over GATE_FREQUENCY_SMOOTHING_HZ × GATE_TIME_SMOOTHING_MS. The STFT (periodic
    Hann, half overlap, zero-padded ends) and its inverse are scipy's; the separable smoothing
    filter is applied as two small matrix products instead of a 2-D FFT convolution. A test holds
    it to noisereduce's output."""

    def __init__(self, sample_rate: int, n_fft: int, block_samples: int, threshold_std: float) -> None:
        self.n_fft, self.hop = n_fft, n_fft // 2
        if block_samples % self.hop:
            raise ValueError(f"a block of {block_samples} samples is not a whole number of {self.hop}-sample hops")
        self.block_samples = block_samples
        self.window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
        self._spectrum_scale = 1.0 / self.window.sum()  # scipy's "spectrum" scaling, for the dB levels
        frames = block_samples // self.hop + 1
        overlap = np.zeros((frames + 1, self.hop))
        overlap[:-1] += self.window[:self.hop] ** 2
        overlap[1:] += self.window[self.hop:] ** 2
        self._overlap = np.where(overlap > 1e-10, overlap, 1.0).ravel()
        frequency_steps = int(GATE_FREQUENCY_SMOOTHING_HZ / (sample_rate / self.hop))
        time_steps = int(GATE_TIME_SMOOTHING_MS / (1000 * self.hop / sample_rate))
        self._smooth_frequency = _same_convolution(_triangle(frequency_steps), n_fft // 2 + 1).T
        self._smooth_time = _same_convolution(_triangle(time_steps), frames)
        self.threshold_std = threshold_std
        self.threshold_db: np.ndarray | None = None  # per frequency; None: no background heard yet

    def learn(self, background: np.ndarray) -> None:
        """Take the background's levels (replacing what was learnt before)."""
        background_db = self._levels_db(np.fft.rfft(self._frames(background, trailing=False), axis=1))
        self.threshold_db = background_db.mean(axis=0) + self.threshold_std * background_db.std(axis=0)

    def _frames(self, signal: np.ndarray, trailing: bool = True) -> np.ndarray:
        """Windowed STFT frames (time × samples) of the zero-padded signal; `trailing=False` drops
        a last partial frame (scipy's `padded=False`)."""
        edge = self.n_fft // 2
        count = (signal.size + edge) // self.hop if trailing else signal.size // self.hop + 1
        padded = np.zeros((count + 1) * self.hop)
        padded[edge:edge + signal.size] = signal[:padded.size - edge]
        halves = padded.reshape(-1, self.hop)  # hop = half a frame: frame i is halves i and i + 1
        return np.concatenate([halves[:-1], halves[1:]], axis=1) * self.window

    def _levels_db(self, spectrum: np.ndarray) -> np.ndarray:
        levels = 20 * np.log10(np.abs(spectrum) * self._spectrum_scale + FLOAT_EPSILON)
        return np.maximum(levels, levels.max(axis=0, keepdims=True) - GATE_DB_RANGE)

    def forget(self) -> None:
        self.threshold_db = None

    def apply(self, block: np.ndarray) -> np.ndarray:
        """The gated block (`block_samples` float samples in, as many out); after `learn`."""
        if self.threshold_db is None:
            raise RuntimeError("StationaryGate.apply before learn: no background to gate against")
        spectrum = np.fft.rfft(self._frames(block), axis=1)
        mask = (self._levels_db(spectrum) > self.threshold_db).astype(np.float64)
        mask = self._smooth_time @ mask @ self._smooth_frequency
        frames = np.fft.irfft(spectrum * mask, n=self.n_fft, axis=1) * self.window
        halves = np.zeros((frames.shape[0] + 1, self.hop))  # overlap-add, half a frame at a time
        halves[:-1] += frames[:, :self.hop]
        halves[1:] += frames[:, self.hop:]
        edge = self.n_fft // 2
        return (halves.ravel() / self._overlap)[edge:edge + self.block_samples]


class NoiseSuppressor:
    """Stationary spectral gating with a noise profile from this call's background.

    `learn` adds a frame known to be background to the rolling profile; `process` returns the
    suppressed audio of the frame passed in one call earlier (the 40 ms block needs its second
    half). Until the profile holds NOISE_PROFILE_MIN_MS of background, audio passes unchanged.
    """

    def __init__(self, sample_rate: int, config: DetectionConfig) -> None:
        _check_rate(sample_rate)
        self.sample_rate = sample_rate
        self.config = config
        self.n_fft = 256 * sample_rate // 8000  # 32 ms: enough frequency resolution to gate hum and hiss
        self._frame_samples = frame_bytes(sample_rate) // 2
        self._profile: deque[np.ndarray] = deque(maxlen=config.noise_profile_ms // FRAME_MS)
        self._frames_since_refresh = 0
        self._gate = StationaryGate(sample_rate, self.n_fft, (CONTEXT_FRAMES + BLOCK_FRAMES) * self._frame_samples,
                                    config.noise_threshold_std)
        self._window: deque[np.ndarray] = deque(maxlen=CONTEXT_FRAMES + BLOCK_FRAMES)
        self._frames_seen = 0
        self._held: bytes | None = None

    def learn(self, frame: bytes) -> None:
        self._profile.append(samples(frame).astype(np.float64))
        self._frames_since_refresh += 1
        enough = len(self._profile) * FRAME_MS >= NOISE_PROFILE_MIN_MS
        stale = self._frames_since_refresh * FRAME_MS >= NOISE_PROFILE_REFRESH_MS
        if enough and (self._gate.threshold_db is None or stale):
            self._gate.learn(np.concatenate(self._profile))
            self._frames_since_refresh = 0

    def process(self, frame: bytes) -> bytes:
        """The suppressed frame from one call earlier (silence on the very first call)."""
        self._window.append(samples(frame).astype(np.float64))
        self._frames_seen += 1
        if self._frames_seen % BLOCK_FRAMES:
            earlier, self._held = self._held, None
            return earlier if earlier is not None else bytes(len(frame))
        earlier, self._held = self._suppress_block()
        return earlier

    def _suppress_block(self) -> tuple[bytes, bytes]:
        window = np.concatenate(self._window)
        if self._gate.threshold_db is not None and window.size == self._gate.block_samples:
            window = self._gate.apply(window)
        block = window[-BLOCK_FRAMES * self._frame_samples:]
        return to_pcm(block[: self._frame_samples]), to_pcm(block[self._frame_samples:])

    def reset(self) -> None:
        self._profile.clear()
        self._gate.forget()
        self._frames_since_refresh = 0
        self._window.clear()
        self._frames_seen = 0
        self._held = None


class SpeechDetector:
    """Suppressor → webrtcvad (→ Silero) → endpointer, one 20 ms frame at a time, for one call.
    `onset`: the call's Silero stream and the probability a frame needs for its speech to count
    towards a start; None: webrtcvad alone."""

    def __init__(self, sample_rate: int, config: DetectionConfig | None = None,
                 onset: tuple[SileroStream, float] | None = None) -> None:
        _check_rate(sample_rate)
        self.sample_rate = sample_rate
        self.config = config or DetectionConfig()
        self._onset = onset
        self.frame_size = frame_bytes(sample_rate)
        self._vad = webrtcvad.Vad(self.config.vad_aggressiveness)
        self._suppressor = NoiseSuppressor(sample_rate, self.config) if self.config.noise_suppression else None
        self._start_window: deque[bool] = deque(maxlen=self.config.speech_start_window_ms // FRAME_MS)
        self._recent_levels: deque[float] = deque(maxlen=self.config.noise_floor_window_ms // FRAME_MS)
        self._sorted_levels: list[float] = []  # the same levels in order: a percentile without sorting each frame
        self._warm_up_frames = NOISE_PROFILE_MIN_MS // FRAME_MS + self.lag_frames if self._suppressor else 0
        self._unheard: deque[bytes] = deque(maxlen=SILERO_WARM_UP_FRAMES + self.lag_frames)  # not yet fed to Silero
        self._utterance_levels: list[float] = []  # the open utterance's confirmed speech frames
        self._caller_levels: deque[float] = deque(maxlen=CALLER_LEVEL_UTTERANCES)
        self.reset()

    @property
    def lag_frames(self) -> int:
        """How many frames the detections trail the input (the suppressor's 40 ms blocks)."""
        return 1 if self._suppressor is not None else 0

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def silence_ms(self) -> int:
        """Silence so far at the end of the open utterance."""
        return self._silence_ms if self._in_speech else 0

    @property
    def caller_level_db(self) -> float | None:
        """The caller's voice: the median over their last utterances of each one's level of its
        loudest syllables (suppressed dBFS); None until an utterance held enough speech."""
        return self._caller_level

    @property
    def utterance_ms(self) -> int:
        """Length of the open utterance, from the start of the window that opened it."""
        return self._utterance_ms if self._in_speech else 0

    def reset(self) -> None:
        """Forget the call so far: a new call, or the line changed (transfer, hold music ended)."""
        self._vad.set_mode(self.config.vad_aggressiveness)
        if self._suppressor is not None:
            self._suppressor.reset()
        self._start_window.clear()
        self._recent_levels.clear()
        self._sorted_levels.clear()
        self._in_speech = False
        self._waiting_for_silence = False  # after a cut, the monologue must stop before a new start
        self._utterance_ms = 0
        self._silence_ms = 0
        self._frames_done = 0
        self._pending_raw_levels: deque[float] = deque([SILENCE_FLOOR_DBFS] * self.lag_frames)
        self._unheard.clear()
        self._utterance_levels.clear()
        self._caller_levels.clear()
        self._caller_level: float | None = None
        self._silero_listening = False
        self._unvoiced_frames = SILERO_AWAKE_FRAMES + 1
        if self._onset is not None:
            self._onset[0].reset()

    def process(self, frame: bytes) -> Detection:
        if len(frame) != self.frame_size:
            raise ValueError(f"SpeechDetector.process takes one {FRAME_MS} ms frame: {self.frame_size} bytes at "
                             f"{self.sample_rate} Hz, got {len(frame)} bytes (cut the audio with FrameChunker first)")
        raw_level = level_dbfs(frame)
        noise_floor = self._track_noise_floor(raw_level)
        if self._suppressor is None:
            suppressed = frame
        else:
            if SILENCE_FLOOR_DBFS < raw_level <= noise_floor + self.config.noise_frame_margin_db:
                self._suppressor.learn(frame)
            suppressed = self._suppressor.process(frame)
        self._pending_raw_levels.append(raw_level)
        # Until the suppressor has heard some background, the VAD would take loud noise for speech.
        warming_up = self._frames_done < self._warm_up_frames
        speech = not warming_up and self._vad.is_speech(suppressed, self.sample_rate)
        confirmed = speech
        if self._onset is not None:
            self._unheard.append(frame)
            confirmed = speech and self._onset_probability(speech) >= self._onset[1]
        level = level_dbfs(suppressed)
        if self._in_speech and confirmed:
            self._utterance_levels.append(level)
        event = self._endpoint(speech, confirmed)
        detection = Detection(speech=speech, confirmed_speech=confirmed, event=event, level_db=level,
                              raw_level_db=self._pending_raw_levels.popleft(), noise_floor_db=noise_floor,
                              noise_floor_settled=self._frames_done * FRAME_MS >= NOISE_FLOOR_SETTLE_MS,
                              in_speech=self._in_speech, frame_index=self._frames_done,
                              caller_level_db=self.caller_level_db)
        self._frames_done += 1
        if event is not None:
            log.debug("%s at frame %d (%.0f dBFS)", event.value, detection.frame_index, detection.level_db)
        return detection

    def _onset_probability(self, speech: bool) -> float:
        """Silero's speech probability at the frame webrtcvad just judged (`lag_frames` behind the
        input; Silero hears the raw frames). Only speech needs it: Silero sleeps after
        SILERO_AWAKE_FRAMES unvoiced frames and, woken by a voiced one, starts afresh on the
        SILERO_WARM_UP_FRAMES before it (its stream resets after quiet stretches all the same)."""
        self._unvoiced_frames = 0 if speech else self._unvoiced_frames + 1
        if self._unvoiced_frames > SILERO_AWAKE_FRAMES:
            self._silero_listening = False
            return 0.0
        stream = self._onset[0]
        if not self._silero_listening:
            stream.reset()
            self._silero_listening = True
        probability = stream.probability
        while len(self._unheard) > self.lag_frames:
            probability = stream.feed(self._unheard.popleft())
        return probability

    def _track_noise_floor(self, raw_level: float) -> float:
        """Background level by minimum statistics: low percentile of recent frame levels, which
        speech (always above its own background) barely moves."""
        if len(self._recent_levels) == self._recent_levels.maxlen:
            del self._sorted_levels[bisect.bisect_left(self._sorted_levels, self._recent_levels[0])]
        self._recent_levels.append(raw_level)
        bisect.insort(self._sorted_levels, raw_level)
        # np.percentile's default (linear interpolation between the closest ranks)
        rank = (len(self._sorted_levels) - 1) * NOISE_FLOOR_PERCENTILE / 100
        below = int(rank)
        above = min(below + 1, len(self._sorted_levels) - 1)
        return self._sorted_levels[below] + (self._sorted_levels[above] - self._sorted_levels[below]) * (rank - below)

    def _endpoint(self, speech: bool, confirmed: bool) -> SpeechEvent | None:
        config = self.config
        if not self._in_speech:
            self._start_window.append(confirmed)
            if self._waiting_for_silence:
                self._silence_ms = 0 if speech else self._silence_ms + FRAME_MS
                if self._silence_ms < config.speech_end_silence_ms:
                    return None
                self._waiting_for_silence = False
                self._start_window.clear()
            if sum(self._start_window) * FRAME_MS < config.speech_start_ms:
                return None
            self._in_speech = True
            self._utterance_ms = len(self._start_window) * FRAME_MS
            self._silence_ms = 0
            return SpeechEvent.STARTED
        self._utterance_ms += FRAME_MS
        self._silence_ms = 0 if speech else self._silence_ms + FRAME_MS
        if self._silence_ms >= config.speech_end_silence_ms:
            self._close_utterance()
            return SpeechEvent.ENDED
        if self._utterance_ms >= config.max_utterance_ms:
            self._close_utterance()
            self._waiting_for_silence = True
            return SpeechEvent.CUT_AT_MAX_LENGTH
        return None

    def start_utterance(self) -> None:
        """Open an utterance now: a barge-in can be sure of speech before the endpointer's start
        window is; the utterance then ends as any other, after `speech_end_silence_ms`."""
        if not self._in_speech:
            self._in_speech = True
            self._waiting_for_silence = False
            self._utterance_ms = len(self._start_window) * FRAME_MS
            self._silence_ms = 0

    def end_utterance(self) -> None:
        """Close the open utterance now: Smart Turn judged the caller's turn complete before the
        configured silence ran out. The next utterance starts as any other."""
        if self._in_speech:
            self._close_utterance()

    def abandon_utterance(self) -> None:
        """Forget the open utterance, or the start of one: it was the bot's own voice coming back
        (the VAD takes echo for voice). Nothing of it is learnt as the caller's level."""
        self._utterance_levels.clear()
        self._in_speech = self._waiting_for_silence = False
        self._start_window.clear()
        self._silence_ms = 0

    def _close_utterance(self) -> None:
        if len(self._utterance_levels) >= CALLER_LEVEL_MIN_FRAMES:
            self._caller_levels.append(float(np.percentile(self._utterance_levels, CALLER_LEVEL_PERCENTILE)))
            self._caller_level = float(np.median(self._caller_levels))
        self._utterance_levels.clear()
        self._in_speech = False
        self._start_window.clear()
        self._silence_ms = 0
