"""What every engine action shares for one turn: the flows, the risk API, how to speak.

`Turn` wraps rasa-sdk's tracker and dispatcher: which channel the customer is on (voice and
outbound calls get the short voice wording, chat may get buttons), who they are, and how far
they are verified. Who they are comes from the risk API's verified session for this
conversation, asked afresh for every customer message (`Turn.start`; the actions answering one
message share the answer): the `customer_id` and `verified_level` slots are only a copy for
templates, never trusted — a slot can be forged, and a verified session ends after 30 minutes
while the conversation goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from rasa_sdk import Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from bot.actions.risk_client import RiskApiClient, RiskApiRefused, RiskApiUnavailable
from bot.metrics import record_flow_signal
from flowspec.model import LEVELS, Flow, FlowSet, Response, repository_flowset
from flowspec.templates import TemplateError, render
from trust.logs import session_ref

if TYPE_CHECKING:
    from knowledge.retrieval import Answer

log = logging.getLogger("flow")
PRIORITIES = ("normal", "high", "emergency")
NOT_VERIFIED = "none"


def flowset() -> FlowSet:
    return repository_flowset()


@cache
def risk_client() -> RiskApiClient:
    return RiskApiClient.from_env()


def turn_key(tracker: Tracker) -> str | None:
    """What the actions of one turn share the session answer by (`TurnSessions`): the customer
    message they answer (its time and id) and the identity slots the tracker carries, which an
    action that verified or found the session ended has just changed. None before any message."""
    message = next((event for event in reversed(tracker.events) if event.get("event") == "user"), None)
    if message is None:
        return None
    slots = tracker.slots
    return (f"{message.get('timestamp')}/{message.get('message_id')}/"
            f"{slots.get('customer_id')}/{slots.get('verified_level')}")


def level_rank(level: str | None) -> int:
    return LEVELS.index(level or NOT_VERIFIED)


def higher_priority(first: str | None, second: str | None) -> str:
    ranked = [p for p in (first, second) if p in PRIORITIES] or ["normal"]
    return max(ranked, key=PRIORITIES.index)


@dataclass(frozen=True)
class Identity:
    """The risk API's verified session for this conversation."""

    customer_id: str | None = None
    level: str = NOT_VERIFIED
    known: bool = True  # False: the risk API could not be asked this turn


class Turn:
    def __init__(self, tracker: Tracker, dispatcher: CollectingDispatcher, identity: Identity) -> None:
        self.tracker = tracker
        self.dispatcher = dispatcher
        # Set only by action_session_start from a trusted channel's metadata (bot/channels.py).
        self.channel: str = tracker.get_slot("channel") or "chat"
        self.session_id: str = tracker.sender_id
        self.identity = identity
        # Events the turn's work adds beside the action's own (a hand-over pausing the chat).
        self.events: list[EventType] = []

    @classmethod
    async def start(cls, tracker: Tracker, dispatcher: CollectingDispatcher, *, again: bool = False) -> Turn:
        """The turn with the risk API's word on identity; `again`: asked even when an earlier
        action answering the same message asked (the risk API has just refused something)."""
        client = risk_client()
        if again:
            client.turn_sessions.forget(tracker.sender_id)
        try:
            session = await client.session(tracker.sender_id, turn_key(tracker))
            identity = Identity(session["customer_id"], session["level"]) if session else Identity()
        except (RiskApiUnavailable, RiskApiRefused) as error:
            log.warning("session %s: identity unknown this turn: %s", session_ref(tracker.sender_id), error)
            identity = Identity(known=False)
        return cls(tracker, dispatcher, identity)

    @property
    def log_ref(self) -> str:
        return session_ref(self.session_id)

    @property
    def voice(self) -> bool:
        return self.channel != "chat"

    @property
    def customer_id(self) -> str | None:
        return self.identity.customer_id

    @property
    def verified_level(self) -> str:
        return self.identity.level

    @property
    def input_source(self) -> str | None:
        """How the channel got the latest message (the voice channel: speech, keypad, or
        no_input / no_match when it sends a hand-over by itself)."""
        metadata = (self.tracker.latest_message or {}).get("metadata") or {}
        return metadata.get("input")

    def response(self, key: str, flow: Flow | None = None) -> Response:
        """The flow's own wording for `key`, else the shared default."""
        if flow and key in flow.responses:
            return flow.responses[key]
        return flowset().responses[key]

    def say(self, response: Response, context: dict[str, Any], flow: Flow | None = None) -> None:
        try:
            text = render(response.for_channel(self.channel), context,
                          flow.item_formats if flow else None, voice=self.voice)
        except TemplateError as error:
            # A template the data cannot fill is a defect in the flow file: log it, say a safe
            # sentence, and flag it so tests and monitoring see it.
            log.error("flow=%s template error: %s", flow.id if flow else "-", error)
            self.dispatcher.utter_message(text=self.response("default").for_channel(self.channel))
            self.dispatcher.utter_message(json_message={"error": "template", "detail": str(error)})
            return
        buttons = [dict(button) for button in response.buttons] if not self.voice else []
        self.dispatcher.utter_message(text=text, buttons=buttons)

    def say_knowledge(self, answer: Answer) -> None:
        """A knowledge base entry's answer, and which entry it was (agents see it, metrics count it)."""
        self.dispatcher.utter_message(text=answer.text)
        self.signal({"knowledge": answer.entry_id})

    def signal(self, payload: dict[str, Any]) -> None:
        """Machine-readable news for the channel (what is asked, outcome, handoff)."""
        self.dispatcher.utter_message(json_message=payload)
        record_flow_signal(self.channel, payload)

    async def customer_context(self) -> dict[str, Any]:
        """The verified customer's summary for templates; a neutral salutation otherwise."""
        if not self.customer_id:
            return {"salutation": "您"}
        try:
            return await risk_client().customer(self.customer_id)
        except (RiskApiUnavailable, RiskApiRefused) as error:
            log.warning("session %s: customer summary unavailable: %s", self.log_ref, error)
            return {"salutation": "您"}

    async def called_customer(self) -> dict[str, Any]:
        """Who an outbound call dials, for the greeting (请问是张先生吗): the salutation only,
        nothing about the account before identity is confirmed. The number is the trusted
        channel's (the dialer's or the phone gateway's), never the customer's own words."""
        number = self.tracker.get_slot("caller_number")
        try:
            found = await risk_client().customer_by_phone(number) if number else {}
        except (RiskApiUnavailable, RiskApiRefused):
            found = {}
        return {"salutation": found.get("salutation", "您")}

    async def context(self, flow: Flow, with_reads: bool = True) -> dict[str, Any]:
        """Slots, customer and (when verified) the flow's reads, for templates.

        Raises RiskApiUnavailable when a read cannot be made.
        """
        slots = self.tracker.slots
        context: dict[str, Any] = {name: slots.get(name) for name in flowset().all_slot_names()}
        context["flow_name"] = flow.name
        context["customer"] = await self.customer_context()
        if with_reads and self.customer_id and level_rank(self.verified_level) >= level_rank("L1"):
            for read in flow.reads:
                context[read] = await risk_client().read(self.customer_id, read, self.session_id)
        return context
