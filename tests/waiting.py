"""Waiting in a test for what other tasks, threads or processes do: until a condition holds or
an awaitable is done, bounded by a limit only a hang reaches. A busy machine makes a test slower,
never red; how long anything took is never asserted (speed belongs in bench/)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

BOUND_SECONDS = 30.0  # generous: a loaded 2-core machine is slow, never this slow

T = TypeVar("T")


async def within(awaitable: Awaitable[T], bound: float = BOUND_SECONDS) -> T:
    return await asyncio.wait_for(awaitable, bound)


async def until(condition: Callable[[], bool], bound: float = BOUND_SECONDS) -> None:
    """Until `condition` holds: state another task updates on its own, polled every 10 ms."""
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)
    await within(poll(), bound)


def until_true(condition: Callable[[], bool], bound: float = BOUND_SECONDS) -> None:
    """`until` for a test without an event loop: state another thread updates, polled every 10 ms."""
    for _ in range(int(bound / 0.01)):
        if condition():
            return
        time.sleep(0.01)
    assert condition(), f"waited {bound} s in vain"
