"""Speech synthesis for calls: prompts pre-rendered by Kokoro when there are, otherwise
pyttsx3 driving espeak-ng's Mandarin voice, with a cache.

Kokoro is too slow for live replies, so it renders the channel's prompts ahead of time
(voice/rendered_prompts.py, voice/kokoro.py); every other text, and a prompt whose rendering is
not there yet, is said by espeak-ng with the polyphone dictionary's pinyin for the words it
would misread (voice/pronunciation.py).

espeak-ng keeps its state (voice, callback, parameters) process-wide and pyttsx3 is not
thread-safe, so every synthesis in the process runs on one dedicated worker thread that owns
the only engine; coroutines await it through `run_in_executor`. Rendered audio is trimmed of
espeak's silence, resampled to the call's rate and kept in an LRU cache, so static prompts are
synthesised once.

Two espeak-ng 1.51 (Debian) behaviours shape this module, both measured:
- the `cmn` voice reads most characters as pinyin spelled out in English ("nin two" for 您);
  `cmn-latn-pinyin` pronounces them in Mandarin, hence the default voice;
- synthesis is asynchronous: `runAndWait()` returns before the audio is written, and a rate
  set with `setProperty` races with the next synthesis. So a render waits for pyttsx3's
  "finished-utterance" event, and rate and volume travel inside the text as espeak embedded
  commands, applied atomically with the words they govern.
"""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voice.audio import read_wav, resample, samples
from voice.pronunciation import Pronunciations, load_pronunciations
from voice.rendered_prompts import RenderedPrompts

log = logging.getLogger(__name__)

ESPEAK_RATE = 22050  # what pyttsx3's espeak driver writes
_QUIET_SAMPLE = 300  # ≈ -40 dBFS: below this, espeak output is silence or the tail of a decay
_LEAD_PAD_MS = 20
_TAIL_PAD_MS = 80  # keeps the release of the last syllable
_RENDER_TIMEOUT_S = 30.0
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]+")  # \x01 would start an espeak embedded command


class TtsUnavailable(RuntimeError):
    """espeak-ng (libespeak-ng1) or the configured voice is missing."""


@dataclass(frozen=True)
class TtsConfig:
    voice: str = "cmn-latn-pinyin"  # Mandarin read as Mandarin on espeak-ng 1.51 (see module docstring)
    rate: int = 175  # espeak words per minute: ≈3.4 syllables/s with punctuation pauses, a calm IVR pace
    slow_rate: int = 130  # ≈2.5 syllables/s for elderly callers
    volume: float = 0.8  # 1.0 clips espeak's Mandarin peaks; 0.8 peaks near -1 dBFS
    cache_size: int = 256  # rendered clips (a 5 s prompt at 8 kHz is 80 kB)


class _EspeakEngine:
    """The process's one pyttsx3 engine; used only on the worker thread."""

    def __init__(self) -> None:
        try:
            import pyttsx3
            import pyttsx3.drivers.espeak as espeak_driver
        except (ImportError, OSError, RuntimeError) as error:  # pyttsx3 raises RuntimeError without the library
            raise TtsUnavailable("espeak-ng is not installed: apt-get install espeak-ng libespeak-ng1") from error
        # The driver prints "Audio saved to …" for every file; silence only that module's print.
        espeak_driver.print = lambda *args, **kwargs: None
        try:
            self._engine = pyttsx3.init("espeak")
        except (OSError, RuntimeError) as error:
            raise TtsUnavailable(f"espeak-ng could not start: {error}") from error
        self._finished = threading.Event()
        self._engine.connect("finished-utterance", self._on_finished)
        self._voices = {name for voice in self._engine.getProperty("voices")
                        for name in (voice.id.rsplit("/", 1)[-1].lower(), *(lang.lower() for lang in voice.languages))}
        self._voice: str | None = None

    def _on_finished(self, **_details: Any) -> None:
        self._finished.set()

    def use_voice(self, voice: str) -> None:
        if voice == self._voice:
            return
        if voice.split("+", 1)[0].lower() not in self._voices:
            raise TtsUnavailable(f"espeak-ng has no voice {voice!r} (see `espeak-ng --voices=cmn`)")
        self._engine.setProperty("voice", voice)
        self._voice = voice

    def synthesize(self, text: str, words_per_minute: int, volume: float) -> bytes:
        """PCM at ESPEAK_RATE; rate and amplitude as embedded commands so they cannot race."""
        with tempfile.TemporaryDirectory(prefix="tts-") as scratch:
            path = Path(scratch) / "speech.wav"
            self._finished.clear()
            self._engine.save_to_file(f"\x01{words_per_minute}S\x01{round(volume * 100)}A{text}", str(path))
            self._engine.runAndWait()
            if not self._finished.wait(_RENDER_TIMEOUT_S) or not path.exists():
                raise RuntimeError(f"espeak-ng did not finish rendering {text[:30]!r}")
            pcm, rate = read_wav(path)
        if rate != ESPEAK_RATE:
            raise RuntimeError(f"espeak-ng wrote {rate} Hz audio, expected {ESPEAK_RATE} Hz")
        return pcm


_worker_lock = threading.Lock()
_worker: ThreadPoolExecutor | None = None
_engine: _EspeakEngine | None = None  # created and used on the worker thread only


def _espeak_worker() -> ThreadPoolExecutor:
    global _worker
    with _worker_lock:
        if _worker is None:
            _worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak-tts")
        return _worker


