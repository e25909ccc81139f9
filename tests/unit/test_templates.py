"""Templates render values the way an agent says them and refuse to leave a blank."""

from __future__ import annotations

import pytest

from flowspec.templates import TemplateError, render


def test_values_render_for_speech() -> None:
    context = {"bill": {"amount_due": 1050.0, "due_date": "2026-12-05", "overdue": False}}
    text = render("应还{bill.amount_due}元，{bill.due_date}到期，逾期：{bill.overdue}", context)
    assert text == "应还1050元，2026年12月5日到期，逾期：否"


def test_missing_value_is_an_error_not_a_blank() -> None:
    with pytest.raises(TemplateError, match="bill.minimum_payment"):
        render("最低还款{bill.minimum_payment}元", {"bill": {"amount_due": 10}})


def test_lists_use_the_item_format_and_voice_reads_three() -> None:
    items = [{"period": n, "amount": 100.5} for n in range(1, 6)]
    formats = {"installments": "第{period}期{amount}元"}
    chat = render("{schedule.installments}", {"schedule": {"installments": items}}, formats)
    voice = render("{schedule.installments}", {"schedule": {"installments": items}}, formats, voice=True)
    assert chat.count("期") == 5
    assert voice == "第1期100.5元；第2期100.5元；第3期100.5元"


def test_list_without_item_format_is_an_error() -> None:
    with pytest.raises(TemplateError, match="item_formats"):
        render("{cards.cards}", {"cards": {"cards": [{"bank": "招商银行"}]}})
