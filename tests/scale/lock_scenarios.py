"""The waiting turn's ticket renewal (bot/rasa_launcher.py) inside Rasa's environment, against a
real Redis: `.venv/bin/python tests/scale/lock_scenarios.py <redis port> <password>` prints what
each scenario left in the lock store as one JSON line (tests/scale/test_lock_renewal.py checks it;
the services' Python cannot import Rasa). Another process's write between the renewal's read and
its write is made deterministic by running it from inside the read (TicketLock.from_dict)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from rasa.core.lock import TicketLock
from rasa.core.lock_store import RedisLockStore

from bot import rasa_launcher
from bot.rasa_launcher import _renew_ticket


def renewed_while(waiter: RedisLockStore, conversation: str, ticket: int, other_process: Callable[[], None]) -> bool:
    """The waiter's renewal with `other_process` writing the lock between the renewal's first
    read and its write."""
    original = TicketLock.from_dict
    done = False

    def from_dict(data: dict[str, Any]) -> TicketLock:
        nonlocal done
        if not done:
            done = True
            other_process()
        return original(data)

    TicketLock.from_dict = from_dict  # type: ignore[assignment,method-assign]
    try:
        return _renew_ticket(waiter, conversation, ticket)
    finally:
        TicketLock.from_dict = original  # type: ignore[method-assign]


def tickets(store: RedisLockStore, conversation: str) -> list[int] | None:
    lock = store.get_lock(conversation)
    return None if lock is None else [ticket.number for ticket in lock.tickets]


def main(port: int, password: str) -> None:
    waiter = RedisLockStore(port=port, password=password)
    other = RedisLockStore(port=port, password=password)  # another Rasa process
    seen: dict[str, Any] = {}

    # The holder (ticket 0, another process) finishes while the waiter (ticket 1) renews.
    other.issue_ticket("finished", 20)
    waiter.issue_ticket("finished", 20)
    seen["finished_renewed"] = renewed_while(waiter, "finished", 1, lambda: other.finish_serving("finished", 0))
    seen["finished_tickets"] = tickets(waiter, "finished")

    # A third turn takes a ticket (2) while the waiter (1) renews.
    other.issue_ticket("newcomer", 20)
    waiter.issue_ticket("newcomer", 20)
    seen["newcomer_renewed"] = renewed_while(waiter, "newcomer", 1, lambda: other.issue_ticket("newcomer", 20))
    seen["newcomer_tickets"] = tickets(waiter, "newcomer")
    lock = waiter.get_lock("newcomer")
    seen["renewed_lifetime_s"] = round(max(t.expires for t in lock.tickets if t.number == 1)  # type: ignore[union-attr]
                                       - min(t.expires for t in lock.tickets if t.number == 0), 1)  # type: ignore

    # The lock deleted (every ticket expired and the holder cleaned up): the waiter's place is lost.
    waiter.issue_ticket("gone", 20)
    other.delete_lock("gone")
    seen["gone_renewed"] = _renew_ticket(waiter, "gone", 0)
    seen["lifetime"] = rasa_launcher.LOCK_LIFETIME
    print(json.dumps(seen))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
