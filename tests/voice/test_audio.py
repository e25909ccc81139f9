"""PCM helpers: framing, resampling, levels, WAV files."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from bench import samples
from voice.audio import (
    FrameChunker,
    Resampler,
    clipping_ratio,
    frame_bytes,
    level_dbfs,
    read_wav,
    resample,
    to_pcm,
    write_wav,
)


def tone(frequency: float, seconds: float, rate: int, amplitude: float = 0.5) -> bytes:
    time_axis = np.arange(int(seconds * rate)) / rate
    return to_pcm(amplitude * 32767 * np.sin(2 * np.pi * frequency * time_axis))


def dominant_frequency(pcm: bytes, rate: int) -> float:
    values = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(values * np.hanning(values.size)))
    return float(np.fft.rfftfreq(values.size, 1 / rate)[np.argmax(spectrum)])


def test_frame_sizes_are_20ms_of_16_bit_samples():
    assert frame_bytes(8000) == 320
    assert frame_bytes(16000) == 640


def test_odd_chunk_sizes_are_recut_into_20ms_frames():
    pcm = bytes(range(256)) * 40  # 10240 bytes = 32 frames at 8 kHz, with a recognisable pattern
    chunker = FrameChunker(8000)
    frames: list[bytes] = []
    position = 0
    for size in [1, 7, 319, 321, 2, 1000, 333, 5, 641] * 10:
        frames += chunker.feed(pcm[position:position + size])
        position += size
        if position >= len(pcm):
            break
    assert all(len(frame) == 320 for frame in frames)
    assert b"".join(frames) + pcm[len(frames) * 320:] == pcm  # nothing lost, nothing reordered
    assert chunker.pending_bytes == len(pcm) - len(frames) * 320


def test_streaming_resampling_matches_one_shot_resampling():
    pcm = tone(440, 1.0, 8000)
    resampler = Resampler(8000, 16000)
    streamed = b"".join(resampler.process(pcm[start:start + 333]) for start in range(0, len(pcm), 333))
    streamed += resampler.process(b"", last=True)
    one_shot = resample(pcm, 8000, 16000)
    assert abs(len(streamed) - len(one_shot)) <= 4
    assert dominant_frequency(streamed, 16000) == pytest.approx(440, abs=5)
    assert dominant_frequency(one_shot, 16000) == pytest.approx(440, abs=5)


def test_resampling_between_equal_rates_returns_the_audio_unchanged():
    pcm = tone(300, 0.1, 8000)
    assert Resampler(8000, 8000).process(pcm) == pcm
    assert resample(pcm, 8000, 8000) == pcm


def test_levels_are_rms_dbfs_with_a_floor_for_digital_silence():
    assert level_dbfs(bytes(320)) == -100.0
    assert level_dbfs(b"") == -100.0
    full_square = np.full(160, 32767, dtype="<i2").tobytes()
    assert level_dbfs(full_square) == pytest.approx(0.0, abs=0.01)
    assert level_dbfs(tone(1000, 0.1, 8000, amplitude=0.1)) == pytest.approx(-23.0, abs=0.2)  # sine: -3 dB


def test_clipping_ratio_counts_samples_at_full_scale():
    assert clipping_ratio(tone(1000, 0.1, 8000, amplitude=0.5)) == 0.0
    hot = samples.scaled(tone(1000, 0.1, 8000, amplitude=0.5), 20.0)
    assert 0.5 < clipping_ratio(hot) < 1.0


def test_wav_files_round_trip_and_stereo_is_downmixed(tmp_path):
    pcm = tone(500, 0.2, 8000)
    write_wav(tmp_path / "mono.wav", pcm, 8000)
    assert read_wav(tmp_path / "mono.wav") == (pcm, 8000)

    left = np.frombuffer(pcm, dtype="<i2")
    stereo = np.stack([left, np.zeros_like(left)], axis=1).astype("<i2").tobytes()
    with wave.open(str(tmp_path / "stereo.wav"), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(stereo)
    mono, rate = read_wav(tmp_path / "stereo.wav")
    assert rate == 16000
    assert level_dbfs(mono) == pytest.approx(level_dbfs(pcm) - 6.02, abs=0.1)


def test_unsupported_wav_files_are_a_clear_error(tmp_path):
    with wave.open(str(tmp_path / "8bit.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(8000)
        wav.writeframes(bytes(800))
    with pytest.raises(ValueError, match="only 16-bit PCM"):
        read_wav(tmp_path / "8bit.wav")
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(ValueError, match="not a 16-bit PCM WAV"):
        read_wav(tmp_path / "text.wav")
