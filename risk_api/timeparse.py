"""Preferred callback times as customers say them: ISO 8601 or e.g. "明天下午三点半"."""
from __future__ import annotations

import re
from datetime import datetime, time, timedelta

from risk_api.clock import CHINA_TZ

DAY_OFFSETS = (("大后天", 3), ("后天", 2), ("明天", 1), ("明早", 1), ("明晚", 1), ("今天", 0),
               ("今晚", 0))
AFTERNOON_WORDS = ("下午", "晚上", "傍晚", "今晚", "明晚")
DEFAULT_HOURS = (("上午", 10), ("早上", 9), ("中午", 12), ("下午", 15), ("晚上", 19))
DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
          "八": 8, "九": 9}
_CLOCK = re.compile(r"([0-9]{1,2}|[零一二两三四五六七八九十]{1,3})\s*[点:：时]\s*"
                    r"(半|[0-9]{1,2}|[一二三四五]?十?[一二三四五六七八九]?)?")


def chinese_number(text: str) -> int:
    """0-59 written with digits or Chinese numerals (十, 十二, 二十五, 三十)."""
    if text.isdigit():
        return int(text)
    tens, _, units = text.partition("十")
    if "十" not in text:
        return DIGITS[text]
    return (DIGITS[tens] if tens else 1) * 10 + (DIGITS[units] if units else 0)


def parse_preferred_time(text: str, now: datetime) -> datetime | None:
    """The moment meant, in China time; None when the text names no day and no hour."""
    try:
        parsed = datetime.fromisoformat(text.strip())
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=CHINA_TZ)
    except ValueError:
        pass
    offset = next((days for word, days in DAY_OFFSETS if word in text), None)
    match = _CLOCK.search(text)
    if match:
        minute_text = match.group(2) or ""
        try:
            hour = chinese_number(match.group(1))
            minute = (30 if minute_text == "半"
                      else chinese_number(minute_text) if minute_text else 0)
        except KeyError:  # not a number after all ("一一点")
            return None
        if hour < 12 and any(word in text for word in AFTERNOON_WORDS):
            hour += 12
    else:
        default = next((hours for word, hours in DEFAULT_HOURS if word in text), None)
        if default is None and offset is None:
            return None
        hour, minute = default if default is not None else 10, 0
    if hour > 23 or minute > 59:
        return None
    day = now.date() + timedelta(days=offset or 0)
    return datetime.combine(day, time(hour, minute), tzinfo=CHINA_TZ)
