"""Desk updates pushed to the page. One watcher per web process asks the risk API for its desk
stamp (a cheap aggregate of the hand-overs and reviews) a few times a second while any desk
listens, and wakes every listening desk when it changes; each desk's event stream then tells its
page to refresh (Server-Sent Events). However many desks are open, the risk API is asked once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

STAMP_INTERVAL_SECONDS = 0.5
log = logging.getLogger("web.push")


class StampWatcher:
    def __init__(self, fetch: Callable[[], Awaitable[str | None]],
                 interval: float = STAMP_INTERVAL_SECONDS) -> None:
        """`fetch`: the current stamp, or None when it cannot be had (the last one stands)."""
        self._fetch = fetch
        self._interval = interval
        self._stamp: str | None = None
        self._changed = asyncio.Condition()
        self._listeners = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def stamp(self) -> str | None:
        """The last stamp seen (None before the first look)."""
        return self._stamp

    async def _watch(self) -> None:
        while self._listeners:
            try:
                stamp = await self._fetch()
            except Exception:  # noqa: BLE001 - the watch outlives any one failed look
                log.exception("desk stamp: the look failed; the desks keep what they show")
                stamp = None
            if stamp is not None and stamp != self._stamp:
                async with self._changed:
                    self._stamp = stamp
                    self._changed.notify_all()
            await asyncio.sleep(self._interval)
        self._task = None  # no await since the check: a new listener starts a new watch

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[None]:
        self._listeners += 1
        if self._task is None:
            self._task = asyncio.create_task(self._watch())
        try:
            yield
        finally:
            self._listeners -= 1

    async def next_change(self, seen: str | None, timeout: float) -> str | None:
        """The stamp once it differs from `seen` (at once if it already does), or None after `timeout`."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self._stamp not in (None, seen)), timeout)
            except TimeoutError:
                return None
            return self._stamp


RECENT_ALERTS = 200


class AlertFeed:
    """The quality inspection's live alerts for the supervisors' board. One watch per web process
    asks the inspection for the alerts newer than the last it has, a few times a second while any
    board listens, keeps the latest RECENT_ALERTS and wakes the boards (the same StampWatcher, its
    stamp the last alert's number)."""

    def __init__(self, fetch: Callable[[int], Awaitable[dict[str, Any] | None]],
                 interval: float = STAMP_INTERVAL_SECONDS, keep: int = RECENT_ALERTS) -> None:
        """`fetch(after)`: the inspection's answer `{"alerts": [...], "last": n}`, or None when it
        cannot be had."""
        self._fetch = fetch
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self.last = 0
        self.epoch = 0  # counts the inspection's restarts: its numbering starts again
        self.watcher = StampWatcher(self._look, interval)

    async def _look(self) -> str | None:
        answer = await self._fetch(self.last)
        if answer is None:
            return None
        if int(answer.get("last", 0)) < self.last:  # restarted: what it numbers now is new
            self.recent.clear()
            self.last, self.epoch = 0, self.epoch + 1
            return f"{self.epoch}:0"
        for alert in answer.get("alerts", []):
            if int(alert["seq"]) > self.last:
                self.recent.append(alert)
                self.last = int(alert["seq"])
        return f"{self.epoch}:{self.last}"

    def after(self, seq: int) -> list[dict[str, Any]]:
        return [alert for alert in self.recent if alert["seq"] > seq]
