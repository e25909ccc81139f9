"""Events into the inspection stream from outside Rasa: the phone gateway's call events
(voice/call_events.py's `CallEvents`, for real; the call id is Rasa's sender id) and the dialler's
dial events (outbound/dialer.py; an answered call's conversation id is the one the dialler gave
its Originate). `publish` queues, the writer thread masks any text and stores them beside Rasa's
events of the same conversation."""

from __future__ import annotations

from typing import Any

from bot.redaction import masked
from quality.events import StreamEvent
from quality.store import EventStore
from quality.writer import DEFAULT_CAPACITY, EventWriter


class MaskedCallEvents:
    def feed(self, item: StreamEvent) -> list[StreamEvent]:
        return [StreamEvent(item.conversation_id, item.source, item.kind, item.at, masked(item.data))]

    def rest(self) -> list[StreamEvent]:
        return []


class StreamPublisher:
    """One source's events (quality/events.py CALL, DIALLER), written off the caller's thread."""

    def __init__(self, store: EventStore, source: str, capacity: int = DEFAULT_CAPACITY) -> None:
        self.source = source
        self.writer = EventWriter(store, MaskedCallEvents(), capacity, name=f"quality-{source}")

    def publish(self, conversation_id: str, kind: str, at: float, data: dict[str, Any]) -> None:
        self.writer.submit(StreamEvent(conversation_id, self.source, kind, at, data))

    def close(self) -> None:
        self.writer.close()
