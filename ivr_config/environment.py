"""Numbers from the environment, read one way by every service: a value that is not one gives an
error naming the variable, never Python's bare `invalid literal for int()`."""

from __future__ import annotations

from collections.abc import Mapping


class EnvironmentValueError(ValueError):
    """A setting of the environment is not what it must be; the message names it."""


def whole_number(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = str(env.get(name, "")).strip() or str(default)
    if not raw.isdigit() or int(raw) < minimum:
        raise EnvironmentValueError(f"{name} must be a whole number of at least {minimum}, got {raw!r}")
    return int(raw)


def port_number(env: Mapping[str, str], name: str, default: int) -> int:
    raw = str(env.get(name, "")).strip() or str(default)
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise EnvironmentValueError(f"{name} must be a port number (1-65535), got {raw!r}")
    return int(raw)
