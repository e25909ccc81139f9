"""`make voice-demo WAV=path`: one WAV file through the whole voice pipeline and the real
assistant, printed as a timeline, with the bot's side of the call written to a WAV file.

Uses the Rasa at RASA_URL when one answers there (`make run`), else starts the stack for the
demo. The caller plays the WAV once the bot's greeting is over, then keys `--keys` (if any)
at the bot's next pause. Recognition uses the Vosk model from VOSK_MODEL_PATH; without one,
`--say` gives the text the caller's audio stands for (a scripted recogniser, printed as such).

The demo's call has no phone: the stand-ins in bench/stand_ins.py are the caller, the bot's side
of the line and the `--say` recognition.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from bench.stand_ins import RecordingSink, RespondingCaller, ScriptedRecognizer
from stack.services import Ports, Secrets, stack, started
from voice.audio import TELEPHONE_RATE, read_wav, resample, write_wav
from voice.call import VoiceEngines, run_call
from voice.config import load_voice_config
from voice.frames import CallStarted

QUIET_SECONDS = 2.5  # the bot silent this long after answering: the demo call is over


def rasa_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


async def demo(wav: Path, out: Path, rasa_url: str, channel_token: str, said: list[str], keys: str,
               caller_number: str | None) -> int:
    pcm, rate = read_wav(wav)
    if rate != TELEPHONE_RATE:
        print(f"{wav}: {rate} Hz, resampled to the telephone's {TELEPHONE_RATE} Hz")
        pcm = resample(pcm, rate, TELEPHONE_RATE)
    config = load_voice_config()
    recognizer = ScriptedRecognizer(said) if said else None
    if said:
        print(f"recognition is scripted (--say): the caller's speech is taken to say {said}")
    engines = VoiceEngines.load(config, rasa_url, recognizer, channel_token)
    sink = RecordingSink()
    call = CallStarted("demo-" + os.urandom(4).hex(), TELEPHONE_RATE, caller_number=caller_number)
    answers: list[bytes | str] = [pcm, keys] if keys else [pcm]
    caller = RespondingCaller(answers, sink, TELEPHONE_RATE, max_seconds=len(pcm) / 2 / TELEPHONE_RATE + 60,
                              until=lambda answered: sink.answered_and_quiet(QUIET_SECONDS, after=answered))
    result = await run_call(engines, call, caller.frames(), sink)
    await engines.close()
    start = caller.started_at
    for moment, event in result.turns.timeline:
        print(f"{moment - start:7.2f} s  {event}")
    write_wav(out, sink.audio, TELEPHONE_RATE)
    seconds = len(sink.audio) / 2 / TELEPHONE_RATE
    print(f"bot audio: {out} ({seconds:.1f} s); controls: {[c.action for c in sink.controls]}")
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
            keys = Secrets.from_env()
        return asyncio.run(demo(args.wav, args.out, rasa_url, keys.rasa_gateway, args.say, args.keys,
                                args.caller_number))


if __name__ == "__main__":
    sys.exit(main())
