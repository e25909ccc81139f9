"""Reading values out of what Chinese customers say or type: numbers, amounts, dates, digits.

Speech recognition writes numbers as characters (三千五, 幺三八), customers type them as
digits, and keypad presses arrive as digits: every parser here accepts all three.
"""

from __future__ import annotations

import datetime as dt
import re

from flowspec.model import load_answers

DIGIT_CHARS = {
    "零": 0, "〇": 0, "洞": 0, "一": 1, "幺": 1, "壹": 1, "二": 2, "两": 2, "贰": 2, "三": 3,
    "叁": 3, "四": 4, "肆": 4, "五": 5, "伍": 5, "六": 6, "陆": 6, "七": 7, "柒": 7, "拐": 7,
    "八": 8, "捌": 8, "九": 9, "玖": 9, "勾": 9,
}
SMALL_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
LARGE_UNITS = {"万": 10_000, "萬": 10_000, "亿": 100_000_000}
CN_NUMBER = "零〇一二两三四五六七八九十百千万亿壹贰叁肆伍陆柒捌玖拾佰仟萬幺点"
NUMBER_TOKEN = re.compile(rf"(\d+(?:\.\d+)?\s*[万千百kK]?|[{CN_NUMBER}]+)")
MAX_DAYS_AHEAD = 366  # no flow books anything further out; larger numbers are mishearings
WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}


