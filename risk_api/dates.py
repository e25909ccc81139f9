"""Calendar arithmetic used by the generator, the reads and the actions."""
from __future__ import annotations

import calendar
from datetime import date, timedelta


def add_months(day: date, months: int) -> date:
    """Same day of month `months` later (clamped to the month's last day)."""
    month_index = day.year * 12 + day.month - 1 + months
    year, month = divmod(month_index, 12)
    last_day = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last_day))


def is_working_day(day: date) -> bool:
    return day.weekday() < 5  # public holidays are ignored in the demo


def add_working_days(day: date, count: int) -> date:
    """Move `count` working days forward (negative: backward)."""
    step = 1 if count >= 0 else -1
    remaining = abs(count)
    while remaining:
        day += timedelta(days=step)
        if is_working_day(day):
            remaining -= 1
    return day


def chinese_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"
