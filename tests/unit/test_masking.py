"""mask_text hides what identifies a customer in the ways they write, type and say it, and
leaves amounts, dates and ticket numbers readable; log lines name sessions by digest."""

from __future__ import annotations

import logging

import pytest

from risk_api.masking import MaskingLogFilter, mask_session_ids, mask_text
from trust.logs import session_ref


@pytest.mark.parametrize(("text", "masked"), [
    ("13812345678", "138****5678"),
    ("电话+86 138 1234 5678", "电话138****5678"),
    ("电话 +86-138-1234-5678", "电话 138****5678"),
    ("+8613812345678", "138****5678"),
    ("8613812345678", "138****5678"),
    ("0086 13812345678", "138****5678"),
    ("我的手机是138 1234 5678", "我的手机是138****5678"),
    ("138-1234-5678", "138****5678"),
])
def test_mobile_numbers_with_prefix_spaces_or_dashes(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize(("text", "masked"), [
    ("身份证11010119900307123X", "身份证110101********123X"),
    ("身份证号 110101199003071234", "身份证号 110101********1234"),
    ("身份证 110101 19900307 123x", "身份证 110101********123x"),
])
def test_id_numbers(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize(("text", "masked"), [
    ("卡号6222021234567890", "卡号6222 **** **** 7890"),
    ("卡号 6222 0212 3456 7890", "卡号 6222 **** **** 7890"),
    ("卡号6222-0212-3456-7890-123", "卡号6222 **** **** 0123"),
    ("card 6222021234567890123", "card 6222 **** **** 0123"),
])
def test_bank_cards_plain_or_in_groups_of_four(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize(("text", "masked"), [
    ("我的验证码是 482913", "我的验证码是 ****"),
    ("验证码：4829", "验证码：****"),
    ("动态码48291375", "动态码****"),
    ("my code is 482913", "my code is ****"),
    ("OTP: 4829", "OTP: ****"),
    ("验证码是四八二九一三", "验证码是****"),  # as speech recognition may write it
    ("身份证后四位是123X", "身份证后四位是****"),
    ("身份证后六位是12345X", "身份证后六位是****"),
    ("后6位 482913", "后6位 ****"),
])
def test_codes_and_id_digits_when_the_words_say_so(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize(("text", "masked"), [
    ("我叫张三", "我叫张*"),
    ("我叫 欧阳娜娜", "我叫 欧***"),
    ("你好我叫张三丰想查额度", "你好我叫张**想查额度"),
    ("我是李四，查一下账单", "我是李*，查一下账单"),
    ("本人王小明", "本人王**"),
    ("我的名字是赵敏", "我的名字是赵*"),
])
def test_stated_names(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize("text", [
    "本期应还1,234.56元", "我想还2,000.50元", "金额12345678元", "到期日2026-12-04", "工单T-1234已受理",
    "验证码已发送至您的手机138****5678，请输入6位短信验证码。", "请输入您的真实姓名。", "我是本人",
    "借款记录里那笔钱不是我本人借的", "本人操作的交易", "我是户主本人，麻烦核实下", "我是马上要还款",
    "我是老年人，不太会用", "我是在跟机器说话吗", "分12期，每期500元", "客服热线95588",
])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert mask_text(text) == text


def test_the_services_own_ids_stay_whole_even_with_a_card_length_run_of_digits() -> None:
    """risk_api.db.new_id: 20 hex digits, so about one id in 200 holds 15 decimal digits in a row
    (a hand-over's id was masked as a card in an audit entry, failing a CI run)."""
    handoff_id = "H-dc1df669593943779578"
    assert mask_text(f"hand-over {handoff_id}, 卡号6222021234567890123") == (
        f"hand-over {handoff_id}, 卡号6222 **** **** 0123")
    assert mask_text({"handoff_id": handoff_id}["handoff_id"]) == handoff_id
    assert mask_text("RC-6695939437795781234a") == "RC-6695939437795781234a"  # an id, 20 hex digits
    assert mask_text("X6695939437795781234") != "X6695939437795781234"  # not an id's shape: masked


def test_masking_twice_changes_nothing_more() -> None:
    text = "我叫张三，电话+86 138 1234 5678，卡号6222 0212 3456 7890，验证码482913"
    assert mask_text(mask_text(text)) == mask_text(text)


def test_session_ids_in_urls_become_their_digest() -> None:
    session_id = "9f2c4e6a8b0d4c1e"
    ref = session_ref(session_id)
    assert mask_session_ids(f"/sessions/{session_id}") == f"/sessions/{ref}"
    assert mask_session_ids(f"/customers/C1/bill?session_id={session_id}&limit=5") == \
        f"/customers/C1/bill?session_id={ref}&limit=5"
    assert mask_session_ids(f"/conversations/{session_id}/tracker") == f"/conversations/{ref}/tracker"
    assert mask_session_ids(f"/sessions/{ref}") == f"/sessions/{ref}", "a digest is not digested again"
    assert mask_session_ids("GET /sessions/%s") == "GET /sessions/%s", "a format string's placeholder stays"


def test_access_log_line_shows_no_session_id_or_number() -> None:
    # uvicorn.access: client, method, path with query, HTTP version, status.
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", "/sessions/abc123def456?session_id=abc123def456",
                                "1.1", 200), None)
    MaskingLogFilter().filter(record)
    ref = session_ref("abc123def456")
    assert record.getMessage() == f'127.0.0.1:5000 - "GET /sessions/{ref}?session_id={ref} HTTP/1.1" 200'
