"""Publishing to the inspection stream from a turn (Rasa's broker, the gateway's call events)
returns at once whatever the store does: slow, down, or failing. Stores are injected; nothing
here waits on the wall clock except a test's bounded flush."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from quality.broker import InspectionEventBroker
from quality.events import CALL, StreamEvent
from quality.publisher import StreamPublisher
from tests.quality.scripts import CUSTOMER_KEY, Script
from tests.waiting import until_true


class StuckStore:
    """A store whose writes hang until released (a database that stopped answering)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.stored: list[StreamEvent] = []

    def append(self, events: Sequence[StreamEvent]) -> None:
        self.entered.set()
        self.release.wait()
        self.stored.extend(events)

    def after(self, cursor: int, limit: int) -> list[StreamEvent]:
        return []


class DownStore:
    def __init__(self) -> None:
        self.up = False
        self.stored: list[StreamEvent] = []

    def append(self, events: Sequence[StreamEvent]) -> None:
        if not self.up:
            raise ConnectionError("database unreachable")
        self.stored.extend(events)

    def after(self, cursor: int, limit: int) -> list[StreamEvent]:
        return []


def a_turn(conversation_id: str) -> list[dict[str, object]]:
    items = Script(conversation_id).user("查账单").bot("好的").listen().items
    return [item for item in items if isinstance(item, dict)]


def test_a_stuck_store_fills_the_queue_then_events_are_dropped_and_counted_not_waited_for() -> None:
    store = StuckStore()
    broker = InspectionEventBroker(store, CUSTOMER_KEY, capacity=3)
    for event in a_turn("c-1"):
        broker.publish(event)
    assert store.entered.wait(5)  # the writer thread is inside the store with the first turn
    later = a_turn("c-2") + a_turn("c-3")
    for event in later:
        broker.publish(event)  # returns at once: 3 fit in the queue, the rest are dropped
    assert broker.writer.dropped == len(later) - 3
    store.release.set()
    assert broker.writer.flush()
    broker.writer.close()


def test_a_store_that_is_down_neither_raises_in_the_turn_nor_loses_the_events() -> None:
    store = DownStore()
    calls = StreamPublisher(store, CALL)
    calls.publish("call-1", "call_started", 1.0, {"channel": "voice"})  # no exception here
    until_true(lambda: calls.writer.store_down)
    assert calls.writer.waiting == 1 and store.stored == []
    store.up = True
    calls.publish("call-1", "call_ended", 2.0, {"reason": "caller hung up"})
    assert calls.writer.flush(timeout=30)
    assert [event.kind for event in store.stored] == ["call_started", "call_ended"]
    assert calls.writer.failed == 0
    calls.close()


def test_a_turns_events_are_stored_together_when_the_turn_ends() -> None:
    store = DownStore()
    store.up = True
    broker = InspectionEventBroker(store, CUSTOMER_KEY)
    user, bot, listen = a_turn("c-1")
    broker.publish(user)
    broker.publish(bot)
    assert broker.writer.flush() and store.stored == []  # held until the turn is over
    broker.publish(listen)
    assert broker.writer.flush()
    assert [event.kind for event in store.stored] == ["user", "bot", "action"]
    broker.writer.close()
