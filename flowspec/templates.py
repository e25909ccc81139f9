"""`{name}` templates in prompts and responses: placeholder discovery and rendering.

Values print the way a Chinese agent would say them: amounts without trailing zeros, ISO dates
as 2026年12月5日, booleans as 是/否. Lists render through the flow's `item_formats` (voice reads
only the first few items). A placeholder with no value is an error, never a blank.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*)\}")
ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})[^ ]*)?$")
VOICE_LIST_ITEMS = 3


class TemplateError(KeyError):
    """A placeholder has no value in the context."""

    def __str__(self) -> str:
        return str(self.args[0])


def placeholders(template: str) -> list[str]:
    return PLACEHOLDER.findall(template)


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    if isinstance(value, str):
        match = ISO_DATE.match(value)
        if match:
            year, month, day = (int(part) for part in match.groups()[:3])
            time = f" {match.group(4)}:{match.group(5)}" if match.group(4) else ""
            return f"{year}年{month}月{day}日{time}"
    return str(value)


def lookup(context: Mapping[str, Any], dotted: str) -> Any:
    value: Any = context
    for part in dotted.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, Mapping) and value.get(part) is not None:
            value = value[part]
        else:
            raise TemplateError(f"no value for {{{dotted}}}")
    return value


def render(
    template: str,
    context: Mapping[str, Any],
    item_formats: Mapping[str, str] | None = None,
    voice: bool = False,
) -> str:
    def replace(match: re.Match[str]) -> str:
        dotted = match.group(1)
        value = lookup(context, dotted)
        if isinstance(value, list):
            return _render_list(dotted, value, item_formats or {}, voice)
        return format_value(value)

    return PLACEHOLDER.sub(replace, template)


def _render_list(dotted: str, items: list[Any], formats: Mapping[str, str], voice: bool) -> str:
    field = dotted.rsplit(".", 1)[-1]
    if field not in formats:
        raise TemplateError(f"{{{dotted}}} is a list: add item_formats.{field} to the flow")
    shown = items[:VOICE_LIST_ITEMS] if voice else items
    text = "；".join(render(formats[field], item) for item in shown)
    return text or "无"
