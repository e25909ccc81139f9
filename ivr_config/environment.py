"""The one settings layer: every service reads its environment through these readers, and every
bad setting is a SettingsError whose message names the variable and what it must be (a service's
`__main__` prints it and exits), never Python's bare `invalid literal for int()`. Secrets have
their own reader (trust/env_secrets.py), whose SecretError is a SettingsError too."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

_YES = {"1", "true", "yes", "on"}
_NO = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A setting of the environment is missing or not what it must be; the message names it."""


def text(env: Mapping[str, str], name: str, default: str = "") -> str:
    """The value without surrounding blanks; unset or blank: the default."""
    return str(env.get(name, "")).strip() or default


def optional_text(env: Mapping[str, str], name: str) -> str | None:
    return text(env, name) or None


def words(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A list separated by blanks (origins, URLs)."""
    return tuple(str(env.get(name, "")).split())


def path(env: Mapping[str, str], name: str, default: Path | str) -> Path:
    return Path(text(env, name) or default)


def flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = text(env, name).lower()
    if not raw:
        return default
    if raw not in _YES | _NO:
        raise SettingsError(f"{name} must be 1 or 0 (true/false, yes/no), got {raw!r}")
    return raw in _YES


def whole_number(env: Mapping[str, str], name: str, default: int, minimum: int = 0,
                 maximum: int | None = None) -> int:
    raw = text(env, name, str(default))
    if not raw.isdigit() or int(raw) < minimum or (maximum is not None and int(raw) > maximum):
        bounds = f"{minimum}-{maximum}" if maximum is not None else f"of at least {minimum}"
        raise SettingsError(f"{name} must be a whole number {bounds}, got {raw!r}")
    return int(raw)


def port_number(env: Mapping[str, str], name: str, default: int) -> int:
    raw = text(env, name, str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise SettingsError(f"{name} must be a port number (1-65535), got {raw!r}")
    return int(raw)