def _engine_for(voice: str) -> _EspeakEngine:
    """On the worker thread: the engine, started on first use, set to `voice`."""
    global _engine
    if _engine is None:
        _engine = _EspeakEngine()
    _engine.use_voice(voice)
    return _engine


def trim_silence(pcm: bytes, sample_rate: int) -> bytes:
    """Cut leading and trailing silence, keeping short pads so the speech starts and ends cleanly."""
    values = samples(pcm)
    loud = np.flatnonzero(np.abs(values.astype(np.int32)) > _QUIET_SAMPLE)
    if loud.size == 0:
        return b""
    start = max(0, int(loud[0]) - sample_rate * _LEAD_PAD_MS // 1000)
    end = min(values.size, int(loud[-1]) + 1 + sample_rate * _TAIL_PAD_MS // 1000)
    return values[start:end].tobytes()


class Synthesizer:
    """Renders text to PCM at a call's rate; one per process is enough (the engine is shared anyway)."""

    def __init__(self, config: TtsConfig | None = None, prompts: RenderedPrompts | None = None,
                 pronunciations: Pronunciations | None = None) -> None:
        self.config = config or TtsConfig()
        self.prompts = prompts
        self.pronunciations = pronunciations or load_pronunciations()
        self.synthesis_count = 0  # renders that reached espeak (cache misses)
        self.prerendered_count = 0  # texts said from Kokoro's pre-rendered prompts
        self._cache: OrderedDict[tuple[str, int, bool], bytes] = OrderedDict()
        # espeak-ng's renderings of prompts Kokoro has not rendered yet: used until it has.
        self._stand_ins: OrderedDict[tuple[str, int, bool], bytes] = OrderedDict()
        self._pending: dict[tuple[str, int, bool], asyncio.Future[tuple[bytes, bool]]] = {}
        self._closed = False
        # Fail at start-up, not on the first call, when espeak-ng or the voice is missing.
        _espeak_worker().submit(_engine_for, self.config.voice).result()

    async def render(self, text: str, sample_rate: int, slow: bool = False) -> bytes:
        """Speech for `text` as 16-bit mono PCM at `sample_rate`; empty text gives no audio."""
        if self._closed:
            raise RuntimeError("the synthesizer is closed")
        text = _CONTROL_CHARACTERS.sub(" ", text).strip()
        if not text:
            return b""
        key = (text, sample_rate, slow)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        pending = self._pending.get(key)
        if pending is None:  # the same prompt asked for twice at once is rendered once
            pending = asyncio.ensure_future(self._produce(text, sample_rate, slow))
            self._pending[key] = pending
            pending.add_done_callback(lambda _done: self._pending.pop(key, None))
        # shield: a caller cancelled by barge-in must not cancel the render others await.
        pcm, final = await asyncio.shield(pending)
        self._remember(self._cache if final else self._stand_ins, key, pcm)
        return pcm

    async def prerender(self, texts: Iterable[str], sample_rate: int, slow: bool = False) -> None:
        """Warm the cache with static prompts (greetings, disclosures, menus)."""
        await asyncio.gather(*(self.render(text, sample_rate, slow) for text in dict.fromkeys(texts)))

    def close(self) -> None:
        """Drop the cache; the shared espeak worker stays for other synthesizers in the process."""
        self._closed = True
        self._cache.clear()
        self._stand_ins.clear()

    async def _produce(self, text: str, sample_rate: int, slow: bool) -> tuple[bytes, bool]:
        """The audio, and whether it is final: an espeak-ng rendering of a prompt Kokoro has not
        rendered yet is only a stand-in, so the prompt switches to Kokoro's voice once it is there."""
        loop = asyncio.get_running_loop()
        if self.prompts is not None:
            pieces = await loop.run_in_executor(None, self.prompts.pieces, text, slow)  # reads files
            if pieces is not None:
                audio = []
                for piece in pieces:  # pre-rendered fixed parts, and the variable words said live
                    if isinstance(piece, tuple):
                        audio.append(resample(*piece, sample_rate))
                    else:
                        audio.append(await loop.run_in_executor(
                            _espeak_worker(), self._synthesize, piece, sample_rate, slow))
                self.prerendered_count += 1
                return b"".join(audio), True
        stand_in = self._stand_ins.get((text, sample_rate, slow))
        if stand_in is not None:
            return stand_in, False
        pcm = await loop.run_in_executor(_espeak_worker(), self._synthesize, text, sample_rate, slow)
        return pcm, self.prompts is None or not self.prompts.expects(text)

    def _synthesize(self, text: str, sample_rate: int, slow: bool) -> bytes:
        """On the worker thread."""
        engine = _engine_for(self.config.voice)
        words_per_minute = self.config.slow_rate if slow else self.config.rate
        speech = engine.synthesize(self.pronunciations.for_espeak(text), words_per_minute, self.config.volume)
        self.synthesis_count += 1
        return resample(trim_silence(speech, ESPEAK_RATE), ESPEAK_RATE, sample_rate)

    def _remember(self, cache: OrderedDict[tuple[str, int, bool], bytes], key: tuple[str, int, bool],
                  pcm: bytes) -> None:
        if self.config.cache_size <= 0:
            return
        if cache is self._cache:
            self._stand_ins.pop(key, None)
        cache[key] = pcm
        cache.move_to_end(key)
        while len(cache) > self.config.cache_size:
            cache.popitem(last=False)
