"""A customer in distress, through the real stack (NLU, rules, forms, actions, risk API): the
word list catches what the classifier may not, in or out of a flow; the conversation stops and a
person is asked for at the highest priority, on the desk's list first."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Stack
from tests.dialogue.conftest import ChatSession


def handoffs(replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [reply["custom"]["handoff"] for reply in replies if "handoff" in (reply.get("custom") or {})]


def on_the_desk(stack: Stack, handoff_id: str) -> dict[str, Any]:
    with stack.risk_api("desk") as api:
        waiting = api.get("/handoffs", params={"status": "waiting", "priority": "emergency", "limit": 500}).json()
    return next(item for item in waiting if item["handoff_id"] == handoff_id)


@pytest.mark.stack
def test_a_word_of_the_distress_list_out_of_a_flow_brings_care_and_an_emergency_hand_over(
        running_stack: Stack) -> None:
    session = ChatSession(running_stack)
    replies = session.send("我真的走投无路了")
    assert any("12356" in (reply.get("text") or "") for reply in replies), session.dump()
    [handoff] = handoffs(replies)
    assert handoff["priority"] == "emergency", session.dump()
    assert on_the_desk(running_stack, handoff["handoff_id"])["priority"] == "emergency"


@pytest.mark.stack
def test_distress_in_the_middle_of_a_flow_ends_it_with_care_not_with_the_next_question(
        running_stack: Stack) -> None:
    session = ChatSession(running_stack)
    session.send("我要投诉")
    replies = session.send("不想 活了！")  # spaces and punctuation: still the word list's 不想活了
    texts = " ".join(reply.get("text") or "" for reply in replies)
    assert "12356" in texts, session.dump()
    [handoff] = handoffs(replies)
    assert (handoff["flow"], handoff["priority"]) == ("complaint", "emergency"), session.dump()
