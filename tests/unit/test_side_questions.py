"""Conversation repair inside a flow: a question asked instead of an answer gets the knowledge
base's answer and the flow goes on where it was (the same question again); "那继续吧" goes on
without "not understood"; "不对，…" corrects the answer given last. Never before the right party
is on the line, never for what answers the question, and a request that is another flow's stays
a switch. Driven through the flows' form validators with rasa-sdk's tracker and the knowledge base
index `make train` builds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from bot.actions import flow_engine
from bot.actions.conversation import flowset
from knowledge.model import load_entries

pytestmark = pytest.mark.usefixtures("risk_api_down", "knowledge_base")
FEE_ANSWER = next(entry for entry in load_entries() if entry.id == "early_repayment.fee")
GO_ON = flowset().responses["resume_flow"]


def answer(flow_id: str, requested: str | None, text: str, intent: str = "nlu_fallback", confidence: float = 0.5,
           channel: str = "chat", before: list[dict[str, Any]] | None = None,
           **slots: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """What the bot says and the slots it sets when `text` comes while `requested` is asked (after
    the events `before`)."""
    message = {"text": text, "intent": {"name": intent, "confidence": confidence}}
    events = [*(before or []), {"event": "user", "text": text, "parse_data": message, "timestamp": 1.0}]
    tracker = Tracker("session-side", {"channel": channel, "requested_slot": requested, **slots}, message, events,
                      False, None, {"name": f"{flow_id}_form"}, "action_listen")
    dispatcher = CollectingDispatcher()
    validator = getattr(flow_engine, f"Validate_{flow_id}")()
    events_out = asyncio.run(validator.run(dispatcher, tracker, {}))
    return dispatcher.messages, {event["name"]: event["value"] for event in events_out if event.get("event") == "slot"}


def texts(said: list[dict[str, Any]]) -> list[str]:
    return [message["text"] for message in said if message.get("text")]


@pytest.mark.parametrize("channel", ["chat", "voice"])
def test_a_question_instead_of_a_rating_is_answered_and_the_rating_asked_again(channel: str) -> None:
    said, slots = answer("satisfaction_survey", "rating", "等一下，我先问下提前还款要手续费吗", channel=channel)
    fee = FEE_ANSWER.chat if channel == "chat" else FEE_ANSWER.voice
    assert texts(said) == [fee, GO_ON.chat if channel == "chat" else GO_ON.voice]
    assert {"knowledge": "early_repayment.fee"} in [message.get("custom") for message in said]
    assert slots.get("rating") is None and not slots.get("flow_exit")
    assert slots["requested_slot"] == "rating"


def test_a_question_it_cannot_answer_goes_along_with_its_nearest_entry_and_the_question_is_asked_again() -> None:
    """The quality figures count unanswered questions by their nearest entry, inside a flow too."""
    said, slots = answer("satisfaction_survey", "rating", "等一下，你们那个会员有什么用吗")
    signals = [message.get("custom") for message in said if message.get("custom")]
    assert signals == [{"knowledge_nearest": "anti_fraud.auto_renewal_scam"}], said
    assert GO_ON.chat not in texts(said)
    assert slots["requested_slot"] == "rating" and slots.get("rating") is None and not slots.get("flow_exit")


def test_carry_on_goes_on_without_not_understood() -> None:
    said, slots = answer("satisfaction_survey", "rating", "那继续吧")
    assert texts(said) == [GO_ON.chat]
    assert slots["requested_slot"] == "rating" and slots.get("rating") is None


def test_what_answers_the_question_is_an_answer_however_it_is_worded() -> None:
    said, slots = answer("satisfaction_survey", "rating", "五分吧，还有什么吗")
    assert slots.get("rating") == 5, said
    assert FEE_ANSWER.chat not in texts(said)


def test_another_flows_request_stays_a_switch() -> None:
    # 怎么查账单 is the knowledge base's bill_inquiry entry: a request for that flow, not a side answer.
    said, slots = answer("satisfaction_survey", "rating", "我先问下怎么查账单呢",
                         intent="bill_inquiry", confidence=0.95)
    assert slots.get("flow_exit") == "switch:bill_inquiry", said
    assert not any(message.get("custom") for message in said), "a request for a flow is no unanswered question"


def test_before_the_right_party_is_on_the_line_nothing_is_answered_on_the_side() -> None:
    said, slots = answer("overdue_reminder", "right_party", "提前还款要手续费吗", channel="outbound")
    assert FEE_ANSWER.voice not in texts(said) and GO_ON.voice not in texts(said)



def test_a_correction_replaces_the_answer_given_last_and_asks_the_question_again() -> None:
    earlier = [{"event": "slot", "name": "complaint_text", "value": "扣款扣错了"}]
    said, slots = answer("complaint", "wants_human", "不对，我是说上个月扣了两次款", intent="deny", confidence=0.9,
                         before=earlier, complaint_text="扣款扣错了")
    assert slots["complaint_text"] == "我是说上个月扣了两次款" and not slots.get("flow_exit"), said
    assert texts(said) == [flowset().responses["corrected"].chat]
    assert slots["requested_slot"] == "wants_human" and slots.get("wants_human") is None


def test_a_bare_no_is_no_correction() -> None:
    earlier = [{"event": "slot", "name": "complaint_text", "value": "扣款扣错了"}]
    said, slots = answer("complaint", "wants_human", "不对", intent="deny", confidence=0.9,
                         before=earlier, complaint_text="扣款扣错了")
    assert "complaint_text" not in slots and slots.get("wants_human") is False, said


def test_an_answer_given_in_an_earlier_flow_is_not_corrected_in_this_one() -> None:
    # partial_prepayment set an amount; promise_to_pay began since and asks its date first: "不对，是五千"
    # corrects nothing it was told (its own amount has not been asked).
    earlier_flow = [{"event": "slot", "name": "amount", "value": 3000},
                    {"event": "active_loop", "name": "promise_to_pay_form"}]
    said, slots = answer("promise_to_pay", "date", "不对，是五千", intent="deny", confidence=0.9, before=earlier_flow)
    assert "amount" not in slots and flowset().responses["corrected"].chat not in texts(said), said


def test_an_answer_given_in_this_flow_is_corrected() -> None:
    this_flow = [{"event": "active_loop", "name": "promise_to_pay_form"},
                 {"event": "slot", "name": "amount", "value": 3000}]
    said, slots = answer("promise_to_pay", "date", "不对，是五千", intent="deny", confidence=0.9, before=this_flow)
    assert slots.get("amount") == 5000 and flowset().responses["corrected"].chat in texts(said), said


def test_a_name_corrected_after_l1_is_no_correction_the_session_stays_as_verified() -> None:
    # L1 passed with the name given; at the code step (L2) "不对，我叫…" would be said corrected while
    # the risk API's session stays verified with the first name: it is not taken as a correction.
    earlier = [{"event": "active_loop", "name": "change_bank_card_form"},
               {"event": "slot", "name": "customer_name", "value": "赵测己"},
               {"event": "slot", "name": "verified_level", "value": "L1"}]
    said, slots = answer("change_bank_card", "otp_code", "不对，我叫杨测戊", intent="deny", confidence=0.9,
                         before=earlier, verified_level="L1", customer_name="赵测己")
    assert "customer_name" not in slots and flowset().responses["corrected"].chat not in texts(said), said


# --- a question asked with the request that starts a flow -------------------------------------------


AFTER_ANSWER = flowset().responses["flow_after_answer"]


def test_a_question_asked_with_the_request_is_answered_before_the_flows_first_step_by_voice_too() -> None:
    said, slots = answer("early_repayment", None, "我要提前还清，有违约金吗", intent="early_repayment",
                         confidence=0.9, channel="voice")
    assert texts(said)[:2] == [FEE_ANSWER.voice, AFTER_ANSWER.voice], said
    assert {"knowledge": "early_repayment.fee"} in [message.get("custom") for message in said]
    assert slots["active_flow"] == "early_repayment"


@pytest.mark.parametrize("text", ["我想提前还款", "提前还款，手续费", "能帮我算一下提前还款要多少手续费吗"])
def test_a_request_alone_or_worded_as_a_question_is_the_flows_to_answer(text: str) -> None:
    said, slots = answer("early_repayment", None, text, intent="early_repayment", confidence=0.9)
    assert FEE_ANSWER.chat not in texts(said) and AFTER_ANSWER.chat not in texts(said), said
    assert not any((message.get("custom") or {}).get("knowledge") for message in said)
    assert slots.get("flow_exit") != "answered", said  # (the risk API is down here: the flow ends unavailable)


@pytest.mark.parametrize("channel", ["chat", "voice"])
def test_a_flows_request_asked_as_one_question_is_answered_and_the_flow_offered_not_started(channel: str) -> None:
    said, slots = answer("early_repayment", None, "提前还款的手续费怎么算", intent="early_repayment",
                         confidence=0.9, channel=channel)
    assert texts(said) == [FEE_ANSWER.chat if channel == "chat" else FEE_ANSWER.voice], said
    assert {"knowledge": "early_repayment.fee"} in [message.get("custom") for message in said]
    assert slots["flow_exit"] == "answered" and slots["requested_slot"] is None, "no identity asked for a rule"


def test_a_customer_already_verified_for_the_flow_gets_the_flow_for_the_same_question() -> None:
    said, slots = answer("early_repayment", None, "提前还款的手续费怎么算", intent="early_repayment",
                         confidence=0.9, verified_level="L2", customer_id="C100001")
    assert FEE_ANSWER.chat not in texts(said) and slots.get("flow_exit") != "answered", said


def test_a_question_the_knowledge_base_is_not_sure_of_starts_the_flow() -> None:
    said, slots = answer("bill_inquiry", None, "这期我该还多少呀", intent="bill_inquiry", confidence=0.9)
    assert not any((message.get("custom") or {}).get("knowledge") for message in said), said
    assert slots.get("flow_exit") != "answered", said  # (the risk API is down here: the flow ends unavailable)


def test_the_flow_answered_instead_of_started_is_offered_with_a_button_that_starts_it() -> None:
    dispatcher = CollectingDispatcher()
    message = {"text": "提前还款的手续费怎么算", "intent": {"name": "early_repayment", "confidence": 0.9}}
    tracker = Tracker("session-side", {"channel": "chat", "active_flow": "early_repayment", "flow_exit": "answered"},
                      message, [], False, None, {}, "action_listen")
    events = asyncio.run(flow_engine.FinishFlow().run(dispatcher, tracker, {}))
    flow = flowset().flows["early_repayment"]
    offer = flowset().responses["offer_flow"].chat.format(flow_name=flow.name)
    assert [(m["text"], m["buttons"]) for m in dispatcher.messages if m.get("text")] == [
        (offer, [{"title": flow.name, "payload": "/early_repayment"}])]
    assert {"flow": "early_repayment", "outcome": "answered"} in [m.get("custom") for m in dispatcher.messages]
    assert {"event": "slot", "name": "flow_exit", "value": None, "timestamp": None} in events


def test_an_outbound_flow_answers_nothing_before_the_right_party_is_on_the_line() -> None:
    said, _ = answer("overdue_reminder", None, "我想提前还款，手续费怎么算", intent="early_repayment",
                     confidence=0.9, channel="outbound")
    assert FEE_ANSWER.voice not in texts(said) and FEE_ANSWER.chat not in texts(said), said


def test_a_flow_without_identity_answers_the_question_itself() -> None:
    # The classifier puts "我想提前还款，手续费怎么算" in fee_inquiry, whose answer is the fee explanation.
    said, _ = answer("fee_inquiry", None, "我想提前还款，手续费怎么算", intent="fee_inquiry", confidence=0.77)
    assert FEE_ANSWER.chat not in texts(said) and AFTER_ANSWER.chat not in texts(said), said
