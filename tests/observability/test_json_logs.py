"""LOG_FORMAT=json: one JSON object a line, naming the conversation by its digest and the call,
with the phone, ID and card numbers, codes and names of the message masked."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from stack.services import ROOT
from trust.log_format import JsonLogFormatter, LogFormatError, configure_logging, log_context, log_format
from trust.logs import session_ref

PHONE, ID_NUMBER, CARD, CODE = "13812345678", "11010119900307123X", "6222021234567890123", "482913"
SESSION = "chat-session-token-abcdef0123456789"


@pytest.fixture
def json_lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of this test's own writing through the JSON formatter (the root logger is left alone)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLogFormatter("test-service"))
    logger = logging.getLogger(f"observability.{id(out)}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)


def lines_of(out: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_is_json_with_personal_data_masked(json_lines: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = json_lines
    with log_context(conversation_id=SESSION, call_id="4f1c2a9e-call"):
        logger.info("客户我叫王小明，电话 %s，身份证 %s，卡号 %s，验证码 %s", PHONE, ID_NUMBER, CARD, CODE)
    logger.warning("outside any conversation: %s", {"phone": PHONE})  # a dict argument, text only at format time
    first, second = lines_of(out)
    assert first["service"] == "test-service" and first["level"] == "INFO" and first["time"].endswith("+00:00")
    assert first["conversation"] == session_ref(SESSION) and first["call"] == "4f1c2a9e-call"
    for line in (first, second):
        text = json.dumps(line, ensure_ascii=False)
        for secret in (PHONE, ID_NUMBER, CARD, CODE, "王小明", SESSION):
            assert secret not in text
    assert "conversation" not in second and "call" not in second


def test_extra_ids_and_tracebacks(json_lines: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = json_lines
    try:
        raise ValueError(f"no customer with phone {PHONE}")
    except ValueError:
        logger.exception("lookup failed", extra={"conversation_id": SESSION})
    (line,) = lines_of(out)
    assert line["conversation"] == session_ref(SESSION)
    assert "ValueError" in line["exception"] and PHONE not in line["exception"]


async def test_the_context_follows_a_task_and_ends_with_its_block(
        json_lines: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = json_lines

    async def turn() -> None:
        logger.info("inside")

    with log_context(call_id="call-a"):
        await asyncio.create_task(turn())
    logger.info("after")
    inside, after = lines_of(out)
    assert inside["call"] == "call-a" and "call" not in after


def test_the_setting() -> None:
    assert log_format({}) == "text" and log_format({"LOG_FORMAT": " JSON "}) == "json"
    with pytest.raises(LogFormatError, match="LOG_FORMAT must be one of text, json"):
        log_format({"LOG_FORMAT": "xml"})
    with pytest.raises(LogFormatError):
        configure_logging("test", {"LOG_FORMAT": "yaml"})


def test_a_service_refuses_an_unknown_format_at_start() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_FORMAT": "xml"}
    done = subprocess.run([sys.executable, "-m", "risk_api"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "LOG_FORMAT must be one of" in done.stderr
