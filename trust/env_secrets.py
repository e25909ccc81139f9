"""Secrets come from the environment; development values are refused outside development.

A development value starts with `dev-only-` (the Makefile's defaults). They are accepted only
when IVR_ENV=development, so a deployment that forgot to set a secret fails at start instead
of running with a password published in this repository.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ivr_config.environment import SettingsError

DEV_PREFIX = "dev-only-"
MIN_SECRET_LENGTH = 16


class SecretError(SettingsError):
    """A secret is missing, too short, or a development value outside development mode."""


def development_mode(env: Mapping[str, str] = os.environ) -> bool:
    return env.get("IVR_ENV", "").strip().lower() == "development"


def check_secret(name: str, value: str, env: Mapping[str, str] = os.environ) -> str:
    value = value.strip()
    if not value:
        raise SecretError(f"{name} is not set: the service has no default for it")
    if value.startswith(DEV_PREFIX) and not development_mode(env):
        raise SecretError(f"{name} is a development value ({DEV_PREFIX}…): set a real secret, "
                          "or IVR_ENV=development on a developer's machine")
    if len(value) < MIN_SECRET_LENGTH:
        raise SecretError(f"{name} is shorter than {MIN_SECRET_LENGTH} characters")
    return value


def require_secret(name: str, env: Mapping[str, str] = os.environ) -> str:
    return check_secret(name, env.get(name, ""), env)


def optional_secret(name: str, env: Mapping[str, str] = os.environ) -> str | None:
    """An optional secret (a caller role a deployment may not have): None when unset."""
    return check_secret(name, env[name], env) if env.get(name, "").strip() else None
