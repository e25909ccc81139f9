"""Quality inspection figures for `make bench` (docs/quality.md), in-process on a synthetic stream.

- **Keeping up**: a stored backlog of phone calls (the gateway's call events and Rasa's events as
  the broker prepares them, about 100 events a call) drained by the inspection service's own loop
  (`Inspection.poll`: read from the cursor, check every rule, save cursor and hits): events per
  second, on SQLite and on the PostgreSQL in RISK_API_TEST_PG_URL (the Makefile starts one). Also
  the replay rate at a restart (`Inspection.resume`), which bounds how long a restart takes with
  `keep_days` of stream kept.
- **Added latency on a chat turn**: Rasa cannot run in this process, so the turn is what the
  tracker store does with a turn's events (bot/tracker_store.py: protect them, store them in
  SQLite, commit), timed with and without the broker's `publish` of the same events (the broker's
  writer thread storing the earlier turns meanwhile, competing for the interpreter), at a steady
  pace of turns as under load, blocks of each alternating.

`python -m bench.quality_load` prints the figures as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.scratch_db import create_scratch_database, drop_scratch_database
from bench.stats import percentile
from bot.redaction import protect
from quality.broker import InspectionEventBroker, RasaTurns
from quality.events import CALL, StreamEvent, customer_key
from quality.rules import FlowFacts, Inspector, load_rules
from quality.service import READ_BATCH, Inspection
from quality.store import SqlEventStore

PG_URL_ENV = "RISK_API_TEST_PG_URL"
CALLS = 600  # about 60,000 events
TURNS_PER_CALL = 8
APPEND_BATCH = 500  # a writer thread's batch (quality/writer.py)
DRAIN_SECONDS = 300  # bound on draining the backlog
BENCH_CUSTOMER_KEY = customer_key("bench-only-customer-digest-key")
TURN_PACE_SECONDS = 0.02  # 50 turns a second: a busy Rasa process
TURN_BLOCKS = 10
TURNS_PER_BLOCK = 100
START = 1_767_225_600.0  # 2026-01-01 08:00 in Asia/Shanghai
# What callers and the bot say (the masking and the rules read real Chinese text).
SAYINGS = ("我想查一下这个月账单", "我叫张伟", "身份证后四位1234", "好的谢谢", "什么时候到期", "能不能分期还款",
           "转人工", "我已经还了为什么还提醒我")
REPLIES = ("好的，请问您的姓名？", "请说出身份证后四位。", "您第3期账单应还1200元，到期日6月10日。",
           "还有什么可以帮您？", "可以办理分期，请问分几期？", "正在为您转接人工客服。")


def _rasa(conversation_id: str, at: float, event: str, **fields: Any) -> dict[str, Any]:
    return {"sender_id": conversation_id, "event": event, "timestamp": at, **fields}


def turn_events(conversation_id: str, turn: int, at: float) -> list[dict[str, Any]]:
    """One chat or phone turn as Rasa's broker receives it: the customer's message, the action,
    a slot, the bot's reply and the end of the turn."""
    text = SAYINGS[turn % len(SAYINGS)]
    return [
        _rasa(conversation_id, at, "user", text=text, input_channel="trusted",
              parse_data={"text": text, "intent": {"name": "bill_inquiry", "confidence": 0.93}, "entities": []},
              metadata={"channel": "voice", "input": "speech"}),
        _rasa(conversation_id, at + 0.1, "action", name="bill_inquiry_form", policy="RulePolicy", confidence=1.0),
        _rasa(conversation_id, at + 0.1, "slot", name="requested_slot", value="customer_name"),
        _rasa(conversation_id, at + 0.2, "bot", text=REPLIES[turn % len(REPLIES)], data={}, metadata={}),
        _rasa(conversation_id, at + 0.2, "action", name="action_listen", policy="RulePolicy", confidence=1.0),
    ]


