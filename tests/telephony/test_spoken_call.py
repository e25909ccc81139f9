"""A phone caller who speaks: Kokoro's neural voice on the 8 kHz line, heard by the real Whisper
recogniser (the model from its PyPI packages) in the real gateway, in front of the real assistant.
No scripted words: what the tracker shows is what Whisper heard and what the NLU made of it; the
identity step that follows is on the keypad, since Whisper is not trusted with names."""

from __future__ import annotations

import dataclasses
import time

from bench import samples
from risk_api.demo import customers_with_tag
from tests.conftest import Stack
from tests.telephony.test_gateway import Phone, bot_finished, converse, phone  # noqa: F401 (fixture)
from voice.config import load_voice_config
from voice.whisper import WhisperRecognizer


async def test_a_caller_who_asks_aloud_to_repay_early_is_heard_and_taken_into_that_flow(
        phone: Phone, running_stack: Stack) -> None:  # noqa: F811
    customer = customers_with_tag("normal")[0]
    whisper = WhisperRecognizer(dataclasses.replace(load_voice_config().whisper, max_in_flight=2))
    phone.gateway.engines.recognizer = whisper
    try:
        peer = await phone.dial(customer["phone"])
        # A sentence Whisper hears exactly in Kokoro's voice on this line (我要提前还款 comes out as
        # 我要提倾还款 once the utterance runs to the configured silence): what is tested is the
        # path, not Whisper's accuracy (bench/spoken_requests.py measures that).
        await converse(peer, phone, [samples.natural_speech("我想提前还款。")])
        await bot_finished(peer, time.monotonic(), timeout=90.0)  # the flow's first question, once decoded
        await peer.send_hangup()
        await peer.close()
    finally:
        whisper.close()
    events = running_stack.tracker(str(peer.call_uuid))["events"]
    heard = [event for event in events if event["event"] == "user"]
    assert heard, "the caller's request never reached the assistant"
    first = heard[0]
    assert "提前还款" in first["text"], f"Whisper heard {first['text']!r}"
    assert first["parse_data"]["intent"]["name"] == "early_repayment"
    asked = [((event.get("data") or {}).get("custom") or {}).get("expect") for event in events
             if event["event"] == "bot" and event["timestamp"] > first["timestamp"]]
    asked = [expect for expect in asked if expect]
    # Whisper cannot be trusted with a name: the gateway vouched for the line, so identity is the
    # last six ID digits on the keypad, not the name.
    assert asked and asked[0]["slot"] == "id_last6", asked
