"""How intelligible the bot's voices are, and what Kokoro's pre-rendering costs.

Twenty of the phone channel's fixed prompts (voice.yaml's and the flows', in catalogue order),
each rendered at the phone's 8 kHz by Kokoro (the pre-rendered voice) and by espeak-ng (the live
voice), both with the polyphone dictionary, are transcribed by Whisper base (brought back to
16 kHz as the recogniser gets call audio; greedy, the worker's settings). The character error
rate against the prompt's own text (both through Whisper's text clean-up: Simplified, no
punctuation) measures intelligibility: it is a machine listener's, not a caller's, but it
ranks voices. Kokoro's CPU per second of audio is measured on the same renders, one ONNX
Runtime thread as the background prerender uses. `python -m bench.tts_quality` prints JSON;
bounded: 20 prompts, about two minutes on two cores.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import astuple

from bench.whisper_asr import character_error_rate
from voice.audio import TELEPHONE_RATE, resample
from voice.config import load_voice_config
from voice.kokoro import KokoroVoice
from voice.rendered_prompts import Template, voice_wordings
from voice.tts import Synthesizer
from voice.whisper import clean_text, model_directory, transcribe

PROMPTS = 20
WHISPER_THREADS = 2


def _prompts() -> list[str]:
    wordings = voice_wordings(astuple(load_voice_config().turns.prompts))
    return [text for text in wordings if Template(text).is_fixed][:PROMPTS]


def _heard(pcm: bytes) -> str:
    return clean_text(transcribe(str(model_directory(None)), WHISPER_THREADS, resample(pcm, TELEPHONE_RATE, 16000)))


async def _espeak(texts: list[str]) -> list[bytes]:
    synthesizer = Synthesizer(load_voice_config().tts)
    try:
        return [await synthesizer.render(text, TELEPHONE_RATE) for text in texts]
    finally:
        synthesizer.close()


def figures() -> dict:
    """Whisper CER of Kokoro's and espeak-ng's renderings of the same prompts; Kokoro's CPU cost."""
    texts = _prompts()
    kokoro = KokoroVoice(load_voice_config().kokoro)
    kokoro.render("您好。")  # loads the model: not part of the cost per second
    cpu_seconds, audio_seconds, kokoro_audio = 0.0, 0.0, []
    for text in texts:
        started = time.process_time()
        pcm = kokoro.render(text)
        cpu_seconds += time.process_time() - started
        audio_seconds += len(pcm) / 2 / TELEPHONE_RATE
        kokoro_audio.append(pcm)
    espeak_audio = asyncio.run(_espeak(texts))
    references = [clean_text(text) for text in texts]
    kokoro_pairs = [(reference, _heard(pcm)) for reference, pcm in zip(references, kokoro_audio, strict=True)]
    espeak_pairs = [(reference, _heard(pcm)) for reference, pcm in zip(references, espeak_audio, strict=True)]
    return {"prompts": len(texts), "voice": kokoro.config.voice,
            "kokoro_whisper_cer": round(character_error_rate(kokoro_pairs), 3),
            "espeak_whisper_cer": round(character_error_rate(espeak_pairs), 3),
            "kokoro_cpu_seconds_per_audio_second": round(cpu_seconds / audio_seconds, 2),
            "kokoro_audio_seconds": round(audio_seconds, 1),
            "examples": [{"text": reference, "kokoro": kokoro_heard, "espeak": espeak_heard}
                         for (reference, kokoro_heard), (_, espeak_heard)
                         in list(zip(kokoro_pairs, espeak_pairs, strict=True))[:5]]}


if __name__ == "__main__":
    print(json.dumps(figures(), ensure_ascii=False, indent=2))
