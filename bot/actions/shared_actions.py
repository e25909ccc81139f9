"""Actions outside any flow: session start, clarification on low confidence, out of scope, a
customer in distress, repeat."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, EventType, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from bot.actions.conversation import Turn, flowset
from bot.actions.handoff import care_for_distress, hand_off
from bot.actions.knowledge_answers import DIRECT_ANSWER_CONFIDENCE, consult_knowledge
from flowspec.model import Flow
from knowledge.retrieval import Answer

CHANNELS = ("voice", "chat", "outbound")
MISSES_BEFORE_HANDOFF = 2
# A flow the NLU gives less than this is not worth offering (the fallback threshold is 0.15:
# below it anything is a guess, but two close guesses are still the customer's likely request).
MIN_CHOICE_CONFIDENCE = 0.05


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


def misses_in_a_row(events: list[dict[str, Any]]) -> int:
    """The customer's latest messages the NLU could not place, this one included, up to one it
    placed or one the knowledge base answered."""
    misses, answered = 0, False
    for event in reversed(events):
        if event.get("event") == "bot" and ((event.get("data") or {}).get("custom") or {}).get("knowledge"):
            answered = True
        if event.get("event") != "user":
            continue
        if answered or (event.get("parse_data") or {}).get("intent", {}).get("name") != "nlu_fallback":
            break
        misses += 1
    return misses


def likely_flows(message: dict[str, Any]) -> list[Flow]:
    """The two flows the NLU ranked highest for a message it was not sure of, when flows are what
    it found most likely; none when its best guess is not a flow (out of scope, a greeting…) or a
    second flow is too unlikely to offer."""
    ranking = [entry for entry in message.get("intent_ranking") or [] if entry.get("name") != "nlu_fallback"]
    flows = flowset().flows
    if not ranking or ranking[0].get("name") not in flows:
        return []
    likely = [flows[entry["name"]] for entry in ranking
              if entry.get("name") in flows and float(entry.get("confidence") or 0) >= MIN_CHOICE_CONFIDENCE][:2]
    return likely if len(likely) == 2 else []


def guarded(turn: Turn, tracker: Tracker) -> bool:
    """An outbound call before the customer is confirmed on the line: whoever answered hears
    nothing that hints at an account (no answer, no flow named)."""
    return turn.channel == "outbound" and tracker.get_slot("right_party") != "confirmed"


async def answered_from_knowledge(turn: Turn, tracker: Tracker) -> tuple[bool, Answer | None]:
    """Whether the knowledge base answered the customer's message (said, with the entry for
    agents and metrics), and what it found either way. Unanswered, the nearest entry goes along
    as `knowledge_nearest` (the quality figures group unanswered questions by it)."""
    text = str((tracker.latest_message or {}).get("text") or "")
    if not text or text.startswith("/") or guarded(turn, tracker):
        return False, None
    consulted = await consult_knowledge(text, turn.channel)
    answer = consulted.answer
    if answer and answer.text and answer.confidence >= DIRECT_ANSWER_CONFIDENCE:
        turn.say_knowledge(answer)
        return True, answer
    if consulted.nearest and not (answer and answer.flow):  # a flow's request is offered its flow: not unanswered
        turn.signal({"knowledge_nearest": consulted.nearest})
    return False, answer


class ActionOutOfScope(Action):
    """The NLU is sure no flow fits: the knowledge base's answer when it has one (有没有线下网点,
    通话有没有录音 are questions of this business the classifier calls out of scope), else what
    the assistant can do."""

    def name(self) -> str:
        return "action_out_of_scope"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> list[EventType]:
        turn = await Turn.start(tracker, dispatcher)
        answered, _ = await answered_from_knowledge(turn, tracker)
        if answered:
            return []
        services = flowset().shared_intents["out_of_scope"].response
        # Whoever answered an outbound call before the check hears no list of account services.
        turn.say(turn.response("clarify") if guarded(turn, tracker) or not services else services, {})
        return []


class ActionClarify(Action):
    """Low NLU confidence: the knowledge base's answer when it has one; else ask which of the
    likely flows (or to rephrase) once, and on the second miss in a row, hand off."""

    def name(self) -> str:
        return "action_clarify"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> list[EventType]:
        turn = await Turn.start(tracker, dispatcher)
        answered, answer = await answered_from_knowledge(turn, tracker)
        if answered:
            return []
        guarded_call = guarded(turn, tracker)
        if misses_in_a_row(tracker.events) < MISSES_BEFORE_HANDOFF:
            flows = flowset().flows
            known = answer.flow if answer and answer.flow in flows else None
            likely = [flows[known]] if known else [] if guarded_call else likely_flows(tracker.latest_message or {})
            # The chat's buttons start the flow (its intent) or hand over; the voice names them.
            buttons = tuple({"title": flow.name, "payload": f"/{flow.id}"} for flow in likely)
            person = {"title": "都不是，转人工", "payload": "/transfer_to_agent"}
            if len(likely) == 2:
                turn.say(replace(turn.response("clarify_choices"), buttons=(*buttons, person)),
                         {"first": likely[0].name, "second": likely[1].name})
            elif likely:  # the knowledge base knows the flow that handles this
                turn.say(replace(turn.response("clarify_flow"), buttons=(*buttons, person)), {"first": likely[0].name})
            else:
                turn.say(turn.response("clarify"), {})
            return []
        turn.say(turn.response("clarify_handoff"), {})
        await hand_off(turn, None, "escalated", "连续两次未能理解客户意图", "normal", {}, announce=False)
        return turn.events


class ActionDistress(Action):
    """The customer may be in danger, outside any flow (in a flow, the form's validation ends it
    the same way): care, where help is, and a person at the highest priority."""

    def name(self) -> str:
        return "action_distress"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> list[EventType]:
        turn = await Turn.start(tracker, dispatcher)
        await care_for_distress(turn, None, {})
        return turn.events


SENTENCE_ENDS = "。！？；"


def unheard_part(said: list[str], metadata: dict[str, Any]) -> str | None:
    """On the phone, after the caller cut the bot short: from the sentence they cut into to the
    end of what the bot had to say (the phone gateway sends what was playing and how much of it
    was heard). None when there is no such report, or it is not the end of what the bot said."""
    heard = metadata.get("heard")
    if not isinstance(heard, dict):
        return None
    text, part = heard.get("text"), heard.get("heard")
    if not (isinstance(text, str) and isinstance(part, str) and text and text.startswith(part)
            and "".join(said).endswith(text)):
        return None
    cut = max(part.rfind(end) for end in SENTENCE_ENDS) + 1  # the start of the sentence cut into
    return text[cut:] or None


class ActionRepeat(Action):
    """再说一遍: say again what the bot said last turn — on the phone, after a barge-in, from the
    sentence the caller cut into (what came before it was heard)."""

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
        said.reverse()
        unheard = unheard_part([event["text"] for event in said], (tracker.latest_message or {}).get("metadata") or {})
        if unheard:
            dispatcher.utter_message(text=unheard)
            return []
        for event in said:
            dispatcher.utter_message(text=event["text"])
        if not said:
            turn = await Turn.start(tracker, dispatcher)
            turn.say(turn.response("how_can_help"), {})
        return []
