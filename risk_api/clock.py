"""Time source of the service; injectable so tests can move time instead of sleeping."""
from __future__ import annotations

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
    """System time plus an adjustable offset (tests advance it past expiry times)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(CHINA_TZ) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def today(clock: Clock) -> date:
    return clock.now().date()
