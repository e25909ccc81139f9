"""The tracker store inside Rasa's environment: `.venv/bin/python tracker_store_scenarios.py
<scenario> <sqlite file>` runs one scenario and prints what it saw as one JSON line.

tests/security/test_tracker_store.py runs these (the services' Python cannot import Rasa) and
checks the output and the database file itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rasa.core.agent import Agent
from rasa.core.tracker_store import SQLTrackerStore, TrackerStore
from rasa.core.utils import read_endpoints_from_path
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, Event, SessionStarted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot.tracker_store import OpenedEvents, ProtectedSQLTrackerStore, UnreadableTrackerError, refusing_fail_safe

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = Domain.load(ROOT / "bot" / "domain.yml")
SENDER = "conversation-under-test"
NOW = 1_800_000_000.0
DAY = 86400.0


def said(text: str, intent: str = "inform", **metadata: Any) -> UserUttered:
    entities = [{"entity": "number", "value": word, "start": 0, "end": len(word)}
                for word in text.split() if word.isdigit()]
    return UserUttered(text, {"name": intent, "confidence": 0.9}, entities, metadata=metadata)


def asks(slot: str, text: str) -> list[Event]:
    return [SlotSet("requested_slot", slot), BotUttered(text, {"custom": {"expect": {"slot": slot}}}),
            ActionExecuted("action_listen")]


# A chat verification as the flow engine runs it, one list per turn (saved after each turn).
TURNS: list[list[Event]] = [
    [ActionExecuted("action_session_start"), SessionStarted(), ActionExecuted("action_listen"),
     said("我叫张三，手机13812345678，想查账单", "bill_inquiry"),
     SlotSet("customer_name", "张三"), SlotSet("caller_number", "13812345678"),
     *asks("id_last4", "请输入您身份证号码的后四位。")],
    # The risk API was unreachable: id_last4 stays set (the engine clears it after a real attempt).
    [said("7305", input="keypad"), SlotSet("id_last4", "7305"),
     *asks("otp_code", "验证码已发送至您的手机138****5678，请输入6位短信验证码。")],
    [said("我的验证码是 482913"), SlotSet("otp_code", "482913"), SlotSet("requested_slot", None),
     BotUttered("张先生您好，您本期账单为1,234.56元，到期日2026-12-04。"), ActionExecuted("action_listen")],
    # Not asked for, yet the turn filled the code: the message is redacted all the same.
    [said("661177"), SlotSet("otp_code", "661177"), ActionExecuted("action_listen")],
]


def store(db: str, **kwargs: Any) -> ProtectedSQLTrackerStore:
    return ProtectedSQLTrackerStore(DOMAIN, dialect="sqlite", db=db, **kwargs)


def summary(tracker: DialogueStateTracker | None) -> dict[str, Any]:
    if tracker is None:
        return {"events": None}
    shown = [[e.type_name, getattr(e, "text", None) or getattr(e, "key", None), getattr(e, "value", None)]
             for e in tracker.events]
    return {"events": shown, "slots": {name: tracker.get_slot(name) for name in
                                       ("otp_code", "id_last4", "customer_name", "caller_number", "requested_slot")},
            "entities": [e.entities for e in tracker.events if isinstance(e, UserUttered)]}


async def saved_turns(protected: ProtectedSQLTrackerStore) -> DialogueStateTracker:
    """TURNS handled one by one, each saved after it: the tracker the running turns held."""
    tracker = DialogueStateTracker(SENDER, DOMAIN.slots)
    for turn in TURNS:
        for event in turn:
            tracker.update(event)
        await protected.save(tracker)
    return tracker


async def conversation(db: str) -> dict[str, Any]:
    """Four turns saved one by one; what the running turn holds, and what a reader gets back."""
    protected = store(db)
    tracker = await saved_turns(protected)
    memory = {"texts": [e.text for e in tracker.events if isinstance(e, UserUttered)],
              "otp_code": tracker.get_slot("otp_code"), "id_last4": tracker.get_slot("id_last4")}
    return {"memory": memory, "stored": summary(await protected.retrieve(SENDER))}


async def restart(db: str) -> dict[str, Any]:
    """A new Rasa process picks the conversation up: the code is unset, the next turn saves."""
    protected = store(db)
    tracker = await protected.retrieve(SENDER)
    assert tracker is not None
    before = summary(tracker)
    for event in [SlotSet("requested_slot", "otp_code"), said("135790"), SlotSet("otp_code", "135790"),
                  SlotSet("otp_code", None), SlotSet("requested_slot", None), ActionExecuted("action_listen")]:
        tracker.update(event)
    await protected.save(tracker)
    return {"before": before, "after": summary(await protected.retrieve(SENDER))}


async def wrong_key(db: str) -> dict[str, Any]:
    """Events from another key: a clear error, and Rasa (through its fail-safe wrapper, as
    bot/rasa_launcher.py has it) starts afresh."""
    protected = store(db)
    try:
        await protected.retrieve(SENDER)
        error = None
    except UnreadableTrackerError as refused:
        error = str(refused)
    rasa_view = refusing_fail_safe(protected, DOMAIN)
    tracker = await rasa_view.get_or_create_tracker(SENDER)
    for event in [ActionExecuted("action_session_start"), SessionStarted(), ActionExecuted("action_listen"),
                  said("你好", "greet"), BotUttered("您好，请问有什么可以帮您？"), ActionExecuted("action_listen")]:
        tracker.update(event)
    await rasa_view.save(tracker)
    return {"error": error, "afresh": summary(await protected.retrieve(SENDER))}


async def opened_in_memory(db: str) -> dict[str, Any]:
    """One process keeps the events it wrote and read opened: it reads back what a fresh process
    decrypts (also when its memory holds only a few), and a row altered in the database is refused
    though this process had opened the original."""
    protected = store(db)
    await saved_turns(protected)
    kept = summary(await protected.retrieve(SENDER))
    fresh = summary(await store(db).retrieve(SENDER))
    small = store(db)
    small._opened = OpenedEvents(3)
    few = [summary(await small.retrieve(SENDER)) for _ in range(2)]
    with sqlite3.connect(db) as connection:
        row_id, data = connection.execute("SELECT id, data FROM events ORDER BY id LIMIT 1 OFFSET 3").fetchone()
        altered = data[:-10] + ("B" if data[-10] == "A" else "A") + data[-9:]  # inside the token's MAC
        connection.execute("UPDATE events SET data = ? WHERE id = ?", (altered, row_id))
    try:
        await protected.retrieve(SENDER)
        error = None
    except UnreadableTrackerError as refused:
        error = str(refused)
    return {"kept": kept, "fresh": fresh, "few": few, "error": error}


async def sessions(db: str) -> dict[str, Any]:
    """A conversation in two sessions, each turn saved: Rasa reads the latest session's events for
    a turn, and all of them for the full tracker; the stored count follows the latest session."""
    protected = store(db)
    await saved_turns(protected)
    before = await protected.retrieve_full_tracker(SENDER)
    tracker = await protected.retrieve(SENDER)  # the next turn, a new session (timestamps tell them apart)
    greeting = said("你好", "greet")
    greeting.timestamp = NOW + 3601
    for event in [ActionExecuted("action_session_start", timestamp=NOW + 3599), SessionStarted(timestamp=NOW + 3600),
                  ActionExecuted("action_listen", timestamp=NOW + 3600), greeting]:
        tracker.update(event)
    await protected.save(tracker)
    latest, full = await protected.retrieve(SENDER), await protected.retrieve_full_tracker(SENDER)
    with protected.session_scope() as session:
        stored = protected._stored_count(session, SENDER)
    return {"latest": summary(latest), "full": summary(full), "stored": stored,
            "before": len(before.events) if before else None}


async def slow_disk(db: str) -> dict[str, Any]:
    """A commit that waits for the disk: the event loop goes on serving while it waits (here it
    is the loop that lets the disk finish), and saves of many conversations at once all land."""
    protected = store(db)
    disk_done = threading.Event()
    waits: list[bool] = []

    def commit_waits_for_the_disk(_connection: Any) -> None:
        waits.append(disk_done.wait(timeout=30))  # a save on the event loop would wait out the 30 s

    sa.event.listen(protected.engine, "commit", commit_waits_for_the_disk)
    save = asyncio.ensure_future(saved_turns(protected))
    loop_ran = 0
    while not waits and not save.done() and loop_ran < 1000:  # until the first commit waits
        loop_ran += 1
        await asyncio.sleep(0.01)
    disk_done.set()
    await save
    sa.event.remove(protected.engine, "commit", commit_waits_for_the_disk)
    senders = [f"conversation-{n}" for n in range(8)]
    trackers = [DialogueStateTracker(sender, DOMAIN.slots) for sender in senders]
    for n, tracker in enumerate(trackers):
        for event in [ActionExecuted("action_listen"), said(f"第{n}个", "inform"), BotUttered(f"好的{n}")]:
            tracker.update(event)
    await asyncio.gather(*(protected.save(tracker) for tracker in trackers))
    back = [await protected.retrieve(sender) for sender in senders]
    return {"waits": waits, "stored": summary(await protected.retrieve(SENDER)),
            "many": [[e.text for e in tracker.events if isinstance(e, (UserUttered, BotUttered))] if tracker else None
                     for tracker in back]}


class Remember(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


async def database_down(db: str) -> dict[str, Any]:
    """The database fails mid-conversation, under the Agent the launcher sets up: each turn fails,
    logged by digest, and nothing goes on in an in-memory store."""
    Agent._create_tracker_store = staticmethod(refusing_fail_safe)  # as bot/rasa_launcher.py does
    rasa_view = Agent(domain=DOMAIN, tracker_store=store(db)).tracker_store
    tracker = DialogueStateTracker(SENDER, DOMAIN.slots)
    tracker.update(said("我的验证码是 482913"))
    with sqlite3.connect(db) as connection:
        connection.execute("DROP TABLE events")
    logs = Remember()
    logging.getLogger().addHandler(logs)
    errors: dict[str, str | None] = {}
    for name, call in (("read", lambda: rasa_view.get_or_create_tracker(SENDER)),
                       ("save", lambda: rasa_view.save(tracker))):
        try:
            await call()
            errors[name] = None
        except Exception as error:  # noqa: BLE001 - the test reads which error it was
            errors[name] = f"{type(error).__name__}: {error}"
    return {"errors": errors, "logged": logs.lines, "wrapper": type(rasa_view).__name__,
            "fell_back_to_memory": rasa_view._fallback_tracker_store is not None}


async def retention(db: str) -> dict[str, Any]:
    """Old events go at start and on a save an hour later, not on every save."""
    now = [NOW]
    clock: Callable[[], float] = lambda: now[0]  # noqa: E731 - the test's clock
    plain = SQLTrackerStore(DOMAIN, dialect="sqlite", db=db)  # writes the old events as they were
    old = DialogueStateTracker("old-conversation", DOMAIN.slots)
    old.update(UserUttered("我想查账单", {"name": "bill_inquiry"}, timestamp=NOW - 40 * DAY))
    await plain.save(old)
    protected = store(db, clock=clock)  # at start
    counts = {"after_start": await count(protected)}
    for label, delay, age in (("old_saved", 0.0, 31 * DAY), ("half_hour", 1800.0, 31 * DAY),
                              ("after_an_hour", 3601.0, 1 * DAY)):
        now[0] = NOW + delay
        tracker = DialogueStateTracker(f"conversation-{label}", DOMAIN.slots)
        tracker.update(ActionExecuted("action_listen", timestamp=NOW + delay - age))
        await protected.save(tracker)
        counts[label] = await count(protected)
    return {"counts": counts, "keys": sorted(await protected.keys())}


async def count(protected: ProtectedSQLTrackerStore) -> int:
    with protected.session_scope() as session:
        return session.query(protected.SQLEvent).count()


async def legacy(db: str) -> dict[str, Any]:
    """Events Rasa's own SQL store wrote in clear are redacted and encrypted when this store starts."""
    plain = SQLTrackerStore(DOMAIN, dialect="sqlite", db=db)
    tracker = DialogueStateTracker(SENDER, DOMAIN.slots)
    for turn in TURNS:
        for event in turn:
            tracker.update(event)
    await plain.save(tracker)
    return {"stored": summary(await store(db).retrieve(SENDER))}


async def endpoint(db: str) -> dict[str, Any]:
    """bot/endpoints.yml as `rasa run` reads it builds this store."""
    endpoints = read_endpoints_from_path(ROOT / "bot" / "endpoints.yml")
    created = TrackerStore.create(endpoints.tracker_store, DOMAIN)
    return {"type": type(created).__name__, "db": str(created.engine.url.database)}


async def refused(db: str) -> dict[str, Any]:
    """The store will not start without a usable key."""
    try:
        store(db)
    except Exception as error:  # noqa: BLE001 - the test reads which error it was
        return {"error": f"{type(error).__name__}: {error}"}
    return {"error": None}


SCENARIOS = {f.__name__: f for f in (conversation, restart, wrong_key, opened_in_memory, sessions, slow_disk,
                                      database_down, retention, legacy, endpoint, refused)}

if __name__ == "__main__":
    scenario, db_path = sys.argv[1:3]
    print(json.dumps(asyncio.run(SCENARIOS[scenario](db_path)), ensure_ascii=False))
