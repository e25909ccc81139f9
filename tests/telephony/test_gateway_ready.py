"""A gateway is ready for callers once its recogniser has loaded: `GET /ready` (what the compose
file's health check and the Kubernetes readiness probes ask, tests/deploy) answers 503 while
Whisper's workers load the model, 200 once they have (or failed: the keypad still works, and
`/health` says so); `/health` answers 200 throughout (liveness). Whisper's real states are
tested in tests/voice/test_whisper.py; here the recogniser's state is set by the test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from telephony.gateway import Gateway, GatewaySettings, health_app
from telephony.priority import load_priority_rules
from tests.loopback import serving_asgi
from tests.waiting import BOUND_SECONDS
from voice.call import VoiceEngines
from voice.config import load_voice_config
from voice.dialogue import DialogueClient
from voice.tts import Synthesizer
from voice.whisper import WhisperConfig, WhisperRecognizer


class WhisperInState(WhisperRecognizer):
    """Whisper whose workers never start (no utterance is sent): its state is what the test says."""

    state = "loading"


@pytest.fixture
async def gateway_health() -> AsyncIterator[tuple[str, WhisperInState]]:
    settings = GatewaySettings(host="127.0.0.1", port=0, rasa_url="http://127.0.0.1:9",
                               risk_api_url="http://127.0.0.1:9", risk_api_token="unused-risk-token", ami=None)
    config = load_voice_config()
    recognizer = WhisperInState(WhisperConfig())
    engines = VoiceEngines(config, recognizer, Synthesizer(config.tts), DialogueClient("http://127.0.0.1:9", "unused"))
    gateway = Gateway(settings, engines, load_priority_rules(), None)
    try:
        with serving_asgi(health_app(gateway)) as url:
            yield url, recognizer
    finally:
        await gateway.close()
        recognizer.close()


async def test_a_gateway_is_not_ready_while_its_recogniser_loads_and_ready_once_it_has(
        gateway_health: tuple[str, WhisperInState]) -> None:
    url, recognizer = gateway_health
    async with httpx.AsyncClient(base_url=url, timeout=BOUND_SECONDS) as http:  # no token: both are open
        loading = await http.get("/ready")
        assert loading.status_code == 503 and loading.json() == {"ready": False, "recognizer": "loading"}
        assert (await http.get("/health")).status_code == 200  # alive all the same: not to be restarted
        for state in ("ready", "failed"):
            recognizer.state = state
            answer = await http.get("/ready")
            assert answer.status_code == 200 and answer.json() == {"ready": True, "recognizer": state}
        assert (await http.get("/health")).json()["recognizer"] == "failed"
