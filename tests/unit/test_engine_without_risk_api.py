"""The flow engine when the risk-check API is down: the customer hears that nothing changed
and is handed to a human; no exception escapes. The API address is a real loopback port with
nothing listening (conftest.py `risk_api_down`), so the failure is a real refused connection,
not a mock."""

from __future__ import annotations

import asyncio
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from bot.actions.flow_engine import GENERATED_ACTIONS, FinishFlow


def tracker(slots: dict[str, Any], text: str = "", intent: str = "inform") -> Tracker:
    message = {"text": text, "intent": {"name": intent, "confidence": 0.99}}
    events = [{"event": "user", "text": text, "parse_data": message, "timestamp": 1.0}]
    return Tracker("session-1", {"channel": "chat", **slots}, message, events, False, None, {}, "action_listen")


def payloads(dispatcher: CollectingDispatcher, key: str) -> list[Any]:
    return [m["custom"][key] for m in dispatcher.messages if key in (m.get("custom") or {})]


def test_payoff_with_risk_api_down_changes_nothing_and_hands_off(risk_api_down: None) -> None:
    dispatcher = CollectingDispatcher()
    slots = {"active_flow": "early_repayment", "customer_id": "C100001", "verified_level": "L2",
             "confirmed": True}
    asyncio.run(FinishFlow().run(dispatcher, tracker(slots, "确认"), {}))
    texts = [m["text"] for m in dispatcher.messages if m.get("text")]
    assert any("没有任何变更" in text for text in texts), texts
    assert payloads(dispatcher, "outcome") == ["unavailable"]
    handoff = payloads(dispatcher, "handoff")[0]
    assert handoff["flow"] == "early_repayment" and "不可用" in handoff["reason"]


def test_identity_check_with_risk_api_down_ends_the_form_for_a_handoff(risk_api_down: None) -> None:
    validator = next(c for c in GENERATED_ACTIONS if c().name() == "validate_check_credit_limit_form")()
    slots = {"requested_slot": "id_last4", "phone_number": "19900000001", "customer_name": "杨测戊"}
    events = asyncio.run(validator.run(CollectingDispatcher(), tracker(slots, "0004"), {}))
    slot_events = {e["name"]: e["value"] for e in events if e["event"] == "slot"}
    assert slot_events["flow_exit"] == "unavailable"
    assert slot_events["requested_slot"] is None, "the form ends so the finish action can hand off"
