"""Virtual time for a call's real-time loops (voice.clock): the output clock, AudioSocket's
keep-alive. Sleepers wake in virtual-time order as the test advances it; the wall clock only
lets sockets and tasks run in between, so no assertion depends on how busy the machine is."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class VirtualTime:
    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._order), wake))
        await wake

    async def advance_to(self, until: float) -> None:
        for _ in range(2000):  # a bound: every wake-up of the loops under test, and more
            await asyncio.sleep(0.002)  # sockets and ready tasks run; they may add sleepers
            if not self._sleepers or self._sleepers[0][0] > until:
                break
            self.now, _, wake = heapq.heappop(self._sleepers)
            if not wake.done():
                wake.set_result(None)
        self.now = until
