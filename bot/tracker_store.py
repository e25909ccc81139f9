"""Rasa's SQL tracker store, keeping conversations the way docs/security.md promises.

`endpoints.yml` names it (`type: bot.tracker_store.ProtectedSQLTrackerStore`); Rasa loads it
with the endpoint's settings (dialect, db…) as keyword arguments. What reaches the database:

- One-time codes and ID digits never, in any form: the `otp_code` / `id_last4` / `id_last6`
  slot values (the identity flow's `secret` slots) are stored as a placeholder, and the
  customer's message that answered their question (or filled them) loses its text, entities
  and metadata. Other texts (the customer's, the bot's, message metadata) are stored through
  `mask_text`: phone, card and ID numbers, stated names.
  Only the stored copy changes: the turn being handled keeps the real events in memory (the
  flow engine verifies the code in that same turn, then clears the slot). A redacted slot
  reads back unset, so a placeholder is never taken for an answer.
- Every event's data encrypted (Fernet, key derived from TRACKER_STORE_KEY by HKDF-SHA256),
  stored as `<key id>:<token>`. The process keeps the clear JSON of the events it wrote or read
  last (`OpenedEvents`, in memory only, keyed by the sealed text), so a turn does not decrypt
  its whole conversation again. Events another key wrote (or altered ones) are not read:
  retrieving such a conversation logs an error and raises `UnreadableTrackerError`, which
  Rasa's fail-safe wrapper turns into a fresh conversation. They stay in the database (a
  misconfigured key must not wipe conversations) until retention deletes them.
- A database that fails a read or a write fails the turn (`TrackerStoreUnavailable`, logged with
  the conversation's digest, never its id or the SQL): Rasa's fail-safe wrapper would otherwise
  carry on with an in-memory store, keeping codes and clear texts in memory with no retention,
  starting the conversation afresh on every read that fails and, once the database is back,
  merging the new conversation's events into the old one. `refusing_fail_safe` is the wrapper
  Rasa gets instead (bot/rasa_launcher.py installs it).
- Events older than TRACKER_RETENTION_DAYS (default 30) deleted, at start and then at most
  once an hour while saving; on SQLite deleted rows are overwritten (secure_delete; the WAL file,
  reused from its start after each checkpoint, holds recent pages only, and every event is encrypted).
Events an older store wrote in clear are redacted and encrypted in place at start.
Saves run on the store's own writer thread, one at a time: a commit waits for the disk, and on
Rasa's event loop every other conversation of the process would wait with it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from rasa.core.tracker_store import FailSafeTrackerStore, InMemoryTrackerStore, SQLTrackerStore, TrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import AllSlotsReset, Event, Restarted, SessionStarted, SlotSet
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.exceptions import RasaException
from rasa.shared.nlu.constants import INTENT_NAME_KEY
from sqlalchemy.orm import Session

from bot.redaction import REQUESTED_SLOT, protect, secret_slots
from ivr_config import environment
from ivr_config.database import open_engine
from trust.env_secrets import require_secret
from trust.logs import session_ref

log = logging.getLogger(__name__)
KEY_ENV = "TRACKER_STORE_KEY"
RETENTION_ENV = "TRACKER_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 30
PRUNE_EVERY_SECONDS = 3600.0
# Events kept opened in memory (module docstring): about a hundred conversations, a few MB at most.
OPENED_EVENTS_KEPT = 5_000


class UnreadableTrackerError(RasaException):
    """Stored events of a conversation do not decrypt with the configured key."""


class TrackerStoreUnavailable(RasaException):
    """The database failed a read or a write: the turn is refused, not carried on in memory."""


def _refuse_turn(error: Exception) -> None:
    """Rasa's fail-safe wrapper calls this on any error of the store, then falls back to memory.
    Only unreadable events go on to a fresh conversation (the store has logged why); any other
    error fails the turn."""
    if isinstance(error, UnreadableTrackerError):
        return
    if not isinstance(error, TrackerStoreUnavailable):  # that one is logged already
        log.error("tracker store: %s; the turn is refused", type(error).__name__)
    raise error


def refusing_fail_safe(store: TrackerStore | None, domain: Domain) -> TrackerStore:
    """Rasa's `Agent._create_tracker_store` with the fail-safe wrapper told to refuse the turn
    instead of falling back to an in-memory store (module docstring)."""
    if store is None:
        store = InMemoryTrackerStore(domain)
    store.domain = domain
    return FailSafeTrackerStore(store, on_tracker_store_error=_refuse_turn)


class OpenedEvents:
    """The stored events' clear JSON by their sealed text, the least recently used dropped first.

    A sealed text is authenticated: the same text always opens to the same event, so a copy kept
    here is never stale, and one the database no longer holds is simply not asked for again.
    The store's writer thread puts while the event loop reads: a lock keeps each step whole."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._plain: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sealed: str) -> bytes | None:
        with self._lock:
            plain = self._plain.get(sealed)
            if plain is not None:
                self._plain.move_to_end(sealed)
            return plain

    def put(self, sealed: str, plain: bytes) -> None:
        with self._lock:
            self._plain[sealed] = plain
            if len(self._plain) > self._capacity:
                self._plain.popitem(last=False)


