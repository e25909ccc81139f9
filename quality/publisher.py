"""The phone gateway's call events into the inspection stream (voice/call_events.py's
`CallEvents`, for real): `publish` queues, the writer thread masks what the bot said and stores
it beside Rasa's events of the same conversation (the call id is Rasa's sender id)."""

from __future__ import annotations

from typing import Any

from bot.redaction import masked
from quality.events import CALL, StreamEvent
from quality.store import EventStore
from quality.writer import DEFAULT_CAPACITY, EventWriter


class MaskedCallEvents:
    def feed(self, item: StreamEvent) -> list[StreamEvent]:
        return [StreamEvent(item.conversation_id, item.source, item.kind, item.at, masked(item.data))]

    def rest(self) -> list[StreamEvent]:
        return []


class StreamCallEvents:
    def __init__(self, store: EventStore, capacity: int = DEFAULT_CAPACITY) -> None:
        self.writer = EventWriter(store, MaskedCallEvents(), capacity, name="quality-calls")

    def publish(self, call_id: str, kind: str, at: float, data: dict[str, Any]) -> None:
        self.writer.submit(StreamEvent(call_id, CALL, kind, at, data))

    def close(self) -> None:
        self.writer.close()
