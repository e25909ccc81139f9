"""Masking of phone, card and ID numbers for responses, audit entries and log lines."""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any


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


# Digit runs that look like an ID number (17 digits + digit/X), a card (15-19) or a mobile (11).
_NUMBER_RUN = re.compile(r"(?<![0-9])(?:[0-9]{17}[0-9Xx]|[0-9]{15,19}|1[0-9]{10})(?![0-9Xx])")


def _mask_run(match: re.Match[str]) -> str:
    run = match.group(0)
    if len(run) == 18:
        return mask_id_number(run)
    if len(run) == 11:
        return mask_phone(run)
    return mask_card(run)


def mask_text(text: str) -> str:
    return _NUMBER_RUN.sub(_mask_run, text)


class MaskingLogFilter(logging.Filter):
    """Masks numbers in every record; keeps args a tuple (uvicorn's access formatter unpacks it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask_text(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(mask_text(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: mask_text(v) if isinstance(v, str) else v
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
