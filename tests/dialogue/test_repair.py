"""Conversation repair through the real stack: at an identity step of an L2 flow, a question
asked instead of the answer gets the knowledge base's answer and the same step again; "那继续吧"
goes on with it, and the flow still needs the identity it needed. A name corrected at the next
step ("不对，我叫…") is the name the risk API verifies. "我忘了" at an identity step gets where to
find the answer, and "验证码没收到" a new code. A question asked with the request ("我要提前还清，
有违约金吗") is answered before the flow's first step; a flow's request asked as one question
("注销账户要什么条件") is answered, and the flow offered instead of started."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowspec.model import repository_flowset
from knowledge.model import load_entries
from risk_api.demo import customers_with_tag
from tests.conftest import Stack
from tests.dialogue.conftest import CUSTOMERS, ChatSession

FEE_ANSWER = next(entry for entry in load_entries() if entry.id == "early_repayment.fee").chat
CLOSE_CONDITIONS = next(entry for entry in load_entries() if entry.id == "account.close_conditions").chat
GO_ON = repository_flowset().responses["resume_flow"].chat
AFTER_ANSWER = repository_flowset().responses["flow_after_answer"].chat


def texts(replies: list[dict[str, Any]]) -> list[str]:
    return [reply["text"] for reply in replies if reply.get("text")]


@pytest.mark.stack
def test_a_side_question_at_an_identity_step_is_answered_and_the_step_asked_again(running_stack: Stack) -> None:
    session = ChatSession(running_stack)
    step = texts(session.send("我想提前还款"))[-1]
    side = texts(session.send("等一下，我先问下提前还要手续费吗"))
    assert side[:2] == [FEE_ANSWER, GO_ON], session.dump()
    assert side[-1] == step, session.dump()
    carry_on = texts(session.send("那继续吧"))
    assert carry_on == [GO_ON, step], session.dump()


@pytest.mark.stack
def test_a_question_asked_with_the_request_is_answered_and_the_request_carried_out(running_stack: Stack) -> None:
    plain = ChatSession(running_stack)
    request_alone = plain.send("我想提前还款")
    first_step = texts(request_alone)
    assert FEE_ANSWER not in first_step and asked(request_alone), plain.dump()
    session = ChatSession(running_stack)
    replies = session.send("我要提前还清，有违约金吗")
    assert texts(replies) == [FEE_ANSWER, AFTER_ANSWER, *first_step], session.dump()
    assert {"knowledge": "early_repayment.fee"} in [reply.get("custom") for reply in replies], session.dump()
    assert asked(replies) == asked(request_alone), session.dump()


@pytest.mark.stack
def test_a_flows_request_asked_as_one_question_is_answered_and_the_flow_offered_not_started(
        running_stack: Stack) -> None:
    flows = repository_flowset()
    flow = flows.flows["close_account"]
    request = asked(ChatSession(running_stack).send("我要注销账户"))
    assert request, "the request alone starts the flow with an identity step"
    session = ChatSession(running_stack)
    replies = session.send("注销账户要什么条件")
    offer = flows.responses["offer_flow"].chat.format(flow_name=flow.name)
    assert texts(replies) == [CLOSE_CONDITIONS, offer] and not asked(replies), session.dump()
    assert {"knowledge": "account.close_conditions"} in [reply.get("custom") for reply in replies], session.dump()
    buttons = [button for reply in replies for button in reply.get("buttons") or []]
    # The payload comes with its MAC for this session (trust/chat_session.py): clicked, it starts the flow.
    assert [(button["title"], button["payload"].split("#")[0]) for button in buttons] == [(flow.name, "/close_account")]
    assert asked(session.send(buttons[0]["payload"])) == request, session.dump()


def asked(replies: list[dict[str, Any]]) -> list[str]:
    customs = (reply.get("custom") or {} for reply in replies)
    return [custom["expect"]["slot"] for custom in customs if "expect" in custom]


@pytest.mark.stack
def test_a_name_corrected_at_the_next_step_is_the_name_the_risk_api_verifies(running_stack: Stack) -> None:
    persona = CUSTOMERS.for_flow(repository_flowset().flows["bill_inquiry"])
    wrong_name = persona["name"][:-1] + ("甲" if persona["name"][-1] != "甲" else "乙")
    session = ChatSession(running_stack)
    assert asked(session.send("我想查账单")) == ["phone_number"], session.dump()
    assert asked(session.send(persona["phone"])) == ["customer_name"], session.dump()
    assert asked(session.send(wrong_name)) == ["id_last4"], session.dump()
    corrected = session.send(f"不对，我叫{persona['name']}")
    assert texts(corrected)[0] == repository_flowset().responses["corrected"].chat, session.dump()
    assert asked(corrected) == ["id_last4"], session.dump()
    finished = session.send(persona["id_last4"])
    customs = (reply.get("custom") or {} for reply in finished)
    outcomes = [custom["outcome"] for custom in customs if "outcome" in custom]
    assert outcomes == ["answer"], session.dump()


def codes_sent(stack: Stack, phone: str) -> int:
    lines = stack.outbox.read_text(encoding="utf-8").splitlines() if stack.outbox.exists() else []
    return sum(1 for line in lines if json.loads(line).get("to") == phone and json.loads(line).get("code"))


@pytest.mark.stack
def test_not_knowing_an_identity_answer_gets_where_to_find_it_and_a_code_not_received_comes_again(
        running_stack: Stack) -> None:
    flows = repository_flowset()
    identity = {slot.name: slot for slot in flows.identity_slots}
    # An L2 flow (the code step too) that never reaches its action: no acting customer is used up
    # (CUSTOMERS), and none whose hourly code quota other tests spend.
    persona = customers_with_tag("settled")[-1]
    session = ChatSession(running_stack)
    assert asked(session.send("我要换银行卡")) == ["phone_number"], session.dump()
    assert asked(session.send(persona["phone"])) == ["customer_name"], session.dump()
    assert asked(session.send(persona["name"])) == ["id_last4"], session.dump()
    forgot = session.send("我忘了身份证后四位")
    assert texts(forgot) == [identity["id_last4"].help.chat, identity["id_last4"].reprompt.chat], session.dump()
    assert asked(forgot) == ["id_last4"], session.dump()
    assert asked(session.send(persona["id_last4"])) == ["otp_code"], session.dump()
    sent = codes_sent(running_stack, persona["phone"])
    missing = session.send("验证码没收到")
    assert texts(missing)[0] == identity["otp_code"].help.chat and asked(missing) == ["otp_code"], session.dump()
    assert codes_sent(running_stack, persona["phone"]) == sent + 1, "a new code, as the help says"
    code = running_stack.latest_otp(persona["phone"])
    assert asked(session.send(code)) == ["bank"], session.dump()  # verified: the flow's own questions
