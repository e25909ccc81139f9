"""Every service's log lines in one format: text by default, one JSON object a line with
LOG_FORMAT=json (for a log collector). Personal data is masked either way (risk_api/masking.py):
the message and any traceback pass through the same masking as text lines.

A line names the conversation (its digest, trust/logs.py: the id itself reaches the conversation)
and the call when the code logging it runs inside `log_context`, or passes them as
`extra={"conversation_id": ..., "call_id": ...}`. A call id is Asterisk's channel UUID, which the
gateway already logs and which opens nothing by itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime

from ivr_config.environment import SettingsError
from risk_api.masking import install_log_masking, mask_log_text
from trust.logs import session_ref

LOG_FORMAT_ENV = "LOG_FORMAT"
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

class LogFormatError(SettingsError):
    """LOG_FORMAT names no format this module writes."""


_conversation: ContextVar[str | None] = ContextVar("log_conversation", default=None)
_call: ContextVar[str | None] = ContextVar("log_call", default=None)


@contextlib.contextmanager
def log_context(*, conversation_id: str | None = None, call_id: str | None = None) -> Iterator[None]:
    """Lines logged inside the block (this task and the tasks it starts) name this conversation/call."""
    tokens = [(_conversation, _conversation.set(conversation_id)) if conversation_id else None,
              (_call, _call.set(call_id)) if call_id else None]
    try:
        yield
    finally:
        for variable, token in reversed([pair for pair in tokens if pair]):
            variable.reset(token)


class JsonLogFormatter(logging.Formatter):
    """One JSON object a line: time (UTC), level, service, logger, message, conversation, call, exception."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "service": self.service, "logger": record.name,
            # Masked once more as a whole: an argument that was not a string (an exception, a
            # dict) has become text only now.
            "message": mask_log_text(record.getMessage()),
        }
        conversation = getattr(record, "conversation_id", None) or _conversation.get()
        if conversation:
            entry["conversation"] = session_ref(str(conversation))
        call = getattr(record, "call_id", None) or _call.get()
        if call:
            entry["call"] = str(call)
        if record.exc_info:
            entry["exception"] = mask_log_text(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def log_format(env: Mapping[str, str] = os.environ) -> str:
    chosen = env.get(LOG_FORMAT_ENV, "").strip().lower() or "text"
    if chosen not in LOG_FORMATS:
        raise LogFormatError(f"{LOG_FORMAT_ENV} must be one of {', '.join(LOG_FORMATS)}, got {chosen!r}")
    return chosen


def configure_logging(service: str, env: Mapping[str, str] = os.environ, level: int = logging.INFO) -> bool:
    """The root logger writes to stderr in the chosen format, masked; True: JSON. Frameworks'
    loggers should propagate to it (uvicorn: `log_config=None`)."""
    as_json = log_format(env) == "json"
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter(service) if as_json else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    install_log_masking()
    return as_json
