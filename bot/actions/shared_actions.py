"""Actions outside any flow: session start, clarification on low confidence, repeat."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, EventType, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from bot.actions.conversation import Turn
from bot.actions.handoff import hand_off

CHANNELS = ("voice", "chat", "outbound")
MISSES_BEFORE_HANDOFF = 2


class ActionSessionStart(Action):
    """Carries the channel's metadata (channel, caller number, priority tier) into slots.

    Only Rasa's trusted channel (the phone gateway, the dialer) can set these; the public chat
    channels set `channel: chat` themselves and pass nothing from the client (bot/channels.py).
    """

    def name(self) -> str:
        return "action_session_start"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> list[EventType]:
        metadata: dict[str, Any] = tracker.get_slot("session_started_metadata") or {}
        channel = metadata.get("channel") if metadata.get("channel") in CHANNELS else "chat"
        events: list[EventType] = [SessionStarted(), SlotSet("channel", channel)]
        if metadata.get("caller_number"):
            events.append(SlotSet("caller_number", str(metadata["caller_number"])))
        if metadata.get("priority_tier"):
            events.append(SlotSet("priority_tier", str(metadata["priority_tier"])))
        events.append(ActionExecuted("action_listen"))
        return events


class ActionClarify(Action):
    """Low NLU confidence: ask to rephrase once; on the second miss in a row, hand off."""

    def name(self) -> str:
        return "action_clarify"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> list[EventType]:
        turn = await Turn.start(tracker, dispatcher)
        misses = 0
        for event in reversed(tracker.events):
            if event.get("event") != "user":
                continue
            if (event.get("parse_data") or {}).get("intent", {}).get("name") != "nlu_fallback":
                break
            misses += 1
        if misses < MISSES_BEFORE_HANDOFF:
            turn.say(turn.response("clarify"), {})
            return []
        turn.say(turn.response("clarify_handoff"), {})
        await hand_off(turn, None, "escalated", "连续两次未能理解客户意图", "normal", {}, announce=False)
        return turn.events


class ActionRepeat(Action):
    """再说一遍: say again what the bot said last turn."""

    def name(self) -> str:
        return "action_repeat"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> list[EventType]:
        said: list[dict[str, Any]] = []
        users_seen = 0
        for event in reversed(tracker.events):
            if event.get("event") == "user":
                users_seen += 1
                if users_seen == 2:
                    break
            elif event.get("event") == "bot" and users_seen == 1 and event.get("text"):
                said.append(event)
        for event in reversed(said):
            dispatcher.utter_message(text=event["text"])
        if not said:
            turn = await Turn.start(tracker, dispatcher)
            turn.say(turn.response("how_can_help"), {})
        return []
