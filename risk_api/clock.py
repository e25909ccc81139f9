"""Time source of the service; injectable so tests can move time instead of sleeping."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from typing import Protocol

# The lender works in China time; China has no daylight saving, so a fixed offset is exact.
CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(CHINA_TZ)


class ShiftedClock:
    """System time plus an adjustable offset (tests advance it past expiry times); held, it
    stands still and only advance() moves it (tests measure durations exactly)."""

    def __init__(self) -> None:
        self.offset = timedelta()
        self._held: datetime | None = None

    def now(self) -> datetime:
        held = self._held
        return held if held is not None else datetime.now(CHINA_TZ) + self.offset

    def advance(self, seconds: float) -> None:
        if self._held is not None:
            self._held += timedelta(seconds=seconds)
        else:
            self.offset += timedelta(seconds=seconds)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Time stands still inside the block; afterwards it runs on from where it stood."""
        self._held = self.now()
        try:
            yield
        finally:
            # Offset first, then let go: a reader never sees time run backwards.
            assert self._held is not None
            self.offset = self._held - datetime.now(CHINA_TZ)
            self._held = None


def today(clock: Clock) -> date:
    return clock.now().date()
