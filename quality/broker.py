"""Rasa's event broker for the inspection stream (`bot/endpoints.yml`:
`event_broker: {type: quality.broker.InspectionEventBroker}`).

Rasa calls `publish` for every new event of a turn while it saves the tracker; `publish` only
queues the event (quality/writer.py). The writer thread holds each conversation's events until
its turn ends (`action_listen`, or the pause of a hand-over to a person), so that the customer's
message that gave a one-time code or ID digits is recognised whichever event of the turn shows
it, then protects them exactly as the tracker store does (bot/redaction.py; here the answers to
every identity question lose their text, not only codes and ID digits), keeps only what the rules
read (quality/events.py) and stores them (quality/store.py; QUALITY_EVENTS_URL, else SQLite under var/quality/).

Rasa-free on purpose (Rasa loads a broker by its class path and calls `from_endpoint_config`,
`publish`, `is_ready` and `close`), so the services' Python tests it as it runs.
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from bot.redaction import asked_after, protect
from flowspec.model import repository_flowset
from quality.events import StreamEvent, customer_key, from_rasa
from quality.store import EventStore, SqlEventStore, events_url
from quality.writer import DEFAULT_CAPACITY, EventWriter
from trust.env_secrets import require_secret

CUSTOMER_KEY_ENV = "TRACKER_STORE_KEY"
TURN_END_ACTION = "action_listen"
PAUSED = "pause"  # Rasa's ConversationPaused
MAX_HELD_EVENTS = 200  # a turn that never ends (a crashed action) is stored anyway
REMEMBERED_CONVERSATIONS = 50_000


class RasaTurns:
    """The writer thread's side: per conversation, the events of the turn in progress and the
    slot asked for before it."""

    def __init__(self, customer_key: bytes) -> None:
        self._customer_key = customer_key
        # Unlike the tracker store's encrypted copy, the stream keeps no answer to an identity
        # question at all: a bare name ("赵测己") has no shape masking could find.
        flows = repository_flowset()
        self._answers_redacted = flows.secret_slot_names | {slot.name for slot in flows.identity_slots}
        self._held: dict[str, list[dict[str, Any]]] = {}
        self._asked: OrderedDict[str, str | None] = OrderedDict()

    def feed(self, item: dict[str, Any]) -> list[StreamEvent]:
        conversation = str(item.get("sender_id") or "?")
        held = self._held.setdefault(conversation, [])
        held.append(item)
        # A turn ends when the bot listens again, or when it hands the chat to a person (Rasa pauses
        # the conversation and listens no more: the customer in distress who was handed over must
        # reach the supervisors' board now, not at the next turn that never comes).
        turn_over = (item.get("event") == "action" and item.get("name") == TURN_END_ACTION) \
            or item.get("event") == PAUSED
        return self._release(conversation) if turn_over or len(held) >= MAX_HELD_EVENTS else []

    def rest(self) -> list[StreamEvent]:
        return [event for conversation in list(self._held) for event in self._release(conversation)]

    def _release(self, conversation: str) -> list[StreamEvent]:
        events = self._held.pop(conversation)
        asked = self._asked.pop(conversation, None)
        self._asked[conversation] = asked_after(events, asked)
        while len(self._asked) > REMEMBERED_CONVERSATIONS:
            self._asked.popitem(last=False)
        return [from_rasa(event, self._customer_key)
                for event in protect(events, asked, self._answers_redacted)]


class InspectionEventBroker:
    def __init__(self, store: EventStore, customer_key: bytes, capacity: int = DEFAULT_CAPACITY) -> None:
        self.writer = EventWriter(store, RasaTurns(customer_key), capacity, name="quality-broker")

    @classmethod
    async def from_endpoint_config(cls, broker_config: Any, event_loop: Any = None,
                                   env: Mapping[str, str] = os.environ) -> InspectionEventBroker:
        """`url:` in the endpoint (a SQLAlchemy URL), else QUALITY_EVENTS_URL, else SQLite; the
        customer digests keyed from TRACKER_STORE_KEY (Rasa's process has it for its tracker store)."""
        url = getattr(broker_config, "url", None) or events_url(env)
        return cls(SqlEventStore(url), customer_key(require_secret(CUSTOMER_KEY_ENV, env)))

    def publish(self, event: dict[str, Any]) -> None:
        self.writer.submit(event)

    def is_ready(self) -> bool:
        return True

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.writer.close)
