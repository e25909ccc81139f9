"""Reading the event stream by position without skipping a write that commits late.

Positions are the table's autoincrement ids, handed out when a row is inserted, not when its
transaction commits. On PostgreSQL two writers (Rasa's broker in each Rasa process, the phone
gateway) can commit out of order: the reader sees 7 while 6 is still in flight, and a plain
`id > cursor` would never look at 6 again.

Chosen: remember the gaps. Every position a read passes without seeing it is `pending`, with
when it was first missed, and each read asks for the pending positions again, for at most
GAP_WAIT_SECONDS: a write in flight lands within that (each writer's transaction is one insert of
at most 500 rows), a rolled-back write (or a sequence value PostgreSQL never used) never does and
is given up. Events are inspected as soon as they are committed, in their commit order. Rejected:
reading only rows older than a settle window, which delays every alert by the window and still
skips a transaction slower than it; and PostgreSQL's snapshot xmin, which needs a transaction id
on every row and a PostgreSQL-only reader while SQLite is the default. On SQLite writers are
serialised (one write transaction at a time), so gaps only come from rolled-back writes.

Time comes from the caller (`now`), so tests run it on a virtual clock.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from quality.events import StreamEvent
from quality.store import Progress

log = logging.getLogger(__name__)

GAP_WAIT_SECONDS = 120.0
# Positions waited for at once: writers in flight times their batch, with room to spare. A jump
# further than that (ids a sequence skipped) is given up beyond it rather than held in memory.
MAX_PENDING = 5000


class StreamCursor:
    def __init__(self, progress: Progress | None = None) -> None:
        self.progress = progress or Progress()
        self.given_up = 0  # positions never seen within GAP_WAIT_SECONDS (rolled back, most likely)

    def snapshot(self) -> Progress:
        """A copy to save (or to read with off the event loop) while this one goes on."""
        return replace(self.progress, pending=dict(self.progress.pending))

    def advance(self, late: list[StreamEvent], fresh: list[StreamEvent], now: float) -> list[StreamEvent]:
        """`late`: events found at pending positions; `fresh`: the events after `position`, in
        order. Returns the events to inspect (both), and moves the cursor past them."""
        pending = self.progress.pending
        for event in late:
            pending.pop(event.id, None)
        expected = self.progress.position + 1
        for event in fresh:
            if event.id > expected:
                tracked_from = max(expected, event.id - MAX_PENDING)
                self._give_up(tracked_from - expected, "too far behind")
                pending.update(dict.fromkeys(range(tracked_from, event.id), now))
            expected = event.id + 1
        if fresh:
            self.progress.position = fresh[-1].id
        expired = [position for position, since in pending.items() if now - since > GAP_WAIT_SECONDS]
        for position in expired:
            del pending[position]
        self._give_up(len(expired), f"not committed within {GAP_WAIT_SECONDS:.0f} s")
        if len(pending) > MAX_PENDING:
            oldest = sorted(pending)[:len(pending) - MAX_PENDING]
            for position in oldest:
                del pending[position]
            self._give_up(len(oldest), "too many waited for")
        return [*late, *fresh]

    def _give_up(self, count: int, why: str) -> None:
        if count > 0:
            self.given_up += count
            log.info("event stream: %d positions given up (%s): rolled back, or a write lost", count, why)
