"""One phone call through the voice pipeline, whatever carries its audio.

The engines (recogniser model, synthesiser, dialogue client) are loaded once per process and
shared by every call; each call gets its own processors. A transport (AudioSocket, a WAV file,
a test) feeds the call's frames in and receives its audio and telephony instructions through
an `AudioSink`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import astuple, dataclass, field

from ivr_config.loader import ConfigError
from voice.asr import Recognizer, load_recognizer
from voice.call_events import CallEvents, CallRecorder, NoCallEvents
from voice.config import VoiceConfig
from voice.dialogue import DialogueClient
from voice.frames import CallStarted, Frame, Hangup
from voice.kokoro import rendered_prompts
from voice.output import AudioOutput, AudioSink
from voice.pipeline import Pipeline
from voice.processors import AudioInput, SpeechDetection, SpeechRecognition, SpeechSynthesis
from voice.tts import Synthesizer
from voice.turn_models import turn_models
from voice.turns import TurnTaking
from voice.whisper import WhisperRecognizer

log = logging.getLogger(__name__)


@dataclass
class VoiceEngines:
    config: VoiceConfig
    recognizer: Recognizer | None
    synthesizer: Synthesizer
    dialogue: DialogueClient
    # The quality inspection's call events (quality/publisher.py); nothing by default.
    call_events: CallEvents = field(default_factory=NoCallEvents)

    @classmethod
    def load(cls, config: VoiceConfig, rasa_url: str, recognizer: Recognizer | None = None,
             channel_token: str | None = None) -> VoiceEngines:
        """`recognizer` overrides the configured one (tests and the demo without a Chinese model);
        `channel_token` Rasa's trusted-channel token (else RASA_CHANNEL_TOKEN)."""
        prompts = rendered_prompts(config.kokoro, astuple(config.turns.prompts))
        return cls(config, recognizer or configured_recognizer(config), Synthesizer(config.tts, prompts),
                   DialogueClient(rasa_url, channel_token))

    def recognizer_state(self) -> str:
        """"off" (keypad only), "loading", "ready" or "failed" (WhisperRecognizer.state); Vosk loads
        at start."""
        if self.recognizer is None:
            return "off"
        return self.recognizer.state if isinstance(self.recognizer, WhisperRecognizer) else "ready"

    async def close(self) -> None:
        await self.dialogue.close()
        self.synthesizer.close()
        if isinstance(self.recognizer, WhisperRecognizer):
            self.recognizer.close()  # its worker processes


def configured_recognizer(config: VoiceConfig) -> Recognizer | None:
    """The recogniser `asr.recognizer` names; None means keypad only. A configured model that
    cannot be used raises AsrModelError at start-up rather than turning speech off silently.
    `auto`: Vosk when its Chinese model is configured (streaming, grammars), else Whisper, the one
    Mandarin recogniser installable from the package registry."""
    wanted = config.asr.recognizer
    if wanted == "auto":
        wanted = "vosk" if config.asr.model_path else "whisper"
    if wanted == "whisper":
        if config.barge_in.confirm_characters:  # confirmation waits for partial text Whisper never gives
            raise ConfigError(f"asr.recognizer whisper gives no partial text: barge_in.confirm_characters must be "
                              f"0, not {config.barge_in.confirm_characters}, or no barge-in is ever confirmed")
        # Loaded now, not on the first callers' words (they would wait, and the next be refused).
        return WhisperRecognizer(config.whisper, load_at_start=True)
    if wanted == "none":
        log.info("speech recognition is off (asr.recognizer: none): callers use the keypad")
        return None
    return load_recognizer(config.asr)


@dataclass
class CallResult:
    call_id: str
    turns: TurnTaking
    output: AudioOutput
    seconds: float


async def run_call(engines: VoiceEngines, call: CallStarted, frames: AsyncIterator[Frame],
                   sink: AudioSink) -> CallResult:
    """Run the call until its frames end (hang-up, hand-over or EOF); always cleans up."""
    started = time.monotonic()
    turns = TurnTaking(engines.dialogue, engines.config.turns, speech_recognition=engines.recognizer is not None)
    output = AudioOutput(sink)
    after_detection, after_recognition, after_turns = CallRecorder(engines.call_events).taps()
    pipeline = Pipeline([
        AudioInput(),
        SpeechDetection(engines.config.detection, engines.config.barge_in, turn_models(engines.config.turn_models),
                        text_expected=engines.recognizer is not None),
        after_detection,
        SpeechRecognition(engines.recognizer, engines.config.asr.grammar_for_closed_questions),
        after_recognition,
        turns,
        after_turns,
        SpeechSynthesis(engines.synthesizer),
        output,
    ])
    hung_up = False
    try:
        await pipeline.send(call)
        async for frame in frames:
            await pipeline.send(frame)
            if isinstance(frame, Hangup):
                hung_up = True
                break
    finally:
        if not hung_up:
            await pipeline.send(Hangup("call ended"))
        await pipeline.close()
    seconds = time.monotonic() - started
    log.info("call %s ended after %.1f s, %d turns", call.call_id, seconds, len(turns.turns))
    return CallResult(call.call_id, turns, output, seconds)