def chinese_to_number(text: str) -> float | None:
    """三千五百 → 3500, 两万 → 20000, 三千五 → 3500 (spoken shorthand), 一点五万 → 15000."""
    if not text:
        return None
    if "点" in text:
        whole, _, rest = text.partition("点")
        unit = 1
        if rest and rest[-1] in LARGE_UNITS:
            unit, rest = LARGE_UNITS[rest[-1]], rest[:-1]
        integer = chinese_to_number(whole) if whole else 0
        fraction_digits = "".join(str(DIGIT_CHARS[c]) for c in rest if c in DIGIT_CHARS)
        if integer is None or not fraction_digits:
            return None
        return (integer + float(f"0.{fraction_digits}")) * unit
    total, section, digit = 0.0, 0.0, None
    last_unit, zero_after_unit = 1, False
    for char in text:
        if char in DIGIT_CHARS:
            digit = DIGIT_CHARS[char]
            zero_after_unit = zero_after_unit or digit == 0
        elif char in SMALL_UNITS:
            unit = SMALL_UNITS[char]
            section += (1 if digit is None else digit) * unit
            digit, last_unit, zero_after_unit = None, unit, False
        elif char in LARGE_UNITS:
            section += digit or 0
            total += section * LARGE_UNITS[char]
            section, digit, last_unit = 0.0, None, LARGE_UNITS[char]
            zero_after_unit = False
        else:
            return None
    if digit is not None:
        # 三千五 means 3500 (a trailing digit right after a unit counts one order lower);
        # 一千零五 is 1005.
        shorthand = last_unit >= 10 and not zero_after_unit
        section += digit * (last_unit // 10 if shorthand else 1)
    return total + section


def _token_value(token: str) -> float | None:
    token = token.strip()
    if not token:
        return None
    if token[0].isdigit():
        multiplier = {"万": 10_000, "千": 1000, "k": 1000, "K": 1000, "百": 100}.get(token[-1], 1)
        number = token.rstrip("万千百kK").strip()
        return float(number) * multiplier
    if all(char in DIGIT_CHARS for char in token) and len(token) > 1:
        return float("".join(str(DIGIT_CHARS[char]) for char in token))
    return chinese_to_number(token)


def parse_amount(text: str, strict: bool = False) -> float | None:
    """The first money amount: 3000, 三千块, 1.5万, 五千元, 2,000.50.

    Numbers that name a weekday, date, period or duration (周五, 5号, 3期, 两天) are not
    amounts. `strict` also wants a money word or unit, for amounts picked out of a request
    that was not an answer to "how much?".
    """
    cleaned = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    for match in NUMBER_TOKEN.finditer(cleaned):
        before = cleaned[max(0, match.start() - 2):match.start()]
        after = cleaned[match.end():match.end() + 1]
        if re.search(r"(周|星期|礼拜|第)$", before) or after in ("号", "日", "月", "天", "期", "个", "年", "点"):
            continue
        token = match.group(1)
        money_like = after in ("元", "块", "圆") or re.search(r"[万千百kK]|\d{3}", token)
        if strict and not money_like:
            continue
        value = _token_value(token)
        if value is not None:
            return round(value, 2)
    return None


def parse_days(text: str) -> int | None:
    """两天 → 2, 3天 → 3, 一周/一个礼拜/一星期 → 7."""
    if re.search(r"(一|1)\s*(个)?(周|星期|礼拜)", text):
        return 7
    match = re.search(rf"(\d+|[{CN_NUMBER}]+)\s*(个)?\s*(天|日)", text)
    if not match:
        amount = parse_amount(text)
        return int(amount) if amount and amount == int(amount) and amount <= MAX_DAYS_AHEAD else None
    value = _token_value(match.group(1))
    return int(value) if value else None


def parse_date(text: str, today: dt.date | None = None) -> dt.date | None:
    """今天/明天/后天/大后天, N天后, 下周五/周五, 12月5号, 15号."""
    today = today or dt.date.today()
    relative = {"今天": 0, "明天": 1, "后天": 2, "大后天": 3}
    for word in sorted(relative, key=len, reverse=True):
        if word in text:
            return today + dt.timedelta(days=relative[word])
    match = re.search(rf"(\d+|[{CN_NUMBER}]+)\s*天(以)?后", text)
    if match and (value := _token_value(match.group(1))):
        return today + dt.timedelta(days=int(value)) if value <= MAX_DAYS_AHEAD else None
    match = re.search(r"(下+)?(个)?(周|星期|礼拜)([一二三四五六日天1-7])", text)
    if match:
        day = match.group(4)
        weekday = int(day) - 1 if day.isdigit() else WEEKDAYS[day]
        weeks_ahead = len(match.group(1) or "")
        start_of_week = today - dt.timedelta(days=today.weekday())
        candidate = start_of_week + dt.timedelta(days=weekday, weeks=weeks_ahead)
        return candidate if candidate >= today else candidate + dt.timedelta(weeks=1)
    match = re.search(rf"(?:(\d+|[{CN_NUMBER}]+)\s*月)?\s*(\d+|[{CN_NUMBER}]+)\s*(号|日)", text)
    if match:
        month_value = _token_value(match.group(1)) if match.group(1) else today.month
        day_value = _token_value(match.group(2))
        if not month_value or not day_value:
            return None
        year = today.year
        try:
            candidate = dt.date(year, int(month_value), int(day_value))
            if candidate < today:
                candidate = (
                    dt.date(year + 1, int(month_value), int(day_value))
                    if match.group(1)
                    else _next_month_day(today, int(day_value))
                )
        except ValueError:
            return None
        return candidate
    return None


def _next_month_day(today: dt.date, day: int) -> dt.date:
    month = today.month % 12 + 1
    year = today.year + (1 if month == 1 else 0)
    return dt.date(year, month, day)


def parse_digits(text: str) -> str:
    """Every digit said, typed or pressed, in order: 幺三八 → 138; keeps X for ID numbers. Numerals
    inside words that are no number (等一下, 一直) are not digits."""
    answers = load_answers()
    for word in answers.not_digits:
        text = text.replace(word, " ")
    out = []
    for char in text:
        if char.isdecimal():  # also full-width １２３, written back as ASCII
            out.append(str(int(char)))
        elif char in answers.digits:
            out.append(str(answers.digits[char]))
        elif char in "xX叉":
            out.append("X")
    return "".join(out)