def call_stream(calls: int) -> list[StreamEvent]:
    """`calls` phone calls as stored: call events and prepared Rasa events, interleaved by call."""
    turns = RasaTurns(BENCH_CUSTOMER_KEY)
    events: list[StreamEvent] = []

    def call(conversation_id: str, kind: str, at: float, **data: Any) -> None:
        events.append(StreamEvent(conversation_id, CALL, kind, at, data))

    for number in range(calls):
        conversation_id, at = f"bench-call-{number}", START + number * 7.0
        call(conversation_id, "call_started", at, channel="voice", priority_tier="normal", queue_returns=0,
             known_caller=True)
        call(conversation_id, "bot_said", at, text="为保障您的权益，本次通话可能会被录音。", interruptible=False)
        for turn in range(TURNS_PER_CALL):
            call(conversation_id, "bot_started_speaking", at)
            call(conversation_id, "bot_stopped_speaking", at + 2.5)
            call(conversation_id, "caller_started_speaking", at + 3.5)
            call(conversation_id, "caller_stopped_speaking", at + 5.0, seconds=1.5, level_dbfs=-22.0 + turn)
            call(conversation_id, "caller_utterance", at + 5.2, characters=8, seconds=1.5, characters_per_second=5.3)
            for item in turn_events(conversation_id, turn, at + 5.3):
                events.extend(turns.feed(item))
            call(conversation_id, "bot_said", at + 5.6, text=REPLIES[turn % len(REPLIES)], interruptible=True)
            at += 9.0
        call(conversation_id, "call_ended", at, reason="caller hung up")
    return events + turns.rest()


