"""Low confidence: a question the knowledge base answers gets its answer (and the entry id);
one it knows a flow for gets that flow offered; when the NLU's best guesses are two flows, the
customer is asked which one (chat: a button for each and one for a person; voice: both named);
otherwise the usual rephrase prompt. Driven through the action itself with rasa-sdk's tracker (the wording needs
nobody's identity: the risk API is down throughout)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from bot.actions.conversation import flowset
from bot.actions.shared_actions import ActionClarify, misses_in_a_row
from flowspec.templates import render
from knowledge.model import load_entries, load_out_of_scope

pytestmark = pytest.mark.usefixtures("risk_api_down")
without_knowledge = pytest.mark.usefixtures("no_knowledge_base")
with_knowledge = pytest.mark.usefixtures("knowledge_base")


def unsure(ranking: list[tuple[str, float]], channel: str = "chat", text: str = "那个账户的事",
           before: list[dict[str, Any]] | None = None, **slots: Any) -> list[dict[str, Any]]:
    """What the bot says (texts and signals) to a message the NLU ranked like this (nlu_fallback
    on top, as Rasa's FallbackClassifier puts it), after the events `before`."""
    message = {"text": text, "intent": {"name": "nlu_fallback", "confidence": 0.7},
               "intent_ranking": [{"name": "nlu_fallback", "confidence": 0.7},
                                  *({"name": name, "confidence": confidence} for name, confidence in ranking)]}
    events = [*(before or []), {"event": "user", "text": message["text"], "parse_data": message, "timestamp": 1.0}]
    tracker = Tracker("session-clarify", {"channel": channel, **slots}, message, events, False, None, {},
                      "action_listen")
    dispatcher = CollectingDispatcher()
    asyncio.run(ActionClarify().run(dispatcher, tracker, {}))
    return dispatcher.messages


def texts(said: list[dict[str, Any]]) -> list[str]:
    return [message["text"] for message in said if message.get("text")]


def name_of(flow_id: str) -> str:
    return flowset().flows[flow_id].name


@without_knowledge
def test_two_likely_flows_are_offered_as_buttons_with_a_person_in_chat() -> None:
    said = unsure([("account_freeze", 0.14), ("account_unfreeze", 0.13), ("bill_inquiry", 0.02)])
    assert len(said) == 1 and said[0]["text"]
    assert said[0]["text"] == flowset().responses["clarify_choices"].chat
    assert [(button["title"], button["payload"]) for button in said[0]["buttons"]] == [
        (name_of("account_freeze"), "/account_freeze"), (name_of("account_unfreeze"), "/account_unfreeze"),
        ("都不是，转人工", "/transfer_to_agent")]


@without_knowledge
def test_on_the_phone_both_flows_are_named_and_no_buttons_are_sent() -> None:
    said = unsure([("change_bank_card", 0.12), ("unbind_bank_card", 0.11)], channel="voice")
    assert len(said) == 1 and said[0]["text"] and not said[0]["buttons"]
    assert f"您是想{name_of('change_bank_card')}，还是{name_of('unbind_bank_card')}？" in said[0]["text"]


@without_knowledge
def test_a_best_guess_that_is_no_flow_or_a_lone_flow_gets_the_usual_rephrase_prompt() -> None:
    rephrase = flowset().responses["clarify"].chat
    out_of_scope_first = unsure([("out_of_scope", 0.13), ("account_freeze", 0.12), ("bill_inquiry", 0.1)])
    assert texts(out_of_scope_first) == [rephrase], "offering two flows would be a guess at random"
    assert texts(unsure([("account_freeze", 0.14), ("bill_inquiry", 0.01)])) == [rephrase]
    assert texts(unsure([])) == [rephrase]


def entry(entry_id: str) -> Any:
    return next(item for item in load_entries() if item.id == entry_id)


@with_knowledge
def test_a_question_the_knowledge_base_answers_gets_the_answer_for_the_channel_and_its_entry() -> None:
    chat = unsure([("early_repayment", 0.12), ("bill_inquiry", 0.1)], text="提前还款要收手续费吗")
    assert texts(chat) == [entry("early_repayment.fee").answer_for("chat")]
    assert [m["custom"] for m in chat if m.get("custom")] == [{"knowledge": "early_repayment.fee"}]
    voice = unsure([("early_repayment", 0.12)], channel="voice", text="提前还款要收手续费吗")
    assert texts(voice) == [entry("early_repayment.fee").answer_for("voice")]


@with_knowledge
def test_a_request_the_knowledge_base_knows_a_flow_for_gets_that_flow_offered() -> None:
    said = unsure([("out_of_scope", 0.1)], text="我想提前还清贷款")
    assert texts(said) == [render(flowset().responses["clarify_flow"].chat, {"first": name_of("early_repayment")})]
    assert [button["payload"] for button in said[0]["buttons"]] == ["/early_repayment", "/transfer_to_agent"]


@with_knowledge
def test_a_vague_message_gets_no_answer_asserted_and_names_the_entry_it_was_nearest() -> None:
    said = unsure([("out_of_scope", 0.1)], text="那个账户的事")
    assert texts(said) == [flowset().responses["clarify"].chat]
    (nearest,) = [m["custom"]["knowledge_nearest"] for m in said if "knowledge_nearest" in (m.get("custom") or {})]
    assert nearest in {item.id for item in load_entries()}  # the quality figures group such questions by it
    not_ours = unsure([("out_of_scope", 0.1)], text=load_out_of_scope()[0])  # not the knowledge base's at all
    assert not [m for m in not_ours if m.get("custom")]


def test_a_message_the_knowledge_base_answered_ends_a_run_of_misses() -> None:
    fallback = {"event": "user", "text": "?", "parse_data": {"intent": {"name": "nlu_fallback"}}}
    answered = {"event": "bot", "text": "……", "data": {"custom": {"knowledge": "early_repayment.fee"}}}
    clarified = {"event": "bot", "text": "抱歉，我没太理解您的意思。"}
    assert misses_in_a_row([fallback, clarified, fallback]) == 2
    assert misses_in_a_row([fallback, answered, fallback]) == 1
    assert misses_in_a_row([{"event": "user", "parse_data": {"intent": {"name": "bill_inquiry"}}}, fallback]) == 1


@with_knowledge
def test_on_an_outbound_call_nobody_hears_an_answer_or_a_flow_before_the_customer_is_confirmed() -> None:
    rephrase = flowset().responses["clarify"].voice
    for right_party in (None, "third_party"):
        assert texts(unsure([("overdue_reminder", 0.12), ("promise_to_pay", 0.11)], channel="outbound",
                            text="提前还款要收手续费吗", right_party=right_party)) == [rephrase]
    confirmed = unsure([("early_repayment", 0.12)], channel="outbound", text="提前还款要收手续费吗",
                       right_party="confirmed")
    assert texts(confirmed) == [entry("early_repayment.fee").answer_for("outbound")]
