"""How the assistant behaves between the happy paths: answers given early, side questions,
changes of mind, repeats, escalation, verification carried across flows, and hand-offs that
depend on the customer's data. Real model, action server and risk API throughout."""

from __future__ import annotations

import re

import pytest

from flowspec.model import load_flowset
from risk_api.demo import customers_with_tag
from tests.conftest import Stack
from tests.dialogue.conftest import CUSTOMERS, ChatSession
from tests.dialogue.driver import run_flow

FLOWS = load_flowset().flows
pytestmark = pytest.mark.stack


def custom(replies: list[dict], key: str) -> list:
    return [reply["custom"][key] for reply in replies if key in (reply.get("custom") or {})]


def verify(session: ChatSession, customer: dict, replies: list[dict]) -> list[dict]:
    """Answer the identity questions the bot asks, as long as it asks them."""
    answers = {"phone_number": customer["phone"], "customer_name": customer["name"],
               "id_last4": customer["id_last4"]}
    while (asks := custom(replies, "expect")) and asks[-1]["slot"] in answers:
        replies = session.send(answers[asks[-1]["slot"]])
    return replies


def test_amount_in_the_request_is_not_asked_again(running_stack: Stack) -> None:
    session = ChatSession(running_stack)
    run = run_flow(session, FLOWS["partial_prepayment"], CUSTOMERS.take("normal"),
                   opening="我想提前还一部分本金，还三千元")
    assert run.outcome == "done", session.dump()
    assert "amount" not in run.asked
    assert any("3000" in text for text in run.texts), session.dump()


def test_side_question_is_answered_then_the_question_repeats(running_stack: Stack) -> None:
    session = ChatSession(running_stack)
    first = session.send("我想查一下我的额度")
    assert custom(first, "expect")[-1]["slot"] == "phone_number"
    replies = session.send("你是机器人吗")
    texts = " ".join(reply.get("text", "") for reply in replies)
    assert "智能" in texts or "机器人" in texts or "AI" in texts, session.dump()
    assert custom(replies, "expect")[-1]["slot"] == "phone_number", session.dump()


def test_changing_mind_mid_flow_cancels_without_action(running_stack: Stack) -> None:
    session = ChatSession(running_stack)
    session.send("我要把贷款提前全部还清")
    replies = session.send("算了，不办了")
    assert custom(replies, "outcome") == ["cancelled"], session.dump()


def test_asking_for_a_human_mid_flow_hands_off_with_the_flow(running_stack: Stack) -> None:
    session = ChatSession(running_stack)
    replies = verify(session, customers_with_tag("normal")[0], session.send("我想查一下账单"))
    assert custom(replies, "outcome") == ["answer"], session.dump()
    session.send("我想延期还款")
    replies = session.send("我要转人工")
    handoffs = custom(replies, "handoff")
    assert handoffs and handoffs[0]["flow"] == "repayment_deferral", session.dump()
    assert handoffs[0]["reason"] == load_flowset().flows["transfer_to_agent"].handoff.reason  # the customer asked
    assert "已完成基本身份核验" in handoffs[0]["summary"]


def test_new_request_mid_flow_switches_to_it(running_stack: Stack) -> None:
    session = ChatSession(running_stack)
    session.send("我想提前还清")
    replies = session.send("我想先查一下这个月的账单")
    assert custom(replies, "outcome") == ["switched"], session.dump()
    asks = custom(replies, "expect")
    assert asks and asks[-1] == {"slot": "phone_number", "type": "phone", "private": True}
    assert custom(replies, "expect") and "bill_inquiry" in str(replies[-1]), session.dump()


def test_unreadable_answer_is_asked_again_then_handed_off(running_stack: Stack) -> None:
    session = ChatSession(running_stack)
    replies = verify(session, customers_with_tag("normal")[0], session.send("我要延期还款"))
    assert custom(replies, "expect")[-1]["slot"] == "otp_code", session.dump()
    for attempt in range(3):
        replies = session.send("我记不清了")
        if attempt < 2:
            assert custom(replies, "expect")[-1]["slot"] == "otp_code", session.dump()
    assert custom(replies, "handoff"), session.dump()


def test_repeat_says_the_last_answer_again(running_stack: Stack) -> None:
    session = ChatSession(running_stack)
    replies = verify(session, customers_with_tag("normal")[0], session.send("帮我查查额度"))
    answer = [reply["text"] for reply in replies if reply.get("text")]
    again = [reply["text"] for reply in session.send("没听清，再说一遍") if reply.get("text")]
    assert again == answer, session.dump()


def test_verified_customer_is_not_asked_again_and_steps_up_with_a_code(running_stack: Stack) -> None:
    session = ChatSession(running_stack)
    customer = customers_with_tag("normal")[0]
    verify(session, customer, session.send("查一下我的额度"))
    replies = session.send("下一期什么时候还款")
    assert custom(replies, "outcome") == ["answer"], session.dump()
    replies = session.send("我想提前把借款全部还清")
    assert custom(replies, "expect")[-1]["slot"] == "otp_code", "L1 → L2 needs only the code"


def test_voice_caller_number_counts_toward_identity(running_stack: Stack) -> None:
    customer = customers_with_tag("normal")[0]
    session = ChatSession(running_stack, "voice", {"caller_number": customer["phone"]})
    replies = session.send("我想查额度")
    assert custom(replies, "expect")[-1]["slot"] == "customer_name", session.dump()


def test_outbound_reminder_names_no_debt_before_identity(running_stack: Stack) -> None:
    customer = customers_with_tag("overdue")[0]
    session = ChatSession(running_stack, "outbound", {"caller_number": customer["phone"]})
    replies = session.send("你们打电话来是说我逾期了吗")
    assert custom(replies, "expect")[-1]["slot"] == "right_party", session.dump()
    replies += session.send("是的，我就是")
    before_identity = " ".join(reply.get("text", "") for reply in replies)
    assert custom(replies, "expect")[-1]["slot"] == "customer_name", session.dump()
    assert not re.search(r"\d|元|逾期|欠款", before_identity), before_identity
    assert customer["salutation"] in before_identity, "the dialer's greeting names whom it calls"


@pytest.mark.parametrize(("tag", "hands_off"), [("disbursed_not_arrived", True), ("disbursed_today", False)])
def test_money_not_arrived_hands_off_only_after_a_working_day(running_stack: Stack, tag: str,
                                                              hands_off: bool) -> None:
    session = ChatSession(running_stack)
    run = run_flow(session, FLOWS["disbursement_not_received"], customers_with_tag(tag)[0])
    assert run.outcome == "answer"
    assert (run.handoff is not None) == hands_off, session.dump()


def test_confirmed_double_deduction_hands_off_for_refund(running_stack: Stack) -> None:
    session = ChatSession(running_stack)
    run = run_flow(session, FLOWS["deduction_issue"], customers_with_tag("duplicate_deduction")[0])
    assert run.handoff and run.handoff["flow"] == "deduction_issue", session.dump()


@pytest.mark.parametrize(("tag", "outcome"), [("recent_phone_change", "review"), ("recent_device_change", "step_up")])
def test_card_change_on_risky_account_is_reviewed_or_stepped_up(running_stack: Stack, tag: str,
                                                                outcome: str) -> None:
    session = ChatSession(running_stack)
    run = run_flow(session, FLOWS["change_bank_card"], CUSTOMERS.take(tag))
    assert run.outcome == outcome, session.dump()
    if outcome == "review":
        assert run.handoff and run.handoff["reason"], "risk review hands off with the summary"
