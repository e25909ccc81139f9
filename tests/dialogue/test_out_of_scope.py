"""Out of scope through the real stack (NLU, the generated rule, the action server)."""

from __future__ import annotations

import pytest

from bot.actions.conversation import flowset
from tests.conftest import Stack
from tests.dialogue.conftest import ChatSession


@pytest.mark.stack
def test_through_the_real_stack_the_out_of_scope_rule_runs_the_action(running_stack: Stack) -> None:
    session = ChatSession(running_stack)
    replies = session.send("今天天气怎么样")
    response = flowset().shared_intents["out_of_scope"].response
    assert response and [reply.get("text") for reply in replies] == [response.chat], session.dump()
    actions = [event["name"] for event in running_stack.tracker(session.sender)["events"] if event["event"] == "action"]
    assert "action_out_of_scope" in actions and "utter_out_of_scope" not in actions
