"""Drives one flow through the real assistant the way a customer would.

The engine tells the channel what it asks (`expect`) and how a flow ended (`outcome`); the
driver answers each question from the persona's credentials, the SMS outbox and the flow's
`tests.say`, as text on chat and as spoken Chinese digits on voice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from flowspec.model import Flow
from flowspec.templates import placeholders, render
from tests.dialogue.conftest import ChatSession

MAX_TURNS = 14
SPOKEN_DIGITS = dict(zip("0123456789", "零一二三四五六七八九", strict=True))


def spoken(digits: str, channel: str) -> str:
    """How speech recognition writes digits the caller says: 一二三四."""
    return digits if channel == "chat" else "".join(SPOKEN_DIGITS.get(char, char) for char in digits)


@dataclass
class FlowRun:
    messages: list[dict[str, Any]] = field(default_factory=list)
    outcome: str | None = None
    asked: list[str] = field(default_factory=list)
    last_texts: list[str] = field(default_factory=list)  # what the bot said when the flow ended

    @property
    def texts(self) -> list[str]:
        return [message["text"] for message in self.messages if message.get("text")]

    def payloads(self, key: str) -> list[Any]:
        return [m["custom"][key] for m in self.messages if key in (m.get("custom") or {})]

    @property
    def handoff(self) -> dict[str, Any] | None:
        handoffs = self.payloads("handoff")
        return handoffs[-1] if handoffs else None


def run_flow(session: ChatSession, flow: Flow, persona: dict[str, Any],
             wrong_id_last4: bool = False, opening: str | None = None) -> FlowRun:
    run = FlowRun()
    replies = session.send(opening or flow.examples[0])
    for _ in range(MAX_TURNS):
        run.messages += replies
        outcomes = [c["outcome"] for c in (m.get("custom") or {} for m in replies) if "outcome" in c]
        if outcomes:
            run.outcome = outcomes[-1]
            run.last_texts = [message["text"] for message in replies if message.get("text")]
            return run
        asks = [c["expect"] for c in (m.get("custom") or {} for m in replies) if "expect" in c]
        assert asks, f"the bot neither asked nor finished:\n{session.dump()}"
        slot = asks[-1]["slot"]
        run.asked.append(slot)
        replies = session.send(_answer(slot, flow, persona, session, wrong_id_last4))
    raise AssertionError(f"{flow.id} did not finish in {MAX_TURNS} turns:\n{session.dump()}")


def _answer(slot: str, flow: Flow, persona: dict[str, Any], session: ChatSession, wrong_id: bool) -> str:
    channel = session.metadata["channel"]
    if slot == "phone_number":
        return spoken(persona["phone"], channel)
    if slot == "customer_name":
        return persona["name"]
    if slot == "id_last4":
        real = persona["id_last4"]
        return spoken("1357" if real != "1357" else "2468", channel) if wrong_id else spoken(real, channel)
    if slot == "otp_code":
        return spoken(session.stack.latest_otp(persona["phone"]), channel)
    if slot == "confirmed":
        return "确认办理"
    if slot == "right_party":  # an outbound call's opening: 请问是X先生/女士本人吗？
        return "是的，我就是"
    if any(s.name == slot and s.type == "phone" for s in flow.slots):
        # A new phone number must belong to nobody yet: a fresh one per conversation.
        return spoken(f"198{random.randrange(10**8):08d}", channel)
    answer = str(flow.raw["tests"]["say"][slot])
    if placeholders(answer):
        # An answer that depends on the customer's data ("{cards.cards.1.tail}"): read it the
        # way the bot does, with this conversation's verified session.
        with session.stack.risk_api() as api:
            data = {root: api.get(f"/customers/{persona['customer_id']}/{root}",
                                  params={"session_id": session.sender}).json()
                    for root in {name.split(".")[0] for name in placeholders(answer)}}
        answer = render(answer, data)
    return answer
