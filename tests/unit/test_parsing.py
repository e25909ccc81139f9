"""Numbers, amounts, days, dates and digits as customers say, type and press them."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.actions.parsing import chinese_to_number, parse_amount, parse_date, parse_days, parse_digits

MONDAY = dt.date(2026, 11, 23)


@pytest.mark.parametrize(("said", "value"), [
    ("三千五百", 3500), ("三千五", 3500), ("两万", 20000), ("一百零五", 105), ("十五", 15),
    ("三万零五百", 30500), ("一点五万", 15000), ("二十", 20),
])
def test_chinese_numbers(said: str, value: float) -> None:
    assert chinese_to_number(said) == value


@pytest.mark.parametrize(("said", "value"), [
    ("三千", 3000), ("3000元", 3000), ("1.5万", 15000), ("五千块钱", 5000), ("我想还2,000.50元", 2000.5),
    ("周五还两千", 2000), ("零", 0),
])
def test_amounts(said: str, value: float) -> None:
    assert parse_amount(said) == value


@pytest.mark.parametrize("said", ["分3期", "我想还款", "下周三", "15号"])
def test_no_amount_in_dates_periods_or_plain_requests(said: str) -> None:
    assert parse_amount(said) is None


def test_strict_amounts_need_a_money_word_or_a_real_number() -> None:
    assert parse_amount("我想提前还3000", strict=True) == 3000
    assert parse_amount("我想还五千块", strict=True) == 5000
    assert parse_amount("12", strict=True) is None


@pytest.mark.parametrize(("said", "days"), [("能不能推迟两天", 2), ("3天", 3), ("一个礼拜", 7), ("五", 5)])
def test_days(said: str, days: int) -> None:
    assert parse_days(said) == days


@pytest.mark.parametrize(("said", "date"), [
    ("明天", "2026-11-24"), ("后天", "2026-11-25"), ("周五", "2026-11-27"), ("下周五", "2026-12-04"),
    ("12月5号", "2026-12-05"), ("15号", "2026-12-15"), ("三天后", "2026-11-26"), ("1月3日", "2027-01-03"),
])
def test_dates_relative_to_today(said: str, date: str) -> None:
    assert parse_date(said, MONDAY) == dt.date.fromisoformat(date)


def test_no_date_in_plain_words() -> None:
    assert parse_date("我想改一下", MONDAY) is None


@pytest.mark.parametrize(("said", "digits"), [
    ("一二三四", "1234"), ("幺九九零零零零一二三四", "19900001234"), ("123x", "123X"), ("尾号是 5 6 7 8", "5678"),
])
def test_digits_spoken_typed_or_pressed(said: str, digits: str) -> None:
    assert parse_digits(said) == digits


@pytest.mark.parametrize(("said", "digits"), [("等一下", ""), ("我一直用的是幺三八零零", "13800"),
                                              ("一一三五", "1135"), ("稍等一会儿，验证码是四五六", "456")])
def test_numerals_inside_words_that_are_no_number_are_not_digits(said: str, digits: str) -> None:
    assert parse_digits(said) == digits
