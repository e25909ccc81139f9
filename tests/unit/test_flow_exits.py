"""Why a form ends early, decided from the intent and confidence NLU gives (no trained model
here: these branches must not depend on a retrain), and how it travels in the `flow_exit` slot."""
from __future__ import annotations

import pytest

from bot.actions.conversation import flowset
from bot.actions.flow_engine import FlowExit, Validate_complaint

ESCAPE = Validate_complaint()
COMPLAINT = flowset().flows["complaint"]


def escape(requested: str, text: str, intent: str | None, confidence: float = 0.95) -> FlowExit | None:
    return ESCAPE._escape(COMPLAINT, requested, text, intent, confidence, "speech")


def test_asking_for_a_person_mid_form_hands_over_with_the_transfer_flows_reason() -> None:
    reason = flowset().flows["transfer_to_agent"].handoff.reason_for("speech")
    assert escape("complaint_text", "转人工", "transfer_to_agent") == FlowExit("handoff", reason)


def test_anger_hands_over_in_a_flow_whose_rule_says_so() -> None:
    assert escape("complaint_text", "你们这什么破系统！！", "complaint", 0.6) == FlowExit("handoff", "客户情绪激动")


def test_goodbye_cancels_and_another_flow_switches() -> None:
    assert escape("complaint_text", "不用了再见", "goodbye") == FlowExit("cancel")
    assert escape("wants_human", "查一下账单", "bill_inquiry") == FlowExit("switch", "bill_inquiry")
    # Free text is an answer however it reads: the complaint may well mention a bill.
    assert escape("complaint_text", "我要查账单", "bill_inquiry") is None


def test_an_unsure_guess_or_a_yes_no_answer_stays_in_the_form() -> None:
    assert escape("wants_human", "查一下账单", "bill_inquiry", 0.5) is None
    # "需要，转人工吧" answers "shall I transfer you?": an answer, not an escape.
    assert escape("wants_human", "需要，转人工吧", "transfer_to_agent") is None


@pytest.mark.parametrize("escape_", [FlowExit("cancel"), FlowExit("handoff", "客户说：马上处理"),
                                     FlowExit("switch", "bill_inquiry"), FlowExit("handed_off")])
def test_an_exit_survives_the_slot_it_travels_in(escape_: FlowExit) -> None:
    assert FlowExit.decode(escape_.encode()) == escape_
    assert FlowExit.decode(None) is None and FlowExit.decode("") is None


def test_distress_ends_the_form_before_anything_else_is_read_into_it() -> None:
    # 不想活了 holds 不: to a yes/no question it would otherwise be an answer.
    assert escape("wants_human", "我真的不想活了", "distress", 1.0) == FlowExit("distress")
    assert escape("complaint_text", "被逼得活不下去了", "distress", 1.0) == FlowExit("distress")
