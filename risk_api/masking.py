"""Masking of phone, card and ID numbers, one-time codes and stated names for responses, audit
entries and log lines; log lines also name a session by its digest, never by its id.

Standard library only (and `trust/`): Rasa (Python 3.10) and the services (3.11) import it.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from trust.logs import session_ref


def mask_phone(phone: str) -> str:
    return f"{phone[:3]}****{phone[-4:]}" if len(phone) >= 8 else "****"


def mask_card(number: str) -> str:
    return f"{number[:4]} **** **** {number[-4:]}" if len(number) >= 8 else "****"


def mask_id_number(id_number: str) -> str:
    if len(id_number) < 11:
        return "*" * len(id_number)
    return id_number[:6] + "*" * (len(id_number) - 10) + id_number[-4:]


def mask_name(name: str) -> str:
    return name[:1] + "*" * (len(name) - 1)


def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def _hide(_: str) -> str:
    return "****"


_MASK_BY_KEY: dict[str, Callable[[str], str]] = {
    "phone": mask_phone,
    "new_phone": mask_phone,
    "to": mask_phone,
    "card_number": mask_card,
    "id_number": mask_id_number,
    "id_last4": _hide,
    "id_last6": _hide,
    "code": _hide,
    "name": mask_name,
    "email": mask_email,
}


def mask_inputs(value: Any) -> Any:
    """Copy of a request body with every sensitive field masked (recursively)."""
    if isinstance(value, dict):
        return {
            key: _MASK_BY_KEY[key](str(item)) if key in _MASK_BY_KEY and item is not None
            else mask_inputs(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [mask_inputs(item) for item in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


# Numbers that identify a person, as written, typed or transcribed: an ID number (17 digits +
# digit/X, or grouped 6-8-4), a card in groups of four (16-19 digits), a mainland mobile with an
# optional +86/0086/86 prefix (plain, or grouped 3-4-4 by spaces or dashes), and any other run
# of 15-19 digits (a card) or 11 digits starting with 1 (a mobile). Shorter numbers, amounts
# (1,234.56) and dates (2026-12-04) have no such shape.
_NUMBER = re.compile(
    r"(?<![0-9])(?:"
    r"(?P<id>[0-9]{17}[0-9Xx]|[0-9]{6} [0-9]{8} [0-9]{3}[0-9Xx])"
    r"|(?P<card>[0-9]{4}(?P<sep>[ -])[0-9]{4}(?:(?P=sep)[0-9]{4}){2}(?:(?P=sep)[0-9]{1,3})?)"
    r"|(?:(?:\+|00)?86[ -]?)?(?P<mobile>1[3-9][0-9](?P<msep>[ -]?)[0-9]{4}(?P=msep)[0-9]{4})"
    r"|[0-9]{15,19}|1[0-9]{10}"
    r")(?![0-9Xx])"
)
_SEPARATORS = re.compile(r"[ -]")


def _mask_number(match: re.Match[str]) -> str:
    digits = _SEPARATORS.sub("", match.group(0))
    if match.group("id") or len(digits) == 18:
        return mask_id_number(digits)
    if match.group("card"):
        return mask_card(digits)
    if match.group("mobile"):
        return mask_phone(_SEPARATORS.sub("", match.group("mobile")))
    if len(digits) == 11:
        return mask_phone(digits)
    return mask_card(digits)


# A one-time code (4-8 digits, also spoken digits in a transcript) or ID digits right after
# words that announce them; without such words a short number is an amount, a date or an id.
_DIGIT_CHARS = "0-9零〇一二三四五六七八九幺"
_CUED_SECRET = re.compile(
    r"(?P<cue>验证码|动态码|校验码|动态密码|短信码|后四位|后4位|后六位|后6位|(?<![A-Za-z])(?i:code|otp)(?![A-Za-z]))"
    rf"(?P<gap>[^{_DIGIT_CHARS}\n]{{0,6}}?)"
    rf"(?:[0-9]{{3,7}}[Xx]|[0-9]{{4,8}}|[零〇一二三四五六七八九幺]{{4,8}})(?![{_DIGIT_CHARS}Xx])"
)

# A name the customer states: after 我叫/名字叫/名字是, any two to four characters; after the
# looser 我是/本人 only a common surname starts a name (我是本人, 本人操作的 are not names).
_NOT_IN_NAME = "的了呢吧啊呀吗嘛哦嗯想要我你您他她在是不也都就还已会能说问来去个这那和与及或有"
_NAME_CHAR = rf"(?:(?![{_NOT_IN_NAME}])[\u4e00-\u9fff])"
_SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶"
             "程苏魏吕丁沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方白邹孟熊秦邱尹薛闫段雷侯龙史陶黎贺顾毛"
             "郝龚邵严覃武戴莫孔汤温康施牛樊葛邢齐易乔伍庞颜倪庄聂章鲁岳翟殷詹欧耿焦俞左柳甘祝")
_NAME = re.compile(
    rf"(?P<cue>我叫|名字叫|名字是)(?P<gap>[:： ]?)(?P<name>{_NAME_CHAR}{{2,4}})"
    rf"|(?P<cue2>我是|本人)(?P<gap2> ?)(?!马上|高兴|方便|白天|金额|余额|周末|曾经|夏天)"
    rf"(?P<name2>(?:欧阳|司马|诸葛|上官|慕容|[{_SURNAMES}]){_NAME_CHAR}{{1,3}})"
)


def _mask_stated_name(match: re.Match[str]) -> str:
    if match.group("cue"):
        return match.group("cue") + match.group("gap") + mask_name(match.group("name"))
    return match.group("cue2") + match.group("gap2") + mask_name(match.group("name2"))


# The ids this service gives hand-overs, tickets, receipts… (risk_api.db.new_id): a prefix and
# GENERATED_ID_HEX hex digits, which may hold a run of 15+ decimal digits that is no card.
GENERATED_ID_HEX = 20
_GENERATED_ID = re.compile(rf"(\b[A-Z]{{1,4}}-[0-9a-f]{{{GENERATED_ID_HEX}}}\b)")


def mask_text(text: str) -> str:
    """Free text with every identifying number, cued code or ID digits and stated name masked;
    the service's own ids are left whole."""
    parts = _GENERATED_ID.split(text)  # the ids at odd positions
    return "".join(part if index % 2 else _mask_free_text(part) for index, part in enumerate(parts))


