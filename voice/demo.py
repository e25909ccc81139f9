"""`make voice-demo WAV=path`: one WAV file through the whole voice pipeline and the real
assistant, printed as a timeline, with the bot's side of the call written to a WAV file.

Uses the Rasa at RASA_URL when one answers there (`make run`), else starts the stack for the
demo. The caller plays the WAV once the bot's greeting is over, then keys `--keys` (if any)
at the bot's next pause. Recognition uses the Vosk model from VOSK_MODEL_PATH; without one,
`--say` gives the text the caller's audio stands for (a scripted recogniser, printed as such).

The demo's call has no phone: `RespondingCaller` is the caller, `RecordingSink` the bot's side of
the line, `ScriptedRecognizer` the `--say` recognition. The voice tests and the benchmark place
their calls with the same three (tests/voice/callers.py adds a caller on a fixed timetable).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from stack.services import Ports, Secrets, stack, started
from voice.asr import RecognitionStream
from voice.audio import FRAME_MS, frame_bytes, read_wav, resample, write_wav
from voice.call import VoiceEngines, run_call
from voice.clock import Clock
from voice.config import load_voice_config
from voice.frames import (
    CallbackBooked,
    CallStarted,
    Control,
    Frame,
    InputAudio,
    Keypress,
    TransferDeclined,
)

CALL_RATE = 8000
QUIET_SECONDS = 2.5  # the bot silent this long after answering: the demo call is over


class ScriptedRecognizer:
    """A stand-in recogniser (`--say`, and the tests' and bench's calls) WITHOUT a Chinese model.

    It does not listen: the audio's content is ignored. Each stream plays the next scripted
    utterance, showing one more character of it every `ms_per_character` of audio received
    (partials), and returns the whole utterance from `finish`. The grammar each stream was asked
    for is kept in `grammars`, so tests can check that closed questions were constrained.
    """

    def __init__(self, utterances: list[str], sample_rate: int = 16000, ms_per_character: int = 100) -> None:
        self.sample_rate = sample_rate
        self.grammars: list[list[str] | None] = []
        self._utterances = deque(utterances)
        self._bytes_per_character = sample_rate * 2 * ms_per_character // 1000

    def stream(self, grammar: list[str] | None = None) -> RecognitionStream:
        if not self._utterances:
            raise LookupError("ScriptedRecognizer has no utterances left: the test expected fewer turns")
        self.grammars.append(grammar)
        return _ScriptedStream(self._utterances.popleft(), self._bytes_per_character)


class _ScriptedStream:
    def __init__(self, text: str, bytes_per_character: int) -> None:
        self._text = text
        self._bytes_per_character = bytes_per_character
        self._bytes_received = 0
        self._shown = 0

    def accept(self, pcm: bytes) -> str | None:
        self._bytes_received += len(pcm)
        shown = min(len(self._text), self._bytes_received // self._bytes_per_character)
        if shown == self._shown:
            return None
        self._shown = shown
        return self._text[:shown]

    def finish(self) -> str:
        return self._text


@dataclass
class RespondingCaller:
    """A caller who waits for the bot to finish each time, then answers: with speech (PCM) or
    with keys (a string of DTMF digits). After the last answer the call lasts until `until`
    says it is done or `max_seconds` pass. Robust to a slow machine, unlike fixed times."""

    answers: list[bytes | str]
    sink: RecordingSink
    sample_rate: int = 8000
    pause_seconds: float = 0.6  # the bot silent this long: the caller's turn
    max_seconds: float = 60.0
    until: Callable[[float], bool] = lambda answered_at: False
    started_at: float = 0.0

    async def frames(self) -> AsyncIterator[Frame]:
        size = frame_bytes(self.sample_rate)
        period = FRAME_MS / 1000
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.started_at = time.monotonic()
        answers = list(self.answers)
        speaking = b""
        last_answer_at = self.started_at
        for index in range(int(self.max_seconds / period)):
            if not speaking and answers and self.sink.answered_and_quiet(self.pause_seconds, after=last_answer_at):
                answer = answers.pop(0)
                last_answer_at = time.monotonic()
                if isinstance(answer, str):
                    for digit in answer:
                        yield Keypress(digit)
                else:
                    speaking = answer
            chunk, speaking = speaking[:size], speaking[size:]
            yield InputAudio(chunk.ljust(size, b"\0"), self.sample_rate)
            if not answers and not speaking and self.until(last_answer_at):
                return
            await asyncio.sleep(max(0.0, start + (index + 1) * period - loop.time()))


@dataclass
class RecordingSink:
    """Keeps every frame the bot sent (with its time on `clock`) and every telephony instruction;
    `agents_busy` declines hand-overs the way a saturated queue does; a callback is booked for
    `callback_at`."""

    frames: list[tuple[float, bytes]] = field(default_factory=list)
    controls: list[Control] = field(default_factory=list)
    agents_busy: bool = False
    callback_at: datetime | None = datetime(2026, 12, 4, 15, 30)
    clock: Clock = time.monotonic

    async def write_frame(self, pcm: bytes) -> None:
        self.frames.append((self.clock(), pcm))

    async def control(self, frame: Control) -> Frame | None:
        self.controls.append(frame)
        if frame.action == "handoff" and self.agents_busy:
            return TransferDeclined("all agents busy")
        if frame.action == "callback":
            return CallbackBooked(self.callback_at)
        return None

    def answered_and_quiet(self, seconds: float, after: float = 0.0) -> bool:
        """The bot spoke after `after` (on `clock`) and has been silent for `seconds` since."""
        if not self.frames or self.frames[-1][0] < after:
            return False
        return self.clock() - self.frames[-1][0] >= seconds

    @property
    def audio(self) -> bytes:
        return b"".join(pcm for _, pcm in self.frames)


def rasa_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


async def demo(wav: Path, out: Path, rasa_url: str, channel_token: str, said: list[str], keys: str,
               caller_number: str | None) -> int:
    pcm, rate = read_wav(wav)
    if rate != CALL_RATE:
        print(f"{wav}: {rate} Hz, resampled to the telephone's {CALL_RATE} Hz")
        pcm = resample(pcm, rate, CALL_RATE)
    config = load_voice_config()
    recognizer = ScriptedRecognizer(said) if said else None
    if said:
        print(f"recognition is scripted (--say): the caller's speech is taken to say {said}")
    engines = VoiceEngines.load(config, rasa_url, recognizer, channel_token)
    sink = RecordingSink()
    call = CallStarted("demo-" + os.urandom(4).hex(), CALL_RATE, caller_number=caller_number)
    answers: list[bytes | str] = [pcm, keys] if keys else [pcm]
    caller = RespondingCaller(answers, sink, CALL_RATE, max_seconds=len(pcm) / 2 / CALL_RATE + 60,
                              until=lambda answered: sink.answered_and_quiet(QUIET_SECONDS, after=answered))
    result = await run_call(engines, call, caller.frames(), sink)
    await engines.close()
    start = caller.started_at
    for moment, event in result.turns.timeline:
        print(f"{moment - start:7.2f} s  {event}")
    write_wav(out, sink.audio, CALL_RATE)
    print(f"bot audio: {out} ({len(sink.audio) / 2 / CALL_RATE:.1f} s); controls: {[c.action for c in sink.controls]}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wav", type=Path)
    parser.add_argument("--out", type=Path, default=Path("var/voice-demo/bot.wav"))
    parser.add_argument("--say", action="append", default=[], help="scripted recognition, one per utterance")
    parser.add_argument("--keys", default="", help="digits keyed at the bot's pause after the WAV")
    parser.add_argument("--caller-number", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(relativeCreated)8.0f ms %(name)s %(message)s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rasa_url = os.environ.get("RASA_URL", "http://127.0.0.1:5005")
    with ExitStack() as resources:
        if not rasa_answers(rasa_url):
            keys = Secrets.generated()
            workdir = Path(resources.enter_context(tempfile.TemporaryDirectory(prefix="voice-demo-")))
            ports = Ports.free()
            print(f"no assistant at {rasa_url}: starting one for the demo (logs in {workdir})", flush=True)
            env = {"RISK_API_DATABASE_URL": f"sqlite:///{workdir / 'risk.sqlite3'}",
                   "RISK_API_SMS_OUTBOX": str(workdir / "sms.jsonl")}
            resources.enter_context(started(stack(ports, keys, env, tracker_db=workdir / "tracker.sqlite3"), workdir))
            rasa_url = f"http://127.0.0.1:{ports.rasa}"
        else:
            keys = Secrets.from_environment()
        return asyncio.run(demo(args.wav, args.out, rasa_url, keys.rasa_gateway, args.say, args.keys,
                                args.caller_number))


if __name__ == "__main__":
    sys.exit(main())