def _drain(store: SqlEventStore, total: int) -> dict[str, float]:
    """The inspection's loop over a stored backlog of `total` events, then a restart's replay."""
    inspector = Inspector(load_rules(), FlowFacts.from_repository())
    inspection = Inspection(store, inspector, clock=lambda: START + 3600)

    async def drain() -> tuple[float, float]:
        await inspection.resume()
        wall, cpu = time.perf_counter(), time.process_time()
        deadline = wall + DRAIN_SECONDS
        for _ in range(total // READ_BATCH + 10):  # each poll reads up to READ_BATCH
            if inspection.consumed >= total or time.perf_counter() > deadline:
                break
            await inspection.poll()
        return time.perf_counter() - wall, time.process_time() - cpu

    seconds, cpu_seconds = asyncio.run(drain())
    if inspection.consumed != total:
        raise RuntimeError(f"the inspection read {inspection.consumed} of {total} events in {DRAIN_SECONDS} s")
    restarted = Inspection(store, Inspector(load_rules(), FlowFacts.from_repository()), clock=lambda: START + 3600)
    started = time.perf_counter()
    replayed = asyncio.run(restarted.resume())
    replay_seconds = time.perf_counter() - started
    return {"events": total, "events_per_second": round(total / seconds),
            "cpu_ms_per_1000_events": round(1000 * cpu_seconds / total * 1000, 1),
            "replay_events_per_second": round(replayed / replay_seconds)}


@contextmanager
def _stores(workdir: Path) -> Iterator[dict[str, SqlEventStore]]:
    stores = {"sqlite": SqlEventStore(f"sqlite:///{workdir / 'events.sqlite3'}")}
    admin, scratch = os.environ.get(PG_URL_ENV), None
    if admin:
        url, scratch = create_scratch_database(admin, "quality_bench")
        stores["postgres"] = SqlEventStore(url)
    try:
        yield stores
    finally:
        for store in stores.values():
            store.close()
        if admin and scratch:
            drop_scratch_database(admin, scratch)


def keeping_up() -> dict[str, Any]:
    events = call_stream(CALLS)
    figures: dict[str, Any] = {"calls": CALLS}
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as scratch, _stores(Path(scratch)) as stores:
        for backend, store in stores.items():
            for start in range(0, len(events), APPEND_BATCH):
                store.append(events[start:start + APPEND_BATCH])
            figures[backend] = _drain(store, len(events))
    return figures


class TrackerStandIn:
    """What the tracker store does with a turn's new events (bot/tracker_store.py
    `_store_new_events`), without Rasa: protect them, store them as JSON in SQLite, commit."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, sender_id TEXT, type_name TEXT, data TEXT)")

    def save(self, events: list[dict[str, Any]]) -> None:
        rows = [(event["sender_id"], event["event"], json.dumps(event, ensure_ascii=False))
                for event in protect(events, "customer_name")]
        self.db.executemany("INSERT INTO events (sender_id, type_name, data) VALUES (?, ?, ?)", rows)
        self.db.commit()


def turn_latency() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-quality-turn-") as scratch:
        tracker = TrackerStandIn(Path(scratch) / "tracker.sqlite3")
        event_store = SqlEventStore(f"sqlite:///{Path(scratch) / 'events.sqlite3'}")
        broker = InspectionEventBroker(event_store, BENCH_CUSTOMER_KEY)
        off: list[float] = []
        on: list[float] = []
        publish: list[float] = []
        turn = 0
        for block in range(2 * TURN_BLOCKS):
            broker_on = block % 2 == 1
            for _ in range(TURNS_PER_BLOCK):
                events = turn_events(f"bench-chat-{turn % 40}", turn, START + turn)
                turn += 1
                began = time.perf_counter()
                tracker.save(events)
                stored = time.perf_counter()
                if broker_on:
                    for event in events:
                        broker.publish(event)
                ended = time.perf_counter()
                (on if broker_on else off).append(1000 * (ended - began))
                if broker_on:
                    publish.append(1000 * (ended - stored))
                time.sleep(max(0.0, TURN_PACE_SECONDS - (ended - began)))
        broker.writer.flush(30)
        dropped = broker.writer.dropped
        broker.writer.close()
        tracker.db.close()
    return {"turns_each": len(off), "events_per_turn": len(turn_events("x", 0, START)),
            "turns_per_second": round(1 / TURN_PACE_SECONDS),
            "off_p50_ms": round(statistics.median(off), 3), "off_p95_ms": round(percentile(off, 0.95), 3),
            "on_p50_ms": round(statistics.median(on), 3), "on_p95_ms": round(percentile(on, 0.95), 3),
            "added_p95_ms": round(percentile(on, 0.95) - percentile(off, 0.95), 3),
            "publish_p95_ms": round(percentile(publish, 0.95), 3), "dropped": dropped}


def figures() -> dict[str, Any]:
    return {"keeping_up": keeping_up(), "turn": turn_latency()}


def report_rows(figures: dict[str, Any]) -> list[tuple[str, str]]:
    """The rows of docs/benchmarks.md's table (bench/run.py writes them)."""
    keeping, turn = figures["keeping_up"], figures["turn"]
    backends = [backend for backend in ("sqlite", "postgres") if backend in keeping]
    rows = [(f"Quality inspection keeping up: a stored backlog of {keeping[backends[0]]['events']:,} events "
             f"({keeping['calls']} phone calls) read, checked and cursor saved, "
             f"{' / '.join(backends)}",
             " / ".join(f"{keeping[backend]['events_per_second']:,} events/s" for backend in backends)),
            (f"Quality inspection restart: replay of the kept stream, {' / '.join(backends)}",
             " / ".join(f"{keeping[backend]['replay_events_per_second']:,} events/s" for backend in backends)),
            (f"Chat turn's storage with the inspection broker on vs off ({turn['events_per_turn']} events a turn, "
             f"{turn['turns_per_second']} turns/s, in-process): p95 on / off, target added < 5 ms",
             f"{turn['on_p95_ms']:.2f} / {turn['off_p95_ms']:.2f} ms (added {turn['added_p95_ms']:.2f} ms; "
             f"publish alone p95 {turn['publish_p95_ms']:.3f} ms)")]
    return rows


if __name__ == "__main__":
    json.dump(figures(), sys.stdout, indent=2)
    print()
