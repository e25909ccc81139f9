"""The time a call's real-time loops keep, injected so tests run them on virtual time.

Everything that paces or waits on a call (the output clock, AudioSocket's keep-alive and inbound
budget) takes a `Clock` (monotonic seconds; default `time.monotonic`) and a `Sleep` (default
`asyncio.sleep`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
