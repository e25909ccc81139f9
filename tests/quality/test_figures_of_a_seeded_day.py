"""The figures of a seeded day of 2,170 synthetic conversations, stored in the stream's store and
read back as the inspection reads them, against arithmetic on the table of kinds."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from quality.figures import daily_figures
from quality.rules import FlowFacts, Inspector, load_rules
from quality.store import SqlEventStore
from tests.quality.scripts import stream, verified_bill_chat
from tests.quality.seeded_day import (
    Kind,
    barge_in_call,
    empty_chat,
    failed_identity_chat,
    plain_call,
    seeded_day,
    silent_then_transfer_call,
    transfer_chat,
)

VERIFIED, TRANSFER, FAILED_ID, EMPTY, PLAIN_CALL, BARGE_CALL, SILENT_CALL, LATE = 900, 300, 150, 50, 400, 250, 100, 20
KINDS = [Kind("verified-bill-chat", verified_bill_chat, VERIFIED),  # 21 s, contained, identity passed
         Kind("transfer-chat", transfer_chat, TRANSFER),  # 4 s, 客户要求人工
         Kind("failed-identity-chat", failed_identity_chat, FAILED_ID),  # 11 s, 身份核验未通过, identity failed
         Kind("empty-chat", empty_chat, EMPTY),  # never counts
         Kind("plain-call", plain_call, PLAIN_CALL),  # 10.8 s, contained, low confidence 嗯那个啥
         Kind("barge-in-call", barge_in_call, BARGE_CALL),  # 10.8 s, contained, barge-in, low confidence 额度
         Kind("silent-call", silent_then_transfer_call, SILENT_CALL),  # 15.8 s, silence, 客户要求人工
         Kind("late-chat", verified_bill_chat, LATE, day_before=True)]  # 23:59 the day before: not on the day


def replayed_through_the_store(tmp_path: Path) -> Inspector:
    store = SqlEventStore(f"sqlite:///{tmp_path / 'events.sqlite3'}")
    events = stream(*seeded_day(KINDS))
    for start in range(0, len(events), 5000):
        store.append(events[start:start + 5000])
    inspector = Inspector(load_rules(), FlowFacts.from_repository())
    cursor, read = 0, 0
    for _ in range(len(events)):  # bounded: at least one event per read
        batch = store.after(cursor, 5000)
        if not batch:
            break
        for event in batch:
            inspector.feed(event)
        cursor, read = batch[-1].id, read + len(batch)
    store.close()
    assert read == len(events)
    return inspector


def test_a_seeded_day_of_two_thousand_conversations_gives_the_hand_counted_figures(tmp_path: Path) -> None:
    day_before, day = daily_figures(replayed_through_the_store(tmp_path).conversations.values(), "Asia/Shanghai",
                                    top=10)
    assert (day_before.day, day_before.conversations) == (date(2025, 12, 31), LATE)
    counted = VERIFIED + TRANSFER + FAILED_ID + PLAIN_CALL + BARGE_CALL + SILENT_CALL
    handovers = TRANSFER + FAILED_ID + SILENT_CALL
    calls = PLAIN_CALL + BARGE_CALL + SILENT_CALL
    assert counted >= 2000
    assert (day.day, day.conversations, day.contained, day.handovers) == (
        date(2026, 1, 1), counted, counted - handovers, handovers)
    assert (day.containment_rate, day.handover_rate) == (
        round((counted - handovers) / counted, 4), round(handovers / counted, 4))
    assert day.handover_reasons == [("客户要求人工", TRANSFER + SILENT_CALL), ("身份核验未通过", FAILED_ID)]
    assert (day.identity_checks, day.identity_passed, day.identity_pass_rate) == (
        VERIFIED + FAILED_ID, VERIFIED, round(VERIFIED / (VERIFIED + FAILED_ID), 4))
    seconds = VERIFIED * 21 + TRANSFER * 4 + FAILED_ID * 11 + (PLAIN_CALL + BARGE_CALL) * 10.8 + SILENT_CALL * 15.8
    assert day.average_handling_seconds == round(seconds / counted, 1)
    assert (day.voice_calls, day.calls_with_barge_in, day.calls_with_silence) == (calls, BARGE_CALL, SILENT_CALL)
    assert (day.barge_in_rate, day.silence_rate) == (round(BARGE_CALL / calls, 4), round(SILENT_CALL / calls, 4))
    assert day.low_confidence == [("嗯那个啥", PLAIN_CALL), ("额度", BARGE_CALL)]
    assert (day.identified, day.resolved_first_contact) == (VERIFIED, VERIFIED)  # each a different customer
