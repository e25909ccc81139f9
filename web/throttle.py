"""Sliding-window counters per key (a source address, a user name) with an injectable clock."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

Clock = Callable[[], float]
MAX_KEYS = 100_000  # bounds memory when an attacker rotates through many addresses


class Throttle:
    """At most `limit` events per key within `window_seconds`."""

    def __init__(self, limit: int, window_seconds: float, clock: Clock) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.clock = clock
        self._events: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        events = self._events.get(key, deque())
        horizon = self.clock() - self.window_seconds
        while events and events[0] <= horizon:
            events.popleft()
        return events

    def blocked(self, key: str) -> bool:
        return len(self._recent(key)) >= self.limit

    def retry_after(self, key: str) -> int:
        """Seconds until the oldest counted event leaves the window (0 when not blocked)."""
        events = self._recent(key)
        if len(events) < self.limit:
            return 0
        return max(1, math.ceil(events[0] + self.window_seconds - self.clock()))

    def record(self, key: str) -> None:
        events = self._recent(key)
        events.append(self.clock())
        self._events[key] = events
        if len(self._events) > MAX_KEYS:
            self._forget_idle()

    def _forget_idle(self) -> None:
        for key in [key for key in self._events if not self._recent(key)]:
            del self._events[key]
        # Still full: drop the keys seen first (dicts keep insertion order).
        for key in list(self._events)[: max(0, len(self._events) - MAX_KEYS)]:
            del self._events[key]
