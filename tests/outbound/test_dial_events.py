"""The dialler's events in the quality stream (outbound/dialer.py → quality/publisher.py, the real
SQLite stream and the real inspector): every call placed and its result under the conversation id
the call gets if answered (the Originate's IVR_CALL_UUID, which the dialplan makes the AudioSocket
UUID), an attempt skipped for good with its rule, nothing naming the customer and the number only
by its keyed digest; the inspection checks the legal hours and the number's daily cap of a call
placed whether or not anyone answered, and counts skips by rule."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

from outbound.directory import number_ref
from outbound.originator import DialRequest
from quality.events import CALL, DIALLER, StreamEvent
from quality.figures import daily_figures
from quality.publisher import StreamPublisher
from quality.rules import FlowFacts, Inspector, load_rules
from quality.store import SqlEventStore
from tests.outbound.helpers import (
    NUMBER_KEY,
    FixedClock,
    Person,
    ScriptedOriginator,
    SyntheticDirectory,
    china,
    make_campaign,
)
from tests.outbound.test_dialer import TUESDAY, rig
from tests.telephony.dialplan_run import TEST_UUID, run_channel

RESULTS = {"C100000": "answered", "C100001": "busy", "C100002": "no_answer"}


def test_every_call_placed_reaches_the_stream_under_its_calls_conversation_id(db_url: str, tmp_path: Path) -> None:
    clock = FixedClock(china(TUESDAY, 12))  # 10:00 in Urumqi
    directory = SyntheticDirectory(clock)
    for n, customer in enumerate([*RESULTS, "C100003"]):
        directory.add(Person(customer, f"1390000000{n}", TUESDAY + timedelta(days=3),
                             timezone="Asia/Urumqi" if customer == "C100002" else "Asia/Shanghai",
                             do_not_call=customer == "C100003"))
    requests: dict[str, DialRequest] = {}

    def answer(request: DialRequest, nth: int) -> str:
        requests[request.customer_id] = request
        return RESULTS[request.customer_id]

    store = SqlEventStore(f"sqlite:///{tmp_path / 'events.sqlite3'}")
    events = StreamPublisher(store, DIALLER)
    dialer, queue, _ = rig(db_url, {"c": make_campaign("c")}, clock, directory, ScriptedOriginator(clock, answer))
    dialer.events = events

    async def morning() -> None:
        await dialer.tick()
        await dialer.drain()

    try:
        asyncio.run(morning())
        assert events.writer.flush()
        stored = store.after(0, 100)
    finally:
        events.close()
        queue.close()
    by_conversation: dict[str, list[StreamEvent]] = {}
    for event in stored:
        assert event.source == DIALLER
        by_conversation.setdefault(event.conversation_id, []).append(event)
    for customer, request in requests.items():
        placed, result = by_conversation.pop(request.conversation_id)
        assert (placed.kind, result.kind, result.data["result"]) == ("dial_placed", "dial_result", RESULTS[customer])
        assert placed.data == {"campaign": "c", "flow": make_campaign("c").flow, "attempt": 1,
                               "timezone": "Asia/Urumqi" if customer == "C100002" else "Asia/Shanghai",
                               "number": number_ref(NUMBER_KEY, request.number)}
        assert placed.at == result.at == china(TUESDAY, 12).timestamp()
    assert set(requests) == set(RESULTS)
    (skipped,) = by_conversation.values()  # the customer on the do-not-call list: never dialled
    assert [(event.kind, event.data) for event in skipped] == [
        ("dial_skipped", {"campaign": "c", "rule": "do_not_call"})]
    written = json.dumps([event.data for event in stored]) + "".join(event.conversation_id for event in stored)
    assert not any(secret in written for secret in ("C10000", "1390000000"))  # no customer, no number

    # The inspection: within the legal hours, nothing; the day's outbound figures from the dialler alone.
    inspector = Inspector(load_rules(), FlowFacts.from_repository())
    assert [hit for event in stored for hit in inspector.feed(event)] == []
    (day,) = daily_figures(inspector.conversations.values(), "Asia/Shanghai", top=5)
    assert (day.conversations, day.outbound_dials, day.outbound_answered) == (0, 3, 1)
    assert day.outbound_skipped == [("do_not_call", 1)]


def test_a_call_placed_after_hours_is_flagged_even_if_nobody_answers() -> None:
    inspector = Inspector(load_rules(), FlowFacts.from_repository())
    late = china(TUESDAY, 21, 30).timestamp()
    placed = StreamEvent("dial-1", DIALLER, "dial_placed", late, {"campaign": "c", "timezone": "Asia/Shanghai"}, 1)
    (hit,) = inspector.feed(placed)
    assert (hit.rule, hit.severity, hit.detail) == ("outbound_window", "critical",
                                                    "外呼时间 21:30（Asia/Shanghai），不在 08:00-21:00")
    assert inspector.feed(StreamEvent("dial-1", DIALLER, "dial_result", late, {"result": "no_answer"}, 2)) == []
    # Answered instead: the call's own start under the same id raises nothing more.
    answered = StreamEvent("dial-1", CALL, "call_started", late + 5,
                           {"channel": "outbound", "timezone": "Asia/Shanghai"}, 3)
    assert inspector.feed(answered) == []
    in_hours = StreamEvent("dial-2", DIALLER, "dial_placed", china(TUESDAY, 9).timestamp(),
                           {"campaign": "c", "timezone": "Asia/Urumqi"}, 4)  # 07:00 in Urumqi
    assert [hit.rule for hit in inspector.feed(in_hours)] == ["outbound_window"]


def _placed(conversation_id: str, at: float, number: str, seq: int, campaign: str = "c",
            timezone: str = "Asia/Shanghai") -> StreamEvent:
    return StreamEvent(conversation_id, DIALLER, "dial_placed", at,
                       {"campaign": campaign, "timezone": timezone, "number": number}, seq)


def test_a_call_placed_to_a_number_that_had_six_unanswered_calls_that_day_is_flagged() -> None:
    """Whichever campaigns placed them: the legal cap is per number and local day. A call still
    ringing counts as unanswered, an answered one does not; the next local day starts again."""
    inspector = Inspector(load_rules(), FlowFacts.from_repository())
    number, other = number_ref(NUMBER_KEY, "13900000001"), number_ref(NUMBER_KEY, "13900000002")
    fed: list[StreamEvent] = []

    def call(conversation_id: str, hour: int, result: str | None, campaign: str = "c", on: str = number,
             day_offset: int = 0) -> list[str]:
        at = china(TUESDAY + timedelta(days=day_offset), hour).timestamp()
        events = [_placed(conversation_id, at, on, len(fed) + 1, campaign)]
        if result:
            events.append(StreamEvent(conversation_id, DIALLER, "dial_result", at + 30, {"result": result},
                                      len(fed) + 2))
        fed.extend(events)
        return [hit.rule for event in events for hit in inspector.feed(event)]

    assert call("a", 9, "answered") == []
    for n, campaign in enumerate(["c", "c", "reminder", "reminder", "survey"]):
        assert call(f"u{n}", 10 + n, "no_answer", campaign) == []
    assert call("ringing", 15, None) == []  # the sixth: no result yet
    assert call("other-number", 16, "busy", on=other) == []
    assert call("seventh", 17, "no_answer") == ["outbound_number_cap"]
    (hit,) = inspector.conversations["seventh"].hits
    assert (hit.severity, hit.detail) == ("critical", "该号码当日（Asia/Shanghai）已有 6 次未接通外呼，上限 6 次")
    assert call("next-day", 9, "no_answer", day_offset=1) == []
    # After a restart the inspection replays the stream it had read: the same counts, the same hit.
    replayed = Inspector(load_rules(), FlowFacts.from_repository())
    assert [(hit.conversation_id, hit.rule) for event in fed for hit in replayed.feed(event)] == [
        ("seventh", "outbound_number_cap")]
    # Retention forgets the calls with the conversations.
    inspector.forget_before(china(TUESDAY + timedelta(days=1), 0).timestamp())
    assert [key[1] for key in inspector.dials_by_number] == [TUESDAY + timedelta(days=1)]


def test_a_skipped_attempt_counts_by_its_rule_on_its_day_and_raises_nothing() -> None:
    inspector = Inspector(load_rules(), FlowFacts.from_repository())
    at = china(TUESDAY, 10).timestamp()
    for n, rule in enumerate(["do_not_call", "wrong_number", "do_not_call"]):
        event = StreamEvent(f"skip-{n}", DIALLER, "dial_skipped", at + n, {"campaign": "c", "rule": rule}, n + 1)
        assert inspector.feed(event) == []
    (day,) = daily_figures(inspector.conversations.values(), "Asia/Shanghai", top=5)
    assert (day.conversations, day.outbound_dials, day.outbound_skipped) == (
        0, 0, [("do_not_call", 2), ("wrong_number", 1)])


def test_the_dialplan_gives_the_answered_call_the_conversation_id_the_dialler_chose() -> None:
    chosen = "0b7d4c1e-2f3a-4b5c-8d9e-0f1a2b3c4d5e"
    variables = {"IVR_FLOW": "due_date_reminder", "IVR_CUSTOMER_ID": "C100001", "IVR_CAMPAIGN": "c",
                 "IVR_ORIGINATE_ID": "c:C100001:2026-03-13:1", "IVR_MACHINE": "hangup"}
    run = run_channel("ivr-outbound", "s", variables | {"IVR_CALL_UUID": chosen})
    assert run.reached_bot and [event["Uuid"] for event in run.user_events] == [chosen]
    assert any(step.app == "TryExec" and step.data.startswith(f"AudioSocket({chosen},") for step in run.steps)
    # An Originate from elsewhere without one: a fresh UUID, as before.
    assert [event["Uuid"] for event in run_channel("ivr-outbound", "s", variables).user_events] == [TEST_UUID]
