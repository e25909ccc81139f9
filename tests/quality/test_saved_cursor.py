"""The inspection service saves its cursor and its hits with the stream: a restart rebuilds each
conversation's state, raises nothing twice and skips nothing; retention deletes what is older than
`keep_days`; and on PostgreSQL a write that commits after a later one is still inspected. On a
virtual clock, against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import pytest

from quality.cursor import GAP_WAIT_SECONDS, MAX_PENDING, StreamCursor
from quality.events import StreamEvent
from quality.rules import FlowFacts, Inspector, load_rules
from quality.service import Inspection
from quality.store import EVENTS, SqlEventStore, event_rows
from tests.quality.scripts import START, Script, stream, verified_bill_chat

DAY = 86400.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def inspection_of(store: SqlEventStore, clock: Clock, keep_days: int = 7) -> Inspection:
    return Inspection(store, Inspector(load_rules(), FlowFacts.from_repository()), clock=clock, keep_days=keep_days)


def leak(conversation_id: str, start: float = START) -> Script:
    """An account answer before identity: a critical hit, an alert."""
    return (Script(conversation_id, start).user("查账单").bot("应还1200元")
            .bot(flow="bill_inquiry", outcome="answer").listen())


async def started(store: SqlEventStore, clock: Clock, keep_days: int = 7) -> Inspection:
    inspection = inspection_of(store, clock, keep_days)
    await inspection.resume()
    return inspection


async def test_a_restart_goes_on_where_it_stopped_without_alerting_twice_or_skipping(any_store: SqlEventStore) -> None:
    clock = Clock(START + 3600)
    first = await started(any_store, clock)
    any_store.append(stream(verified_bill_chat("chat-a"), leak("chat-leak")))
    assert await first.poll() > 0
    assert [(a["seq"], a["conversation_id"]) for a in first.alerts_after(0)] == [(1, "chat-leak")]

    # Stopped. Meanwhile chat-a asks again (verified before the stop: no hit if its state is
    # rebuilt) and a new conversation leaks.
    again = Script("chat-a", START + 600).user("再查一下账单").bot(flow="bill_inquiry", outcome="answer").listen()
    any_store.append(stream(again, leak("chat-new", START + 600)))

    second = await started(any_store, clock)
    assert second.alerts_raised == 1 and [a["seq"] for a in second.alerts_after(0)] == [1]  # as raised, not again
    assert second.inspector.score(second.inspector.conversations["chat-leak"])["score"] == 60
    assert await second.poll() == len(stream(again, leak("chat-new")))  # only what came after the cursor
    assert [(a["seq"], a["conversation_id"], a["rule"]) for a in second.alerts_after(1)] == [
        (2, "chat-new", "identity_before_detail")]
    assert second.inspector.score(second.inspector.conversations["chat-a"])["broken"] == []

    third = await started(any_store, clock)
    assert await third.poll() == 0 and third.alerts_raised == 2
    assert {(hit["conversation_id"], hit["seq"]) for hit in any_store.hits()} == {("chat-leak", 1), ("chat-new", 2)}
    assert sorted(third.inspector.conversations) == ["chat-a", "chat-leak", "chat-new"]


async def test_alerts_are_shown_only_once_saved_with_the_cursor(any_store: SqlEventStore) -> None:
    clock = Clock(START + 3600)
    inspection = await started(any_store, clock)
    any_store.append(stream(leak("chat-leak")))
    record = any_store.record

    def unavailable(*_: object) -> None:
        raise ConnectionError("database went away")

    any_store.record = unavailable  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await inspection.poll()
    assert inspection.alerts_after(0) == []  # a restart now would find it unsaved and raise it then
    any_store.record = record  # type: ignore[method-assign]
    assert await inspection.poll() == 0
    assert [(a["seq"], a["conversation_id"]) for a in inspection.alerts_after(0)] == [(1, "chat-leak")]
    assert [hit["seq"] for hit in any_store.hits()] == [1]


async def test_retention_deletes_the_events_and_hits_of_conversations_quiet_for_keep_days(
        any_store: SqlEventStore) -> None:
    clock = Clock(START + 3600)
    inspection = await started(any_store, clock, keep_days=7)
    any_store.append(stream(leak("chat-old")))
    await inspection.poll()
    clock.now = START + 8 * DAY
    any_store.append(stream(leak("chat-recent", START + 8 * DAY - 60)))
    await inspection.poll()
    assert sorted(inspection.inspector.conversations) == ["chat-recent"]
    assert {event.conversation_id for event in any_store.after(0, 1000)} == {"chat-recent"}
    assert [hit["conversation_id"] for hit in any_store.hits()] == ["chat-recent"]

    restarted = await started(any_store, clock, keep_days=7)
    assert sorted(restarted.inspector.conversations) == ["chat-recent"]
    assert restarted.alerts_raised == 2  # the numbering goes on: the desk never sees a number twice
    any_store.append(stream(leak("chat-next", START + 8 * DAY)))
    await restarted.poll()
    assert [a["seq"] for a in restarted.alerts_after(2)] == [3]


@pytest.mark.postgres
async def test_a_write_committing_after_a_later_one_is_inspected_even_across_a_restart(
        pg_store: SqlEventStore) -> None:
    clock = Clock(START + 3600)
    inspection = await started(pg_store, clock)
    slow_events = stream(leak("chat-slow"))
    with pg_store.engine.connect() as slow:
        transaction = slow.begin()
        slow.execute(EVENTS.insert(), event_rows(slow_events))  # ids taken, not committed
        pg_store.append(stream(verified_bill_chat("chat-fast")))  # a later id, committed first
        await inspection.poll()
        assert sorted(inspection.cursor.progress.pending) == list(range(1, len(slow_events) + 1))
        assert "chat-slow" not in inspection.inspector.conversations
        restarted = await started(pg_store, clock)  # the gaps are saved with the cursor
        transaction.commit()
    position = restarted.cursor.progress.position
    assert pg_store.after(position, 1000) == [], "the late rows lie below the cursor: `id > cursor` misses them"
    clock.now += 1
    assert await restarted.poll() == 0  # nothing new after the cursor…
    assert [(a["seq"], a["conversation_id"]) for a in restarted.alerts_after(0)] == [(1, "chat-slow")]  # …but late
    assert restarted.cursor.progress.pending == {}
    assert restarted.inspector.score(restarted.inspector.conversations["chat-slow"])["score"] == 60


@pytest.mark.postgres
async def test_a_rolled_back_write_is_waited_for_then_given_up(pg_store: SqlEventStore) -> None:
    clock = Clock(START + 3600)
    inspection = await started(pg_store, clock)
    with pg_store.engine.connect() as failed:
        transaction = failed.begin()
        failed.execute(EVENTS.insert(), event_rows(stream(leak("chat-lost"))))
        transaction.rollback()  # PostgreSQL's sequence does not give those ids back
    pg_store.append(stream(verified_bill_chat("chat-fast")))
    await inspection.poll()
    waited = len(inspection.cursor.progress.pending)
    assert waited > 0 and inspection.cursor.given_up == 0
    clock.now += GAP_WAIT_SECONDS
    await inspection.poll()
    assert len(inspection.cursor.progress.pending) == waited  # still within the wait
    clock.now += 1
    await inspection.poll()
    assert inspection.cursor.progress.pending == {} and inspection.cursor.given_up == waited
    assert (await started(pg_store, clock)).cursor.progress.pending == {}  # saved as given up


def test_retention_keeps_what_the_inspection_has_not_read_yet(any_store: SqlEventStore) -> None:
    events = stream(leak("chat-quiet"))
    any_store.append(events)
    read_through = events[1].id  # the inspection had read two when the conversation's time was up
    assert any_store.forget(["chat-quiet"], read_through) == 2
    assert [event.id for event in any_store.after(0, 100)] == [event.id for event in events[2:]]


def test_a_jump_further_than_can_be_waited_for_is_given_up_beyond_the_bound() -> None:
    cursor = StreamCursor()
    far = MAX_PENDING * 3
    returned = cursor.advance([], [StreamEvent("c", "rasa", "user", START, {}, far)], START)
    assert [event.id for event in returned] == [far] and cursor.progress.position == far
    assert sorted(cursor.progress.pending) == list(range(far - MAX_PENDING, far))
    assert cursor.given_up == far - 1 - MAX_PENDING
