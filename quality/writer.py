"""Off the turn: whoever publishes to the inspection stream (Rasa's broker, the phone gateway)
only puts an item on a bounded queue; one thread prepares (redacts, masks) and stores them.

A slow or unreachable store never slows or fails a turn:
- the thread keeps the prepared events in order in a buffer bounded by count and bytes, writes
  them in batches, and while the store is unavailable (connection refused or lost, a timeout)
  keeps them and tries again, waiting longer each time (up to MAX_RETRY_SECONDS); once the store
  is back they are written in the order they came. A full buffer drops its oldest events,
  counted (`evicted`);
- a thread stuck inside the store lets the queue fill: what does not fit is dropped, counted
  (`dropped`);
- a write the store refuses for good (a constraint, a malformed value) is logged and counted
  (`failed`), and the thread goes on with the next events.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import deque
from itertools import islice
from typing import Any, Protocol

import sqlalchemy as sa

from quality.events import StreamEvent
from quality.store import EventStore, StoreNotReady

log = logging.getLogger(__name__)
DEFAULT_CAPACITY = 10_000
BATCH = 500
# Kept while the store is unavailable: at about 1 kB an event, some hours of a busy process's turns.
DEFAULT_HELD_EVENTS = 100_000
DEFAULT_HELD_BYTES = 64 * 1024 * 1024
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 30.0
EVENT_OVERHEAD_BYTES = 200  # the object around the data, roughly
_STOP = object()


class Preparation(Protocol):
    """Turns published items into the events to store (may hold some back, e.g. a turn)."""

    def feed(self, item: Any) -> list[StreamEvent]: ...

    def rest(self) -> list[StreamEvent]:
        """Whatever is still held back, at close."""
        ...


def store_unavailable(error: BaseException) -> bool:
    """The store cannot be reached now (try again later), as opposed to refusing these events."""
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, OSError | StoreNotReady | sa.exc.OperationalError | sa.exc.InterfaceError
                      | sa.exc.TimeoutError)


def _size(event: StreamEvent) -> int:
    return EVENT_OVERHEAD_BYTES + len(event.conversation_id) + len(json.dumps(event.data, ensure_ascii=False,
                                                                              default=str))


class EventWriter:
    def __init__(self, store: EventStore, preparation: Preparation, capacity: int = DEFAULT_CAPACITY,
                 name: str = "quality-writer", held_events: int = DEFAULT_HELD_EVENTS,
                 held_bytes: int = DEFAULT_HELD_BYTES, retry_seconds: float = FIRST_RETRY_SECONDS) -> None:
        self.store = store
        self.preparation = preparation
        self.dropped = 0  # items that found the queue full (counted by the publishing threads)
        self.evicted = 0  # the oldest kept events, dropped from a full buffer
        self.failed = 0
        self.store_down = False  # the last write found the store unavailable
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._held: deque[tuple[StreamEvent, int]] = deque()
        self._held_bytes = 0
        self._max_events, self._max_bytes = held_events, held_bytes
        self._first_retry, self._retry = retry_seconds, retry_seconds
        self._next_attempt = 0.0
        # Events kept so far, and those done with (stored, refused or evicted): a flush waits
        # until everything kept before it is done with.
        self._kept = 0
        self._done = 0
        self._flushes: deque[tuple[int, threading.Event]] = deque()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Events kept, not stored yet."""
        return len(self._held)

    def submit(self, item: Any) -> None:
        """Never blocks, never raises."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("quality stream: store too slow, %d events dropped so far", self.dropped)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything submitted so far is stored (tests, shutdown); False on timeout."""
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.warning("quality stream: closing with a full queue, %d events not stored",
                        self._queue.qsize() + len(self._held))
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            items = self._next_items()
            for item in items:
                if isinstance(item, threading.Event):
                    self._flushes.append((self._kept, item))
                else:
                    self._keep(self._prepared(item))
            if items and items[-1] is _STOP:
                self._last_writes()
                return
            if self._held and time.monotonic() >= self._next_attempt:
                self._write_batch()
            self._release_flushes()

    def _next_items(self) -> list[Any]:
        """Up to BATCH items: waits for the first while nothing is kept, or until the next try
        when the store is down; none when a kept batch can be written now."""
        wait = None if not self._held else max(0.0, self._next_attempt - time.monotonic())
        try:
            items = [self._queue.get(timeout=wait)]
        except queue.Empty:
            return []
        while len(items) < BATCH and items[-1] is not _STOP and not isinstance(items[-1], threading.Event):
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _prepared(self, item: Any) -> list[StreamEvent]:
        try:
            return self.preparation.rest() if item is _STOP else self.preparation.feed(item)
        except Exception:  # a malformed item must not stop the stream
            log.exception("quality stream: an event could not be prepared and was dropped")
            self.failed += 1
            return []

    def _keep(self, events: list[StreamEvent]) -> None:
        for event in events:
            size = _size(event)
            self._held.append((event, size))
            self._held_bytes += size
            self._kept += 1
        while len(self._held) > self._max_events or self._held_bytes > self._max_bytes:
            self._held_bytes -= self._held.popleft()[1]
            self._done += 1
            self.evicted += 1
            if self.evicted == 1 or self.evicted % 1000 == 0:
                log.warning("quality stream: store unavailable too long, %d of the oldest events dropped so far",
                            self.evicted)

    def _write_batch(self) -> bool:
        """The oldest kept events, up to BATCH; False when the store is unavailable (kept)."""
        batch = list(islice(self._held, BATCH))
        try:
            self.store.append([event for event, _ in batch])
        except Exception as error:  # the store's driver raises anything; the stream goes on
            if store_unavailable(error):
                if not self.store_down:
                    log.warning("quality stream: the store is unavailable (%s), events kept to write later",
                                type(error).__name__)
                self.store_down = True
                self._next_attempt = time.monotonic() + self._retry
                self._retry = min(self._retry * 2, MAX_RETRY_SECONDS)
                return False
            # The class only: a driver's message may quote the rows.
            self.failed += len(batch)
            log.error("quality stream: %d events not stored: the store refused them (%s)",
                      len(batch), type(error).__name__)
        else:
            if self.store_down:
                log.info("quality stream: the store is back, %d kept events to write", len(self._held))
            self.store_down = False
            self._retry = self._first_retry
        for _ in batch:
            self._held_bytes -= self._held.popleft()[1]
        self._done += len(batch)
        return True

    def _release_flushes(self) -> None:
        while self._flushes and self._flushes[0][0] <= self._done:
            self._flushes.popleft()[1].set()

    def _last_writes(self) -> None:
        """At close: whatever is kept, if the store takes it now."""
        while self._held and self._write_batch():
            self._release_flushes()
        self._release_flushes()
        if self._held:
            log.warning("quality stream: closing with the store unavailable, %d events not stored", len(self._held))
