"""Conversation repair through the real stack: at an identity step of an L2 flow, a question
asked instead of the answer gets the knowledge base's answer and the same step again; "那继续吧"
goes on with it, and the flow still needs the identity it needed. A name corrected at the next
step ("不对，我叫…") is the name the risk API verifies."""

from __future__ import annotations

from typing import Any

import pytest

from flowspec.model import repository_flowset
from knowledge.model import load_entries
from tests.conftest import Stack
from tests.dialogue.conftest import CUSTOMERS, ChatSession

FEE_ANSWER = next(entry for entry in load_entries() if entry.id == "early_repayment.fee").chat
GO_ON = repository_flowset().responses["resume_flow"].chat


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
