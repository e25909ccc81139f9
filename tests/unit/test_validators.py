"""`validate_<type>`: a value for a good answer, None for one that does not fit the slot."""

from __future__ import annotations

from typing import Any

from bot.actions.validators import Utterance, validate
from flowspec.model import Response, Slot

BANKS = [{"name": "招商银行", "aliases": ["招行"]}, {"name": "中国建设银行", "aliases": ["建行"]}]


def slot(kind: str, **options: Any) -> Slot:
    return Slot("x", kind, Response("?", "?"), options=options)


def said(text: str, intent: str | None = None) -> Utterance:
    return Utterance(text, intent, BANKS)


def test_yes_no_from_intent_words_and_keypad() -> None:
    yes_no = slot("yes_no")
    assert validate(yes_no, said("嗯", "affirm")) is True
    assert validate(yes_no, said("随便", "deny")) is False
    assert validate(yes_no, said("不是的")) is False
    assert validate(yes_no, said("可以的")) is True
    assert validate(yes_no, said("1")) is True
    assert validate(yes_no, said("2")) is False
    assert validate(yes_no, said("今天天气")) is None


def test_digits_length_and_id_check_character() -> None:
    four = slot("digits", length=4)
    assert validate(four, said("一二三四")) == "1234"
    assert validate(four, said("123")) is None
    assert validate(four, said("123X")) == "123X"
    assert validate(four, said("12X4")) is None
    card = slot("digits", min_length=16, max_length=19)
    assert validate(card, said("6222 0000 1111 2222")) == "6222000011112222"


def test_amount_bounds() -> None:
    amount = slot("amount", min=100, max=50000)
    assert validate(amount, said("三千")) == 3000
    assert validate(amount, said("五十")) is None
    assert validate(amount, said("十万")) is None
    assert validate(slot("amount", min=0), said("零")) == 0


def test_choice_by_word_or_keypad_number() -> None:
    periods = slot("choice", choices=[{"value": 3, "say": "3期", "words": ["三期"]},
                                      {"value": 6, "say": "6期", "words": ["六期"]}])
    assert validate(periods, said("分六期吧")) == 6
    assert validate(periods, said("1")) == 3
    assert validate(periods, said("十二期")) is None


def test_bank_by_name_or_alias() -> None:
    assert validate(slot("bank"), said("换成建行的卡")) == "中国建设银行"
    assert validate(slot("bank"), said("农商行")) is None


def test_rating_words_and_numbers() -> None:
    assert validate(slot("rating"), said("非常满意")) == 5
    assert validate(slot("rating"), said("三分")) == 3
    assert validate(slot("rating"), said("九分")) is None


def test_phone_must_be_a_mobile_number() -> None:
    assert validate(slot("phone"), said("幺九九零零零零零零零一")) == "19900000001"
    assert validate(slot("phone"), said("12345")) is None


def test_name_drops_fillers() -> None:
    name = Slot("customer_name", "text", Response("?", "?"), proves="name")
    assert validate(name, said("我叫张测甲")) == "张测甲"
    assert validate(name, said("是")) is None
