"""The persistent queue: idempotent series, leases, exactly-once dialling across diallers and
processes (SQLite and PostgreSQL), retries with backoff, outcomes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from outbound.compliance import Compliance
from outbound.queue import SCHEMA_VERSION, Claimed, Planned, Queue, QueueSchemaError
from tests.outbound.dial_worker import CAMPAIGN, LEASE, contact_of
from tests.outbound.helpers import china

ROOT = Path(__file__).resolve().parents[2]
NOW = china(date(2026, 3, 10), 10)  # a Tuesday, inside every window
OWNER, OTHER = "dialler-a", "dialler-b"
rules = Compliance()
campaigns = {CAMPAIGN.id: CAMPAIGN}


@pytest.fixture
def queue(db_url: str) -> Queue:
    queue = Queue(db_url)
    queue.prepare()
    queue.sync_campaigns(campaigns, NOW)
    yield queue
    queue.close()


def plan(queue: Queue, count: int, not_before=NOW) -> None:
    queue.enqueue(CAMPAIGN, [Planned(f"C{200000 + n}", "2026-03-13", not_before) for n in range(count)], NOW)


def dial(queue: Queue, item: Claimed, owner: str = OWNER, at=NOW) -> bool:
    decision = queue.decide(item, owner, CAMPAIGN, rules, contact_of(item.customer_id), at)
    return decision is not None and decision.allowed


def test_enqueue_is_idempotent_and_ids_name_campaign_customer_cycle_and_number(queue: Queue) -> None:
    plan(queue, 3)
    plan(queue, 3)
    attempts = queue.attempts()
    assert [a.id for a in attempts] == [f"{CAMPAIGN.id}:C20000{n}:2026-03-13:1" for n in range(3)]
    assert {a.status for a in attempts} == {"queued"}


def test_prepare_twice_is_fine_and_another_version_is_refused(queue: Queue) -> None:
    queue.prepare()
    with queue.engine.begin() as connection:
        connection.execute(text("UPDATE outbound_meta SET value = '9' WHERE key = 'schema_version'"))
    with pytest.raises(QueueSchemaError, match=f"dialler schema version 9, this dialler needs {SCHEMA_VERSION}"):
        queue.prepare()


def test_an_attempt_is_claimed_by_one_dialler_only(db_url: str, queue: Queue) -> None:
    plan(queue, 5)
    other = Queue(db_url)  # another process's connection pool
    first = queue.claim(OWNER, NOW, LEASE, 3)
    second = other.claim(OTHER, NOW, LEASE, 10)
    assert len(first) == 3 and len(second) == 2
    assert not {c.attempt_id for c in first} & {c.attempt_id for c in second}
    assert other.claim(OTHER, NOW, LEASE, 10) == []
    # Not this dialler's: deciding (and so dialling) is refused.
    assert other.decide(first[0], OTHER, CAMPAIGN, rules, contact_of(first[0].customer_id), NOW) is None
    other.close()


def test_a_claim_whose_lease_expires_goes_back_undialled(queue: Queue) -> None:
    plan(queue, 1)
    (item,) = queue.claim(OWNER, NOW, LEASE, 1)
    later = NOW + LEASE + timedelta(seconds=1)
    assert queue.reap(later, campaigns).released == 1
    (again,) = queue.claim(OTHER, later, LEASE, 1)
    assert again.attempt_id == item.attempt_id
    assert queue.decide(item, OWNER, CAMPAIGN, rules, contact_of(item.customer_id), later) is None, \
        "the first dialler lost it"
    assert dial(queue, again, OTHER, later)


def test_a_dialler_dying_after_recording_the_dial_never_gets_the_attempt_dialled_again(queue: Queue) -> None:
    plan(queue, 1)
    (item,) = queue.claim(OWNER, NOW, LEASE, 1)
    assert dial(queue, item)  # `dialling` committed; the Originate may or may not have gone out
    later = NOW + LEASE + timedelta(seconds=1)
    reaped = queue.reap(later, campaigns)
    assert reaped.lost == [item.attempt_id]
    first, retry = queue.attempts()
    assert (first.status, first.result) == ("ended", "unknown") and "not dialled again" in first.reason
    assert retry.id.endswith(":2") and retry.status == "queued"
    assert retry.not_before == later + CAMPAIGN.attempts.backoff("unknown", 1)
    # The old attempt is never claimable again, whoever asks and however late.
    far = later + timedelta(days=1)
    claimed = queue.claim(OTHER, far, LEASE, 10)
    assert [c.attempt_id for c in claimed] == [retry.id]
    # Its late result, if one comes, corrects the record: answered also cancels the retry.
    assert queue.complete(item.attempt_id, CAMPAIGN, "answered", far)
    statuses = {a.id: (a.status, a.result) for a in queue.attempts()}
    assert statuses == {item.attempt_id: ("ended", "answered"), retry.id: ("cancelled", None)}
    (member,) = queue.members()
    assert member.status == "answered"


def test_retries_follow_the_backoff_and_stop_at_the_maximum(queue: Queue) -> None:
    plan(queue, 1)
    at = NOW
    for number, result in enumerate(["busy", "no_answer", "failed"], start=1):
        (item,) = queue.claim(OWNER, at, LEASE, 1)
        assert item.number == number
        if number == 3:  # two calls today already: the campaign's daily cap moves it to tomorrow 09:00
            decision = queue.decide(item, OWNER, CAMPAIGN, rules, contact_of(item.customer_id), at)
            assert decision.rule == "campaign_daily_cap" and decision.retry_at == china(date(2026, 3, 11), 9)
            at = decision.retry_at
            (item,) = queue.claim(OWNER, at, LEASE, 1)
        assert dial(queue, item, at=at)
        assert queue.complete(item.attempt_id, CAMPAIGN, result, at)
        if number < 3:
            (following,) = [a for a in queue.attempts() if a.status == "queued"]
            assert following.not_before == at + CAMPAIGN.attempts.backoff(result, number)
            at = following.not_before
    (member,) = queue.members()
    assert (member.status, member.attempts, member.result) == ("exhausted", 3, "failed")
    assert [a.result for a in queue.attempts()] == ["busy", "no_answer", "failed"]
    assert queue.claim(OWNER, at + timedelta(days=1), LEASE, 5) == []


def test_an_answer_ends_the_series_with_its_outcome(queue: Queue) -> None:
    plan(queue, 1)
    (item,) = queue.claim(OWNER, NOW, LEASE, 1)
    dial(queue, item)
    queue.complete(item.attempt_id, CAMPAIGN, "answered", NOW, action_id="ivr-1", uniqueid="1796110481.5")
    queue.record_conversation_outcome(item.attempt_id, "promise_to_pay", NOW)
    (attempt,) = queue.attempts()
    (member,) = queue.members()
    assert (attempt.result, attempt.uniqueid, attempt.conversation_outcome) == (
        "answered", "1796110481.5", "promise_to_pay")
    assert (member.status, member.conversation_outcome) == ("answered", "promise_to_pay")
    assert not queue.complete(item.attempt_id, CAMPAIGN, "busy", NOW), "a second result is ignored"
    with pytest.raises(ValueError, match="unknown conversation outcome"):
        queue.record_conversation_outcome(item.attempt_id, "delighted", NOW)


def test_not_sent_is_the_only_way_back_from_dialling(queue: Queue) -> None:
    plan(queue, 1)
    (item,) = queue.claim(OWNER, NOW, LEASE, 1)
    dial(queue, item)
    assert not queue.not_sent(item, OTHER, NOW), "only the dialler that recorded the dial"
    assert queue.not_sent(item, OWNER, NOW + timedelta(minutes=1))
    (attempt,) = queue.attempts()
    assert (attempt.status, attempt.dialling_at) == ("queued", None)
    (member,) = queue.members()
    assert member.attempts == 0


def test_pacing_counts_claimed_dialling_and_answered_calls_over_every_dialler(db_url: str, queue: Queue) -> None:
    small = replace(CAMPAIGN, max_channels=2)
    queue.sync_campaigns({small.id: small}, NOW)
    plan(queue, 5)
    other = Queue(db_url)
    assert len(queue.claim(OWNER, NOW, LEASE, 10)) == 2
    assert other.claim(OTHER, NOW, LEASE, 10) == []
    first, second = [a for a in queue.attempts() if a.status == "claimed"]
    for attempt in (first, second):
        item = Claimed(attempt.id, attempt.member_id, attempt.campaign_id, attempt.customer_id, attempt.cycle, 1)
        dial(queue, item)
    queue.complete(first.id, small, "answered", NOW)  # in conversation: still a channel
    queue.complete(second.id, small, "busy", NOW)  # the channel is free
    assert len(other.claim(OTHER, NOW, LEASE, 10)) == 1
    queue.call_ended(first.id, NOW)
    assert len(other.claim(OTHER, NOW, LEASE, 10)) == 1
    other.close()


def test_every_decision_is_recorded_with_its_rule(queue: Queue) -> None:
    plan(queue, 2)
    night = NOW.replace(hour=23)
    items = queue.claim(OWNER, night, LEASE, 2)
    late = queue.decide(items[0], OWNER, CAMPAIGN, rules, contact_of(items[0].customer_id), night)
    opted = replace(contact_of(items[1].customer_id), do_not_call=True)
    final = queue.decide(items[1], OWNER, CAMPAIGN, rules, opted, night)
    assert late.rule == "calling_hours" and final.rule == "do_not_call"
    decisions = queue.decisions()
    assert [(d.allowed, d.rule, d.retry_at is not None) for d in decisions] == [
        (False, "calling_hours", True), (False, "do_not_call", False)]
    attempts = {a.customer_id: a for a in queue.attempts()}
    assert attempts[items[0].customer_id].status == "queued"
    assert (attempts[items[1].customer_id].status, attempts[items[1].customer_id].rule) == ("skipped", "do_not_call")
    assert {m.customer_id: m.status for m in queue.members()}[items[1].customer_id] == "skipped"


def test_the_daily_number_limit_is_counted_in_the_deciding_transaction(queue: Queue) -> None:
    # Seven customers sharing one number: the seventh call of the day waits for tomorrow.
    plan(queue, 7)
    shared = [replace(contact_of(f"C{200000 + n}"), number_ref="ref-family") for n in range(7)]
    results = []
    for item in queue.claim(OWNER, NOW, LEASE, 7):
        decision = queue.decide(item, OWNER, CAMPAIGN, rules, shared[int(item.customer_id[1:]) - 200000], NOW)
        results.append(decision.rule)
        if decision.allowed:
            queue.complete(item.attempt_id, CAMPAIGN, "no_answer", NOW)
    assert results == [None] * 6 + ["number_daily_limit"]


def test_opt_outs_and_number_blocks_from_the_conversation(queue: Queue) -> None:
    plan(queue, 2)
    for item in queue.claim(OWNER, NOW, LEASE, 2):
        dial(queue, item)
        queue.complete(item.attempt_id, CAMPAIGN, "answered", NOW)
    first, second = queue.attempts()
    queue.record_conversation_outcome(first.id, "opted_out", NOW)
    queue.record_conversation_outcome(second.id, "third_party_refused", NOW)
    assert [row.customer_id for row in queue.unreported_opt_outs()] == [first.customer_id]
    queue.opt_out_reported(first.customer_id, NOW)
    assert queue.unreported_opt_outs() == []
    # A new cycle for both: the first is on the do-not-call list, the second's number is blocked.
    queue.enqueue(CAMPAIGN, [Planned(first.customer_id, "2026-04-13", NOW), Planned(second.customer_id, "2026-04-13",
                                                                                    NOW)], NOW)
    rules_seen = []
    for item in queue.claim(OWNER, NOW, LEASE, 2):
        rules_seen.append(queue.decide(item, OWNER, CAMPAIGN, rules, contact_of(item.customer_id), NOW).rule)
    assert sorted(rules_seen) == ["do_not_call", "third_party_refused"]


# --- real processes ---------------------------------------------------------------------------

def run_worker(db_url: str, owner: str, log: Path, *extra: str, at=NOW) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tests.outbound.dial_worker", db_url, owner, at.isoformat(),
                             str(log), *extra], cwd=ROOT)


def dialled(log: Path) -> list[str]:
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def test_two_dialler_processes_never_dial_one_attempt_twice(db_url: str, queue: Queue, tmp_path: Path) -> None:
    plan(queue, 300)
    log = tmp_path / "dials.log"
    workers = [run_worker(db_url, owner, log) for owner in ("proc-1", "proc-2", "proc-3")]
    for worker in workers:
        assert worker.wait(timeout=180) == 0
    dials = dialled(log)
    assert len(dials) == 300 and len(set(dials)) == 300
    owners = Counter(line.split()[1] for line in log.read_text().splitlines())
    assert len(owners) >= 2, f"one process did everything: {owners}"
    assert {a.status for a in queue.attempts()} == {"ended"}
    assert sum(d.allowed for d in queue.decisions()) == 300


def test_a_killed_dialler_process_is_taken_over_without_a_second_dial(db_url: str, queue: Queue,
                                                                        tmp_path: Path) -> None:
    plan(queue, 40)
    log = tmp_path / "dials.log"
    doomed = run_worker(db_url, "doomed", log, "--hang-after", "5")
    hung = tmp_path / "doomed.hung"
    deadline = time.monotonic() + 120
    while not hung.exists():
        assert doomed.poll() is None and time.monotonic() < deadline, "the worker never reached its 5th dial"
        time.sleep(0.05)
    os.kill(doomed.pid, signal.SIGKILL)  # mid-call: 5 attempts recorded as dialling, no result
    doomed.wait(timeout=30)
    in_flight = [a.id for a in queue.attempts() if a.status == "dialling"]
    assert len(in_flight) == 5
    # The next dialler starts before the lease expires: the 35 others are its, the 5 are not.
    survivor = run_worker(db_url, "survivor", log)
    assert survivor.wait(timeout=120) == 0
    assert sorted(a.id for a in queue.attempts() if a.status == "dialling") == sorted(in_flight)
    # Past the lease: the 5 end as unknown and their series get attempt 2, due after the backoff.
    later = NOW + LEASE + timedelta(seconds=1)
    assert run_worker(db_url, "restarted", log, at=later).wait(timeout=120) == 0
    assert len(dialled(log)) == 40, "nothing was due"
    due = later + CAMPAIGN.attempts.backoff("unknown", 1)
    assert run_worker(db_url, "next", log, at=due).wait(timeout=120) == 0
    dials = dialled(log)
    assert len(dials) == len(set(dials)) == 45, Counter(dials).most_common(3)
    attempts = {a.id: a for a in queue.attempts()}
    for lost in in_flight:
        assert (attempts[lost].status, attempts[lost].result) == ("ended", "unknown")
        assert attempts[lost.removesuffix(":1") + ":2"].result == "answered"


def test_the_queue_stores_no_number(db_url: str, queue: Queue) -> None:
    plan(queue, 1)
    (item,) = queue.claim(OWNER, NOW, LEASE, 1)
    dial(queue, item)
    engine = create_engine(db_url)
    with engine.connect() as connection:
        tables = [row[0] for row in connection.execute(text(
            "SELECT name FROM sqlite_master WHERE type='table'" if db_url.startswith("sqlite") else
            "SELECT tablename FROM pg_tables WHERE schemaname='public'"))]
        dump = " ".join(str(row) for table in tables for row in connection.execute(text(f"SELECT * FROM {table}")))
    engine.dispose()
    assert "ref-C200000" in dump and "1990000" not in dump
