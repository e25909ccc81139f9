"""The inspection stream's writer keeps what it could not store while the store is unavailable,
in a buffer bounded by count and bytes (the oldest dropped and counted when full), and writes it
in order once the store is back; a write the store refuses for good is counted, not retried.
Stores are injected, or PostgreSQL itself behind a relay the test cuts; waits are bounded, never
timed."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from quality.broker import RasaTurns
from quality.events import CALL, StreamEvent
from quality.store import SqlEventStore
from quality.writer import EventWriter
from tests.outbound.helpers import database_url
from tests.quality.scripts import CUSTOMER_KEY
from tests.quality.test_publishing_never_blocks_a_turn import a_turn
from tests.risk_api.helpers import PG_URL_ENV
from tests.scale.relay import TcpRelay, relaying
from tests.waiting import until_true

RETRY_SECONDS = 0.01  # the writer's first wait before it tries a down store again


class FailingStore:
    """Raises `error` on every write until `up`; counts the writes tried."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.up = False
        self.tries = 0
        self.stored: list[StreamEvent] = []

    def append(self, events: Sequence[StreamEvent]) -> None:
        self.tries += 1
        if not self.up:
            raise self.error
        self.stored.extend(events)

    def after(self, cursor: int, limit: int) -> list[StreamEvent]:
        return []


class AsIs:
    def feed(self, item: StreamEvent) -> list[StreamEvent]:
        return [item]

    def rest(self) -> list[StreamEvent]:
        return []


def turns(*conversations: str) -> list[dict[str, Any]]:
    return [event for conversation in conversations for event in a_turn(conversation)]


def stored_by_a_healthy_store(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """What the writer stores of `items` when nothing goes wrong: (conversation, kind) in order."""
    store = FailingStore(ConnectionError())
    store.up = True
    writer = EventWriter(store, RasaTurns(CUSTOMER_KEY))
    for item in items:
        writer.submit(item)
    assert writer.flush(timeout=30)
    writer.close()
    return seen(store.stored)


def seen(events: Sequence[StreamEvent]) -> list[tuple[str, str]]:
    return [(event.conversation_id, event.kind) for event in events]


def test_events_published_while_the_store_is_down_are_stored_in_order_once_it_is_back() -> None:
    store = FailingStore(ConnectionError("database unreachable"))
    writer = EventWriter(store, RasaTurns(CUSTOMER_KEY), retry_seconds=RETRY_SECONDS)
    items = turns("c-1", "c-2", "c-1")
    for item in items:
        writer.submit(item)
    until_true(lambda: store.tries >= 3 and writer.waiting == len(items))  # tried again, nothing lost
    assert writer.store_down and store.stored == [] and writer.failed == writer.evicted == 0
    store.up = True
    assert writer.flush(timeout=30)
    assert seen(store.stored) == stored_by_a_healthy_store(items)
    assert not writer.store_down and writer.waiting == 0
    writer.close()


def test_a_full_buffer_drops_the_oldest_events_and_counts_them() -> None:
    store = FailingStore(ConnectionError("database unreachable"))
    writer = EventWriter(store, RasaTurns(CUSTOMER_KEY), held_events=4, retry_seconds=RETRY_SECONDS)
    items = turns("c-1", "c-2", "c-3")
    for item in items:
        writer.submit(item)
    until_true(lambda: writer.evicted == len(items) - 4)
    assert writer.waiting == 4
    store.up = True
    assert writer.flush(timeout=30)
    assert seen(store.stored) == stored_by_a_healthy_store(items)[-4:]  # the newest four
    writer.close()


def test_the_buffer_is_bounded_by_bytes_too() -> None:
    store = FailingStore(ConnectionError("database unreachable"))
    writer = EventWriter(store, AsIs(), held_bytes=2500, retry_seconds=RETRY_SECONDS)  # two such events fit
    events = [StreamEvent(f"call-{n}", CALL, "call_started", float(n), {"note": "x" * 1000}) for n in range(5)]
    for event in events:
        writer.submit(event)
    until_true(lambda: writer.evicted == 3)
    assert writer.waiting == 2
    store.up = True
    assert writer.flush(timeout=30)
    assert store.stored == events[-2:]
    writer.close()


def test_events_the_store_refuses_for_good_are_counted_not_retried() -> None:
    refusal = sa.exc.IntegrityError("INSERT INTO quality_events …", {}, Exception("a constraint"))
    store = FailingStore(refusal)
    writer = EventWriter(store, AsIs(), retry_seconds=RETRY_SECONDS)
    refused = StreamEvent("call-1", CALL, "call_started", 1.0, {})
    writer.submit(refused)
    assert writer.flush(timeout=30)
    assert (writer.failed, store.tries, writer.waiting, writer.store_down) == (1, 1, 0, False)
    store.up = True
    taken = StreamEvent("call-1", CALL, "call_ended", 2.0, {})
    writer.submit(taken)
    assert writer.flush(timeout=30)
    assert store.stored == [taken] and store.tries == 2
    writer.close()


@pytest.fixture
def relayed_postgres(tmp_path: Any) -> Iterator[tuple[str, str, TcpRelay]]:
    """A scratch database on RISK_API_TEST_PG_URL's server: its URL, and the same through a relay."""
    assert os.environ.get(PG_URL_ENV), "postgres tests need RISK_API_TEST_PG_URL"
    with database_url("postgres", tmp_path, "quality") as url:
        server = make_url(url)
        with relaying(server.host or "127.0.0.1", server.port or 5432) as relay:
            yield url, server.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False), relay


@pytest.mark.postgres
def test_turns_published_while_postgresql_is_cut_are_stored_once_it_is_back(
        relayed_postgres: tuple[str, str, TcpRelay]) -> None:
    direct_url, relayed_url, relay = relayed_postgres
    store = SqlEventStore(relayed_url)
    writer = EventWriter(store, RasaTurns(CUSTOMER_KEY), retry_seconds=RETRY_SECONDS)
    try:
        for item in turns("c-1"):
            writer.submit(item)
        assert writer.flush(timeout=30)  # connected: the pool holds a connection the cut drops
        relay.cut()
        later = turns("c-2", "c-3")
        for item in later:
            writer.submit(item)
        until_true(lambda: writer.store_down and writer.waiting == len(later))
        relay.restore()
        assert writer.flush(timeout=30)
    finally:
        writer.close()
        store.close()
    reader = SqlEventStore(direct_url)
    try:
        assert seen(reader.after(0, 100)) == stored_by_a_healthy_store(turns("c-1", "c-2", "c-3"))
    finally:
        reader.close()
