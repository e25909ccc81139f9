"""Odd messages get an answer, never a crash; malformed requests get a clear 400."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Stack
from tests.dialogue.conftest import ChatSession

ODD_MESSAGES = {
    "empty": "",
    "whitespace": "   ",
    "very_long": "我想问一下我的账单" * 560,  # ~5,000 characters
    "emoji_only": "😡😡😡🙏🙏",
    "mixed_script": "hello 我想 check 一下 my 额度 please 123",
    "markup": "<script>alert(1)</script>",
}


@pytest.mark.stack
@pytest.mark.parametrize("kind", sorted(ODD_MESSAGES))
def test_odd_message_gets_an_answer(running_stack: Stack, kind: str) -> None:
    session = ChatSession(running_stack)
    replies = session.send(ODD_MESSAGES[kind])
    assert any(reply.get("text") for reply in replies), f"no answer to {kind}: {replies}"
    # the conversation still works afterwards
    assert any(reply.get("text") for reply in session.send("你好"))


@pytest.mark.stack
def test_malformed_json_is_a_400(running_stack: Stack) -> None:
    response = httpx.post(f"{running_stack.rasa_url}/webhooks/chat/webhook",
                          content=b'{"sender": "x", "message": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 400


@pytest.mark.stack
def test_low_confidence_twice_hands_off(running_stack: Stack) -> None:
    session = ChatSession(running_stack)
    first = session.send("叽里呱啦乌拉乌拉")
    second = session.send("咕噜咕噜巴拉巴拉")
    assert not any("handoff" in (m.get("custom") or {}) for m in first), session.dump()
    handoffs = [m["custom"]["handoff"] for m in second if "handoff" in (m.get("custom") or {})]
    assert handoffs and handoffs[0]["flow"] == "clarify", session.dump()
