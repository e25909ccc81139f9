"""Spoken requests to flows: what a phone caller's opening request becomes once Whisper has
heard it. `python -m bench.spoken_requests` prints JSON; bench/run.py keeps it under `voice`.

For each held-out intent (tests/nlu/held_out/), its first `PER_INTENT` phrasings are spoken in
Kokoro's voice (a neural voice: recognisers do much worse on espeak-ng's), narrowed to 8 kHz as
on a phone line and brought back to 16 kHz as SpeechRecognition feeds the recogniser, heard by
Whisper base with the worker's settings, put right by voice/heard_terms.py as the recogniser does,
and then classified by the trained model together with the typed text. Each request is heard
twice: on a clean line, and over pink line noise at LINE_SNR_DB (the issue's target condition;
the gateway bench's callers use the same). The figures: intent accuracy typed / spoken, with and
without heard_terms (out-of-scope counted as in bench/nlu.py; the typed text goes through
heard_terms too, to show it breaks nothing said right), how many requests Whisper turns into
another intent, the character error rate, and Whisper's CPU per request. Bounded: one Kokoro
render and two Whisper decodes per request, about 80 requests (a few minutes on two cores;
renders are cached under var/test-audio/).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench import nlu
from bench.samples import mix_at_snr, natural_speech, noise
from bench.stats import percentile
from bench.whisper_asr import THREADS, character_error_rate
from voice.audio import resample
from voice.config import load_voice_config
from voice.heard_terms import default_heard_terms
from voice.whisper import MAX_SECONDS, clean_text, model_directory, transcribe

PER_INTENT = 1
PHONE_RATE, RECOGNISER_RATE = 8000, 16000
LINE_SNR_DB = 20.0
SHORT_WINDOW_SECONDS = 10.0


def requests() -> list[tuple[str, str]]:
    """(text, intent): the first PER_INTENT phrasings of each held-out file."""
    chosen = []
    for path in sorted(nlu.HELD_OUT_DIR.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        chosen += [(str(text), data["intent"]) for text in data["examples"][:PER_INTENT]]
    return chosen


def heard(text: str, cpu_seconds: list[float], prompt: str, noise_seed: int | None = None,
          voice: str = "jf_gongitsune", window_seconds: float = MAX_SECONDS) -> str:
    """Whisper's text as the worker's settings and clean_text give it, before heard_terms;
    `noise_seed`: over a stretch of pink noise LINE_SNR_DB below the speech (None: a clean line);
    `window_seconds`: the encoder's (WhisperConfig.window_seconds)."""
    pcm = natural_speech(text, PHONE_RATE, voice=voice)
    if noise_seed is not None:
        line = noise("pink", len(pcm) / 2 / PHONE_RATE, PHONE_RATE, seed=noise_seed)
        pcm = mix_at_snr(pcm, line, LINE_SNR_DB, PHONE_RATE)
    pcm = resample(pcm, PHONE_RATE, RECOGNISER_RATE)
    started = time.process_time()
    result = clean_text(transcribe(str(model_directory(None)), THREADS, pcm, prompt, window_seconds))
    cpu_seconds.append(time.process_time() - started)
    return result


def _accuracy(chosen: list[tuple[str, str]], intents: list[str]) -> list[bool]:
    return [nlu.is_right(gold, got) for (_, gold), got in zip(chosen, intents, strict=True)]


def figures(prompt: str | None = None) -> dict[str, Any]:
    """`prompt`: Whisper's initial prompt; None: voice.yaml's."""
    prompt = load_voice_config().whisper.prompt if prompt is None else prompt
    chosen = requests()
    terms = default_heard_terms()
    transcribe(str(model_directory(None)), THREADS, bytes(3200))  # load the model outside the figures
    cpu: list[float] = []
    raw = [heard(text, cpu, prompt) for text, _ in chosen]
    corrected = [terms.correct(text) for text in raw]
    noisy = [terms.correct(heard(text, cpu, prompt, noise_seed=seed)) for seed, (text, _) in enumerate(chosen)]
    # The same, in a SHORT_WINDOW_SECONDS encoder window (whisper.window_seconds): cost against accuracy.
    short_cpu: list[float] = []
    short = [terms.correct(heard(text, short_cpu, prompt, window_seconds=SHORT_WINDOW_SECONDS)) for text, _ in chosen]
    short_noisy = [terms.correct(heard(text, short_cpu, prompt, noise_seed=seed, window_seconds=SHORT_WINDOW_SECONDS))
                   for seed, (text, _) in enumerate(chosen)]
    typed = [text for text, _ in chosen]
    # The typed requests through heard_terms too: a correction that broke right text would show.
    sets = {"typed": typed, "typed_corrected": [terms.correct(text) for text in typed],
            "spoken_raw": raw, "spoken": corrected, "spoken_noisy": noisy,
            "spoken_short_window": short, "spoken_noisy_short_window": short_noisy}
    with tempfile.TemporaryDirectory(prefix="bench-spoken-") as scratch:
        texts = Path(scratch) / "texts.json"
        texts.write_text(json.dumps([text for texts_ in sets.values() for text in texts_], ensure_ascii=False),
                         encoding="utf-8")
        intents = nlu.parse_in_rasa(texts)
    by_set = {name: intents[index * len(chosen):(index + 1) * len(chosen)] for index, name in enumerate(sets)}
    right = {name: _accuracy(chosen, found) for name, found in by_set.items()}
    lost = [index for index in range(len(chosen)) if right["typed"][index] and not right["spoken"][index]]
    return {
        "requests": len(chosen),
        **{f"{name}_accuracy": round(sum(oks) / len(chosen), 4) for name, oks in right.items()},
        "lost_to_recognition": len(lost),  # right when typed, wrong once heard (after heard_terms)
        "lost_examples": [{"said": chosen[i][0], "heard": raw[i], "corrected": corrected[i], "intent": chosen[i][1],
                           "became": by_set["spoken"][i]} for i in lost][:15],
        "corrections": sum(a != b for a, b in zip(raw, corrected, strict=True)),
        "character_error_rate_raw": round(character_error_rate(list(zip(typed, raw, strict=True))), 3),
        "character_error_rate": round(character_error_rate(list(zip(typed, corrected, strict=True))), 3),
        "line_snr_db": LINE_SNR_DB,
        "character_error_rate_noisy": round(character_error_rate(list(zip(typed, noisy, strict=True))), 3),
        "whisper_cpu_seconds_p50": round(statistics.median(cpu), 2),
        "whisper_cpu_seconds_p95": round(percentile(cpu, 0.95), 2),
        "short_window_seconds": SHORT_WINDOW_SECONDS,
        "whisper_cpu_seconds_p50_short_window": round(statistics.median(short_cpu), 2),
    }


if __name__ == "__main__":
    print(json.dumps(figures(), ensure_ascii=False, indent=2))
