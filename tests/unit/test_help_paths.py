""""我不知道" / "忘了" / "没收到" where an answer is expected (issue 15's help paths): the slot's
help, else the shared one, then the question again, in other words when the slot has them (its
`reprompt`); a don't-know counts as a miss, so a customer who cannot answer reaches a person. Not
a deny that cancels, not another flow's request, not a transfer asked for, not an answer given.
Driven through the flows' form validators and ask actions with rasa-sdk's tracker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from bot.actions import flow_engine
from bot.actions.conversation import flowset
from flowspec.model import Slot

pytestmark = pytest.mark.usefixtures("risk_api_down", "no_knowledge_base")
NO_HELP = flowset().responses["no_help"]


def identity_slot(name: str) -> Slot:
    return next(slot for slot in flowset().identity_slots if slot.name == name)


def answer(flow_id: str, requested: str, text: str, intent: str = "nlu_fallback", confidence: float = 0.5,
           channel: str = "chat", **slots: Any) -> tuple[list[str], dict[str, Any]]:
    """What the bot says and the slots it sets when `text` comes while `requested` is asked."""
    message = {"text": text, "intent": {"name": intent, "confidence": confidence}}
    events = [{"event": "user", "text": text, "parse_data": message, "timestamp": 1.0}]
    tracker = Tracker("session-help", {"channel": channel, "requested_slot": requested, **slots}, message, events,
                      False, None, {"name": f"{flow_id}_form"}, "action_listen")
    dispatcher = CollectingDispatcher()
    validator = getattr(flow_engine, f"Validate_{flow_id}")()
    events_out = asyncio.run(validator.run(dispatcher, tracker, {}))
    said = [message["text"] for message in dispatcher.messages if message.get("text")]
    return said, {event["name"]: event["value"] for event in events_out if event.get("event") == "slot"}


def asked(flow_id: str, slot: str, channel: str = "chat", **slots: Any) -> list[str]:
    """What the form's question for `slot` says."""
    tracker = Tracker("session-help", {"channel": channel, "active_flow": flow_id, **slots}, {}, [], False, None,
                      {"name": f"{flow_id}_form"}, "action_listen")
    dispatcher = CollectingDispatcher()
    asyncio.run(getattr(flow_engine, f"Ask_{slot}")().run(dispatcher, tracker, {}))
    return [message["text"] for message in dispatcher.messages if message.get("text")]


@pytest.mark.parametrize(("text", "intent"), [
    ("我不知道", "deny"), ("忘了", "nlu_fallback"), ("这个我真不清楚啊", "deny"), ("不记得了", "out_of_scope")])
def test_not_knowing_a_rating_gets_the_shared_help_and_the_question_again(text: str, intent: str) -> None:
    said, slots = answer("satisfaction_survey", "rating", text, intent=intent, confidence=0.95)
    assert said == [NO_HELP.chat]
    assert not slots.get("flow_exit"), "a don't-know is no deny that cancels the flow"
    assert (slots["requested_slot"], slots.get("rating"), slots["reprompts"]) == ("rating", None, 1)


def test_voice_hears_the_voice_wording() -> None:
    said, _ = answer("satisfaction_survey", "rating", "不记得了", channel="voice")
    assert said == [NO_HELP.voice]


def test_a_slot_with_help_of_its_own_says_it_and_asks_in_other_words_next() -> None:
    said, slots = answer("change_bank_card", "id_last4", "我忘了后四位", intent="deny", confidence=0.9)
    assert said[0] == identity_slot("id_last4").help.chat  # type: ignore[union-attr]
    assert slots["reprompts"] == 1 and slots.get("id_last4") is None
    # The risk API is down here: the flow ends as unavailable, but the question's wording is chosen
    # by the ask action alone.
    assert asked("check_credit_limit", "customer_name", reprompts=1) == [identity_slot("customer_name").reprompt.chat]
    assert asked("check_credit_limit", "customer_name", reprompts=0) == [identity_slot("customer_name").prompt.chat]


def test_the_third_miss_in_a_row_hands_over() -> None:
    said, slots = answer("satisfaction_survey", "rating", "真不知道", reprompts=2)
    assert slots["flow_exit"].startswith("handoff:"), said
    assert NO_HELP.chat not in said


@pytest.mark.parametrize(("text", "intent", "why"), [
    ("我不知道，转人工吧", "transfer_to_agent", "a transfer asked for is a transfer"),
    ("4分吧，不知道合不合适", "nlu_fallback", "an answer given is an answer"),
    ("我也不知道为什么你们的客服电话总是打不通，到底怎么回事", "complaint", "a long message says something else"),
])
def test_what_is_not_only_not_knowing_is_not_helped(text: str, intent: str, why: str) -> None:
    said, slots = answer("satisfaction_survey", "rating", text, intent=intent, confidence=0.95)
    assert NO_HELP.chat not in said, why


def test_a_free_text_answer_may_say_it_does_not_know_when_the_slot_has_no_help() -> None:
    said, slots = answer("complaint", "complaint_text", "不知道谁扣的钱")
    assert NO_HELP.chat not in said and slots.get("complaint_text") == "不知道谁扣的钱", said