def _derive(secret: str, purpose: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose).derive(secret.encode())


def retention_days(env: Mapping[str, str] = os.environ) -> int:
    return environment.whole_number(env, RETENTION_ENV, DEFAULT_RETENTION_DAYS, minimum=1)


def _asked_at(events: list[Event]) -> str | None:
    """The slot the bot had asked for after these events (walked back to the last change)."""
    for event in reversed(events):
        if isinstance(event, SlotSet) and event.key == REQUESTED_SLOT:
            return event.value
        if isinstance(event, (Restarted, AllSlotsReset, SessionStarted)):
            return None
    return None


class ProtectedSQLTrackerStore(SQLTrackerStore):
    """SQLTrackerStore that redacts, masks, encrypts and expires what it stores."""

    def __init__(self, domain: Domain | None = None, env: Mapping[str, str] = os.environ,
                 clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        secret = require_secret(KEY_ENV, env)  # before connecting: a missing key fails the start
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(secret, b"tracker-store events", 32)))
        self._key_id = _derive(secret, b"tracker-store key id", 4).hex()
        self._retention_days = retention_days(env)
        self._clock = clock
        self._opened = OpenedEvents(OPENED_EVENTS_KEPT)
        # One thread (module docstring): this process's writes keep their order and never race
        # each other for SQLite's write lock.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tracker-store-writer")
        super().__init__(domain, **kwargs)
        if self.engine.dialect.name == "sqlite":
            # Rasa's engine opens a connection for every read and write and keeps SQLite's rollback
            # journal (three fsyncs a commit), both on the event loop in every turn: the project's
            # SQLite engine instead (ivr_config/database.py: kept connections, WAL).
            url = self.engine.url
            self.engine.dispose()
            self.engine = open_engine(str(url))
            self.sessionmaker = sa.orm.session.sessionmaker(bind=self.engine)
            sa.event.listen(self.engine, "connect", _sqlite_secure_delete)
        self._build_queries()
        self._encrypt_clear_rows()
        self._prune()

    def _build_queries(self) -> None:
        """Rasa's `_event_query` (the events of the latest session, or all), and the count of them
        this key wrote, built once: SQLAlchemy's ORM spent longer building that query on every read
        and write than SQLite took to answer it."""
        events = self.SQLEvent.__table__
        of_sender = events.c.sender_id == sa.bindparam("sender_id")
        session_start = (sa.select(sa.func.max(events.c.timestamp))
                         .where(of_sender, events.c.type_name == SessionStarted.type_name).scalar_subquery())
        in_session = sa.or_(events.c.timestamp >= session_start, session_start.is_(None))
        self._all_sessions_query = sa.select(events.c.data).where(of_sender).order_by(events.c.id)
        self._session_query = sa.select(events.c.data).where(of_sender, in_session).order_by(events.c.id)
        self._stored_query = (sa.select(sa.func.count()).select_from(events)
                              .where(of_sender, in_session, events.c.data.like(f"{self._key_id}:%")))

    # What Rasa's SQLTrackerStore does, with the stored copy protected.
    async def save(self, tracker: DialogueStateTracker) -> None:
        # Rasa's lock on the conversation holds its turn until the save is done: nothing changes
        # the tracker while the writer thread reads it.
        new = await asyncio.get_running_loop().run_in_executor(self._writer, self._store_new_events, tracker)
        if self.event_broker is not None:
            # The new events are known here; Rasa's `stream_events` would read the whole
            # conversation back (and decrypt it) on every turn to find them.
            await self._stream_new_events(self.event_broker, new, tracker.sender_id)
        log.debug("conversation %s: %d events stored", session_ref(tracker.sender_id), len(new))

    def _store_new_events(self, tracker: DialogueStateTracker) -> list[Event]:
        with self._database(tracker.sender_id, "saved"):
            if self._clock() >= self._next_prune:
                self._prune()
            return self._insert_new_events(tracker)

    def _insert_new_events(self, tracker: DialogueStateTracker) -> list[Event]:
        with self.session_scope() as session:
            events = list(tracker.events)
            stored = self._stored_count(session, tracker.sender_id)
            new = events[stored:]
            rows = protect([event.as_dict() for event in new], _asked_at(events[:stored]))
            if rows:  # one INSERT of plain rows: the ORM's unit of work costs more than the write
                session.execute(self.SQLEvent.__table__.insert(), [
                    {"sender_id": tracker.sender_id, "type_name": event.type_name, "timestamp": data.get("timestamp"),
                     "intent_name": ((data.get("parse_data") or {}).get("intent") or {}).get(INTENT_NAME_KEY),
                     "action_name": data.get("name"), "data": self._seal(data)}
                    for event, data in zip(new, rows, strict=True)])
            session.commit()
        return new

    async def _retrieve(self, sender_id: str, fetch_events_from_all_sessions: bool) -> DialogueStateTracker | None:
        with self._database(sender_id, "read"), self.session_scope() as session:
            query = self._all_sessions_query if fetch_events_from_all_sessions else self._session_query
            sealed = [data for (data,) in session.execute(query, {"sender_id": sender_id})]
        events = self._open_all(sender_id, sealed)
        if self.domain and events:
            return DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)
        return None

    @contextlib.contextmanager
    def _database(self, sender_id: str, done: str) -> Iterator[None]:
        """A database error as TrackerStoreUnavailable, logged without the sender id or the SQL
        (SQLAlchemy's message carries the statement's parameters)."""
        try:
            yield
        except sa.exc.SQLAlchemyError as error:
            message = (f"conversation {session_ref(sender_id)} not {done}: the tracker store's database failed "
                       f"({type(error).__name__}); the turn is refused")
            log.error(message)
            raise TrackerStoreUnavailable(message) from None

    def _stored_count(self, session: Session, sender_id: str) -> int:
        """Events of the current session already stored, as `retrieve` reads them: with this key.

        Rows of another key are not in the tracker Rasa holds (it started afresh without them).
        """
        return int(session.execute(self._stored_query, {"sender_id": sender_id}).scalar_one())

    def _seal(self, data: dict[str, Any]) -> str:
        plain = json.dumps(data).encode()
        sealed = f"{self._key_id}:{self._fernet.encrypt(plain).decode()}"
        self._opened.put(sealed, plain)
        return sealed

    def _open(self, data: str) -> dict[str, Any] | None:
        plain = self._opened.get(data)
        if plain is None:
            key_id, _, token = data.partition(":")
            if key_id != self._key_id:
                return None
            try:
                plain = self._fernet.decrypt(token.encode())
            except InvalidToken:
                return None
            self._opened.put(data, plain)
        event: dict[str, Any] = json.loads(plain)  # a new dict each read: the turn's events change theirs
        if event.get("event") == "slot" and event.get("name") in secret_slots():
            event["value"] = None
        return event

    def _open_all(self, sender_id: str, sealed: list[str]) -> list[dict[str, Any]]:
        events = [event for event in map(self._open, sealed) if event is not None]
        if len(events) < len(sealed):
            message = (f"conversation {session_ref(sender_id)}: {len(sealed) - len(events)} of {len(sealed)} stored "
                       f"events do not decrypt with {KEY_ENV} (key id {self._key_id}): another key wrote them, or "
                       "they were altered; the conversation starts afresh")
            log.error(message)
            raise UnreadableTrackerError(message)
        return events

    def _encrypt_clear_rows(self) -> None:
        """Events Rasa's own SQL store wrote (clear JSON): redacted and encrypted in place."""
        with self.session_scope() as session:
            clear = (session.query(self.SQLEvent).filter(self.SQLEvent.data.startswith("{"))
                     .order_by(self.SQLEvent.sender_id, self.SQLEvent.id).all())
            for _, group in itertools.groupby(clear, key=lambda row: row.sender_id):
                rows = list(group)
                for row, data in zip(rows, protect([json.loads(row.data) for row in rows]), strict=True):
                    row.data = self._seal(data)
            session.commit()
        if clear:
            log.info("tracker store: %d events stored in clear were redacted and encrypted", len(clear))

    def _prune(self) -> None:
        now = self._clock()
        self._next_prune = now + PRUNE_EVERY_SECONDS
        with self.session_scope() as session:
            deleted = (session.query(self.SQLEvent)
                       .filter(self.SQLEvent.timestamp < now - self._retention_days * 86400)
                       .delete(synchronize_session=False))
            session.commit()
        if deleted:
            log.info("tracker store: %d events older than %d days deleted", deleted, self._retention_days)


def _sqlite_secure_delete(connection: Any, _: Any) -> None:
    """Deleted and rewritten rows overwritten on disk, not left in SQLite's free pages."""
    connection.execute("PRAGMA secure_delete = ON")
