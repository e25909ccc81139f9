"""A call with a recogniser on (as every call now has by default: Whisper without a Vosk model):
speech the recogniser could not read at the greeting gets the rephrase AND the keypad menu, and
the keys answer it. Real assistant behind the pipeline; the words come from a ScriptedRecognizer
("" is what Whisper returns for speech it could not read)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from bench import samples
from bench.stand_ins import RecordingSink, RespondingCaller, ScriptedRecognizer
from risk_api.demo import customers_with_tag
from tests.conftest import Stack
from voice.call import VoiceEngines, run_call
from voice.config import load_voice_config
from voice.dialogue import DialogueClient
from voice.frames import CallStarted
from voice.tts import Synthesizer

pytestmark = pytest.mark.stack
QUIET_SECONDS = 2.0


class SaidByTheBot:
    """The call events' `bot_said` texts (quality/publisher.py gets the same events)."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def publish(self, call_id: str, kind: str, at: float, data: dict[str, Any]) -> None:
        if kind == "bot_said":
            self.texts.append(str(data.get("text")))


async def test_speech_not_read_at_the_greeting_gets_the_keypad_menu_and_a_key_starts_the_flow(
        running_stack: Stack) -> None:
    customer = customers_with_tag("normal")[0]
    config = load_voice_config()
    prompts = config.turns.prompts
    said = SaidByTheBot()
    engines = VoiceEngines(config, ScriptedRecognizer([""]), Synthesizer(config.tts),
                           DialogueClient(running_stack.rasa_url, running_stack.keys.rasa_gateway), call_events=said)
    sink = RecordingSink()
    caller = RespondingCaller([samples.speech("嗯嗯啊啊"), "3"], sink, max_seconds=40,
                              until=lambda answered: sink.answered_and_quiet(QUIET_SECONDS, after=answered))
    try:
        result = await run_call(engines, CallStarted(call_id=f"voice-test-{uuid.uuid4().hex[:10]}",
                                                     caller_number=customer["phone"]), caller.frames(), sink)
    finally:
        await engines.close()
    assert prompts.keypad_menu not in said.texts[:2], "a caller with speech on is not read the menu at once"
    rephrase = said.texts.index(prompts.no_match)
    assert said.texts[rephrase + 1] == prompts.keypad_menu, said.texts
    assert [text for text, _ in result.turns.turns] == [f"/{config.turns.keypad_menu['3']}"]
