"""Caller speech detection: noise suppression, voice activity and the endpointer.

The chain runs on the DETECTION path only; the recogniser gets the raw audio, because noise
reduction lowers recognition accuracy. Per 20 ms frame:

1. `NoiseSuppressor`: noisereduce's stationary spectral gate, with a noise profile learned from
   this call's own background (frames at the background level, found by minimum statistics),
   kept up to date in a rolling buffer. To halve its CPU cost it works on 40 ms blocks, so the
   detections lag the input by one frame (20 ms).
2. webrtcvad on the suppressed audio: is this frame voiced? Optionally Silero VAD on the raw
   audio must agree before a voiced frame counts towards a start or a barge-in
   (`Detection.confirmed_speech`): webrtcvad calls hold music or a burst of noise voiced,
   Silero does not (babble is speech to both).
3. The endpointer: speech starts when enough of a short window is voiced (so a click or a
   single noisy frame does not open an utterance), ends after `speech_end_silence_ms` of
   silence, and is cut at `max_utterance_ms`. The speech processor may end it earlier, on
   Smart Turn's word after a short silence (`end_utterance`, voice/turn_models.py).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from enum import Enum

import numpy as np
import webrtcvad
from noisereduce.spectralgate.stationary import SpectralGateStationary

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


@dataclass(frozen=True)
class DetectionConfig:
    vad_aggressiveness: int = 3
    speech_start_ms: int = 120
    speech_start_window_ms: int = 200
    speech_end_silence_ms: int = 700
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


def _check_rate(sample_rate: int) -> None:
    if sample_rate not in SUPPORTED_RATES:
        raise ValueError(f"unsupported sample rate {sample_rate} Hz; expected one of {SUPPORTED_RATES}")


class NoiseSuppressor:
    """Stationary spectral gating (noisereduce) with a noise profile from this call's background.

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
        self._gate: SpectralGateStationary | None = None
        self._window: deque[np.ndarray] = deque(maxlen=CONTEXT_FRAMES + BLOCK_FRAMES)
        self._frames_seen = 0
        self._held: bytes | None = None

    def learn(self, frame: bytes) -> None:
        self._profile.append(samples(frame).astype(np.float64))
        self._frames_since_refresh += 1
        enough = len(self._profile) * FRAME_MS >= NOISE_PROFILE_MIN_MS
        if enough and (self._gate is None or self._frames_since_refresh * FRAME_MS >= NOISE_PROFILE_REFRESH_MS):
            self._gate = self._gate_for(np.concatenate(self._profile))
            self._frames_since_refresh = 0

    def _gate_for(self, background: np.ndarray) -> SpectralGateStationary:
        return SpectralGateStationary(
            y=np.zeros(1), sr=self.sample_rate, y_noise=background,
            n_std_thresh_stationary=self.config.noise_threshold_std, chunk_size=background.size,
            clip_noise_stationary=False, padding=0, n_fft=self.n_fft, win_length=None, hop_length=self.n_fft // 2,
            time_constant_s=2.0, freq_mask_smooth_hz=500, time_mask_smooth_ms=50, tmp_folder=None,
            prop_decrease=1.0, use_tqdm=False, n_jobs=1,
        )

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
        if self._gate is not None:
            window = self._gate.spectral_gating_stationary(window[np.newaxis, :])[0]
        block = window[-BLOCK_FRAMES * self._frame_samples:]
        return to_pcm(block[: self._frame_samples]), to_pcm(block[self._frame_samples:])

    def reset(self) -> None:
        self._profile.clear()
        self._gate = None
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
        self._warm_up_frames = NOISE_PROFILE_MIN_MS // FRAME_MS + self.lag_frames if self._suppressor else 0
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
        self._in_speech = False
        self._waiting_for_silence = False  # after a cut, the monologue must stop before a new start
        self._utterance_ms = 0
        self._silence_ms = 0
        self._frames_done = 0
        self._pending_raw_levels: deque[float] = deque([SILENCE_FLOOR_DBFS] * self.lag_frames)
        self._pending_probabilities: deque[float] = deque([0.0] * self.lag_frames)
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
            # Silero hears the raw frame now; the suppressed one is from a frame earlier.
            stream, needed = self._onset
            self._pending_probabilities.append(stream.feed(frame))
            probability = self._pending_probabilities.popleft()
            confirmed = speech and probability >= needed
        event = self._endpoint(speech, confirmed)
        detection = Detection(speech=speech, confirmed_speech=confirmed, event=event, level_db=level_dbfs(suppressed),
                              raw_level_db=self._pending_raw_levels.popleft(), noise_floor_db=noise_floor,
                              noise_floor_settled=self._frames_done * FRAME_MS >= NOISE_FLOOR_SETTLE_MS,
                              in_speech=self._in_speech, frame_index=self._frames_done)
        self._frames_done += 1
        if event is not None:
            log.debug("%s at frame %d (%.0f dBFS)", event.value, detection.frame_index, detection.level_db)
        return detection

    def _track_noise_floor(self, raw_level: float) -> float:
        """Background level by minimum statistics: low percentile of recent frame levels, which
        speech (always above its own background) barely moves."""
        self._recent_levels.append(raw_level)
        return float(np.percentile(self._recent_levels, NOISE_FLOOR_PERCENTILE))

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

    def _close_utterance(self) -> None:
        self._in_speech = False
        self._start_window.clear()
        self._silence_ms = 0
