"""PCM helpers shared by the voice pipeline: 20 ms framing, resampling, levels and WAV files.

Audio everywhere is signed 16-bit little-endian mono PCM. Telephony runs at 8 kHz, the
recogniser may want 16 kHz, the synthesiser produces whatever its engine likes; these helpers
convert between them without the callers caring about sample formats.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import soxr

FRAME_MS = 20
FRAME_SECONDS = FRAME_MS / 1000
TELEPHONE_RATE = 8000  # the phone line: AudioSocket's slin both ways, Asterisk's sound files
SAMPLE_WIDTH = 2
FULL_SCALE = 32768.0
SILENCE_FLOOR_DBFS = -100.0


def frame_bytes(sample_rate: int) -> int:
    """Bytes in one 20 ms frame at `sample_rate` (320 at 8 kHz, 640 at 16 kHz)."""
    return sample_rate * FRAME_MS // 1000 * SAMPLE_WIDTH


def samples(pcm: bytes) -> np.ndarray:
    """The PCM as int16 samples (a trailing odd byte is ignored)."""
    return np.frombuffer(pcm[: len(pcm) - len(pcm) % SAMPLE_WIDTH], dtype="<i2")


def to_pcm(values: np.ndarray) -> bytes:
    """Float or integer samples back to int16 PCM, saturating instead of wrapping around."""
    return np.clip(np.round(values), -32768, 32767).astype("<i2").tobytes()


class FrameChunker:
    """Re-cuts chunks of any size (even an odd number of bytes) into exact 20 ms frames."""

    def __init__(self, sample_rate: int) -> None:
        self.frame_size = frame_bytes(sample_rate)
        self._pending = bytearray()

    def feed(self, pcm: bytes) -> list[bytes]:
        self._pending.extend(pcm)
        whole = len(self._pending) - len(self._pending) % self.frame_size
        frames = [bytes(self._pending[start:start + self.frame_size]) for start in range(0, whole, self.frame_size)]
        del self._pending[:whole]
        return frames

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)


class Resampler:
    """Streaming resampler: state carries over between chunks, so frame edges leave no clicks."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = None if in_rate == out_rate else soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16")
        self._odd_byte = b""

    def process(self, pcm: bytes, last: bool = False) -> bytes:
        """Resample the next chunk; `last=True` flushes what the filter still holds."""
        if self._stream is None:
            return pcm
        pcm = self._odd_byte + pcm
        self._odd_byte = pcm[len(pcm) - len(pcm) % SAMPLE_WIDTH:]
        return self._stream.resample_chunk(samples(pcm), last=last).astype("<i2").tobytes()


def resample(pcm: bytes, in_rate: int, out_rate: int) -> bytes:
    """One-shot resampling of a whole clip (synthesised prompts, test audio)."""
    if in_rate == out_rate:
        return pcm
    return soxr.resample(samples(pcm), in_rate, out_rate).astype("<i2").tobytes()


def level_dbfs(pcm: bytes) -> float:
    """RMS level relative to a full-scale square wave; digital silence is SILENCE_FLOOR_DBFS."""
    values = samples(pcm).astype(np.float64)
    if values.size == 0:
        return SILENCE_FLOOR_DBFS
    rms = math.sqrt(float(values @ values) / values.size)
    if rms < 1e-9:
        return SILENCE_FLOOR_DBFS
    return max(SILENCE_FLOOR_DBFS, 20.0 * np.log10(rms / FULL_SCALE))


def clipping_ratio(pcm: bytes) -> float:
    """Share of samples at full scale: a hot microphone or a line with too much gain."""
    values = samples(pcm)
    if values.size == 0:
        return 0.0
    return float(np.count_nonzero((values >= 32767) | (values <= -32768)) / values.size)


def read_wav(path: str | Path) -> tuple[bytes, int]:
    """16-bit PCM WAV as mono PCM and its sample rate; stereo is averaged down to mono."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            pcm = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as error:  # float, A-law, mu-law or a truncated header
        raise ValueError(f"{path}: not a 16-bit PCM WAV file ({error})") from error
    if width != SAMPLE_WIDTH:
        raise ValueError(f"{path}: {8 * width}-bit samples; only 16-bit PCM WAV is supported")
    if channels not in (1, 2):
        raise ValueError(f"{path}: {channels} channels; only mono or stereo WAV is supported")
    if channels == 2:
        stereo = samples(pcm).astype(np.int32).reshape(-1, 2)
        pcm = to_pcm(stereo.mean(axis=1))
    return pcm, rate


def write_wav(path: str | Path, pcm: bytes, sample_rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)
