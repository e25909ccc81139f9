"""Off the turn: whoever publishes to the inspection stream (Rasa's broker, the phone gateway)
only puts an item on a bounded queue; one thread prepares (redacts, masks) and stores them.

A slow or unreachable store never slows or fails a turn: the queue fills, and what does not
fit is dropped and counted (`dropped`); a failed write is logged and counted (`failed`), and the
thread goes on with the next items.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Protocol

from quality.events import StreamEvent
from quality.store import EventStore

log = logging.getLogger(__name__)
DEFAULT_CAPACITY = 10_000
BATCH = 500
_STOP = object()


class Preparation(Protocol):
    """Turns published items into the events to store (may hold some back, e.g. a turn)."""

    def feed(self, item: Any) -> list[StreamEvent]: ...

    def rest(self) -> list[StreamEvent]:
        """Whatever is still held back, at close."""
        ...


class EventWriter:
    def __init__(self, store: EventStore, preparation: Preparation, capacity: int = DEFAULT_CAPACITY,
                 name: str = "quality-writer") -> None:
        self.store = store
        self.preparation = preparation
        self.dropped = 0
        self.failed = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> None:
        """Never blocks, never raises."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("quality stream: store too slow or down, %d events dropped so far", self.dropped)

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
            log.warning("quality stream: closing with a full queue, %d events not stored", self._queue.qsize())
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < BATCH and items[-1] is not _STOP and not isinstance(items[-1], threading.Event):
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            events: list[StreamEvent] = []
            for item in items:
                if not isinstance(item, threading.Event):
                    events.extend(self._prepared(item))
            self._store(events)
            last = items[-1]
            if isinstance(last, threading.Event):
                last.set()
            elif last is _STOP:
                return

    def _prepared(self, item: Any) -> list[StreamEvent]:
        try:
            return self.preparation.rest() if item is _STOP else self.preparation.feed(item)
        except Exception:  # a malformed item must not stop the stream
            log.exception("quality stream: an event could not be prepared and was dropped")
            self.failed += 1
            return []

    def _store(self, events: list[StreamEvent]) -> None:
        if not events:
            return
        try:
            self.store.append(events)
        except Exception as error:  # the store's driver raises anything; the stream goes on
            self.failed += len(events)
            log.error("quality stream: %d events not stored: %s", len(events), error)