def _mask_free_text(text: str) -> str:
    text = _NUMBER.sub(_mask_number, text)
    text = _CUED_SECRET.sub(lambda match: match.group("cue") + match.group("gap") + "****", text)
    return _NAME.sub(_mask_stated_name, text)


# A conversation's id in a URL path or query (the risk API's /sessions/<id> and ?session_id=,
# Rasa's /conversations/<id>); a %-placeholder is a log format string's, filled in later.
_SESSION_IN_URL = re.compile(r"(?P<where>/(?:sessions|conversations)/|[?&]session_id=)(?P<id>(?!%)[^/?&#\s\"']+)")
_SESSION_REF = re.compile(r"s-[0-9a-f]{12}")


def mask_session_ids(text: str) -> str:
    """Session ids in URLs replaced by their digest (trust/logs.py), once."""
    def digest(match: re.Match[str]) -> str:
        session_id = match.group("id")
        ref = session_id if _SESSION_REF.fullmatch(session_id) else session_ref(unquote(session_id))
        return match.group("where") + ref
    return _SESSION_IN_URL.sub(digest, text)


def mask_log_text(text: str) -> str:
    return mask_text(mask_session_ids(text))


class MaskingLogFilter(logging.Filter):
    """Masks every record; keeps args a tuple (uvicorn's access formatter unpacks it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask_log_text(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(mask_log_text(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: mask_log_text(v) if isinstance(v, str) else v
                           for k, v in record.args.items()}
        return True


def install_log_masking() -> None:
    """Every service's logs masked, whoever configures the handlers; no client logs a URL.

    The filter goes on the root logger's handlers and on the loggers of the frameworks that do
    not propagate (uvicorn, sanic, rasa); httpx/httpcore log full request URLs at INFO.
    """
    masking = MaskingLogFilter()
    for name in (None, "uvicorn", "uvicorn.access", "uvicorn.error", "sanic.root", "sanic.access",
                 "sanic.error", "rasa", "rasa_sdk"):
        logger = logging.getLogger(name)
        logger.addFilter(masking)
        for handler in logger.handlers:
            handler.addFilter(masking)
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
