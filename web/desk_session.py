"""The agent desk's login: credentials from the environment, a signed, expiring session cookie."""

from __future__ import annotations

import hashlib
import hmac
import time

COOKIE_NAME = "desk_session"
SESSION_SECONDS = 8 * 3600  # one shift


def credentials_match(given_user: str, given_password: str, user: str, password: str) -> bool:
    # Both compared in constant time so a wrong user name takes as long as a wrong password.
    user_ok = hmac.compare_digest(given_user.encode(), user.encode())
    password_ok = hmac.compare_digest(given_password.encode(), password.encode())
    return user_ok and password_ok


def _signature(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def issue(secret: str, agent: str, now: float | None = None) -> str:
    expires = int((now or time.time()) + SESSION_SECONDS)
    payload = f"{agent}|{expires}"
    return f"{payload}|{_signature(secret, payload)}"


def agent_of(secret: str, cookie: str | None, now: float | None = None) -> str | None:
    """The agent a valid, unexpired cookie names; None for anything else."""
    if not cookie or cookie.count("|") != 2:
        return None
    agent, expires, signature = cookie.split("|")
    if not hmac.compare_digest(signature, _signature(secret, f"{agent}|{expires}")):
        return None
    if not expires.isdigit() or int(expires) < (now or time.time()):
        return None
    return agent
