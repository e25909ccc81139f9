"""A message the NLU is sure no flow fits (out_of_scope): the knowledge base's answer when it has
one — questions of this business the classifier calls out of scope (我的通话录音谁能听) — else
what the assistant can do; on an outbound call before the customer is confirmed, neither (no
list of account services for whoever answered). Driven through the action with rasa-sdk's tracker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from bot.actions.conversation import flowset
from bot.actions.shared_actions import ActionOutOfScope
from knowledge.model import load_entries

pytestmark = pytest.mark.usefixtures("risk_api_down")


def out_of_scope(text: str, channel: str = "chat", **slots: Any) -> list[dict[str, Any]]:
    message = {"text": text, "intent": {"name": "out_of_scope", "confidence": 0.9},
               "intent_ranking": [{"name": "out_of_scope", "confidence": 0.9}]}
    events = [{"event": "user", "text": text, "parse_data": message, "timestamp": 1.0}]
    tracker = Tracker("session-out-of-scope", {"channel": channel, **slots}, message, events, False, None, {},
                      "action_listen")
    dispatcher = CollectingDispatcher()
    asyncio.run(ActionOutOfScope().run(dispatcher, tracker, {}))
    return dispatcher.messages


def texts(said: list[dict[str, Any]]) -> list[str]:
    return [message["text"] for message in said if message.get("text")]


@pytest.mark.usefixtures("knowledge_base")
def test_a_business_question_the_classifier_calls_out_of_scope_gets_the_knowledge_bases_answer() -> None:
    [recordings] = [entry for entry in load_entries() if entry.id == "privacy.call_recording_privacy"]
    said = out_of_scope("我的通话录音谁能听")
    assert texts(said) == [recordings.answer_for("chat")]
    assert [m["custom"] for m in said if m.get("custom")] == [{"knowledge": "privacy.call_recording_privacy"}]


@pytest.mark.usefixtures("knowledge_base")
def test_a_question_of_daily_life_gets_what_the_assistant_can_do_with_its_buttons() -> None:
    said = out_of_scope("今天天气怎么样")
    response = flowset().shared_intents["out_of_scope"].response
    assert response and texts(said) == [response.chat]
    assert [button["payload"] for button in said[0]["buttons"]][-1] == "/transfer_to_agent"
    assert texts(out_of_scope("今天天气怎么样", channel="voice")) == [response.voice]


@pytest.mark.usefixtures("knowledge_base")
def test_before_the_customer_is_confirmed_on_an_outbound_call_nobody_hears_an_answer_or_the_services() -> None:
    said = texts(out_of_scope("我的通话录音谁能听", channel="outbound", right_party="third_party"))
    assert said == [flowset().responses["clarify"].voice]

