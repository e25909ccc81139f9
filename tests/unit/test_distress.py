"""A customer who may be in danger: whatever was under way stops, they hear that someone cares and
where help is, and a person is asked for at the highest priority — outside a flow (action_distress)
and inside one (the form's `distress` exit, then action_finish_flow). Driven through the actions
with rasa-sdk's tracker and the risk API down: the hand-over must happen without it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from bot.actions.conversation import flowset
from bot.actions.flow_engine import FinishFlow, FlowExit
from bot.actions.handoff import DISTRESS_REASON
from bot.actions.shared_actions import ActionDistress

pytestmark = pytest.mark.usefixtures("risk_api_down")
PHRASES = Path(__file__).resolve().parents[2] / "ivr_config" / "quality" / "phrases.yaml"


def run(action: Action, channel: str, text: str, **slots: Any) -> list[dict[str, Any]]:
    message = {"text": text, "intent": {"name": "distress", "confidence": 1.0}}
    events = [{"event": "user", "text": text, "parse_data": message, "timestamp": 1.0}]
    tracker = Tracker("session-distress", {"channel": channel, **slots}, message, events, False, None, {},
                      "action_listen")
    dispatcher = CollectingDispatcher()
    asyncio.run(action.run(dispatcher, tracker, {}))
    return dispatcher.messages


def handoff_of(said: list[dict[str, Any]]) -> dict[str, Any]:
    handoffs = [message["custom"]["handoff"] for message in said if (message.get("custom") or {}).get("handoff")]
    assert len(handoffs) == 1, said
    return handoffs[0]


@pytest.mark.parametrize(("channel", "help_line"), [("chat", "12356"), ("voice", "幺二三五六")])
def test_outside_a_flow_the_customer_hears_where_help_is_and_a_person_comes_at_once(
        channel: str, help_line: str) -> None:
    said = run(ActionDistress(), channel, "我走投无路了")
    care = flowset().shared_intents["distress"].response
    assert care is not None
    assert said[0]["text"] == (care.chat if channel == "chat" else care.voice)
    assert help_line in said[0]["text"]
    handoff = handoff_of(said)
    assert (handoff["flow"], handoff["priority"], handoff["reason"]) == ("distress", "emergency", DISTRESS_REASON)
    assert "轻生或极端情绪" in handoff["summary"]
    # What the agent reads first names the danger, not "an unplaced question".
    assert "流露出轻生或极端情绪" in handoff["summary"] and "未识别的问题" not in handoff["summary"]


def test_in_a_flow_the_form_ends_with_the_same_care_instead_of_the_flows_own_ending() -> None:
    counted = {"flow": "complaint", "outcome": "handoff", "channel": "chat"}
    before = REGISTRY.get_sample_value("ivr_bot_flow_outcomes_total", counted) or 0.0
    said = run(FinishFlow(), "chat",
               "我不想活了", active_flow="complaint", flow_exit=FlowExit("distress").encode())
    assert "12356" in said[0]["text"]
    handoff = handoff_of(said)
    assert (handoff["flow"], handoff["priority"]) == ("complaint", "emergency")
    outcome = [message["custom"] for message in said if (message.get("custom") or {}).get("outcome")]
    assert outcome == [{"flow": "complaint", "outcome": "handoff"}]
    assert REGISTRY.get_sample_value("ivr_bot_flow_outcomes_total", counted) == before + 1, "the metric the board reads"


def test_whoever_answered_an_outbound_call_hears_nothing_of_an_account() -> None:
    # The care words go to anyone who says them, the customer or not (the right-party check
    # may not even have been answered): none of the words a third party must not hear.
    debt_words = yaml.safe_load(PHRASES.read_text(encoding="utf-8"))["debt_detail"]
    said = run(ActionDistress(), "outbound", "我不想活了")
    assert not [word for word in debt_words if word in said[0]["text"]]
