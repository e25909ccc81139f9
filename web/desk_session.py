"""The agent desk's sessions, kept on the server (accounts: web/accounts.py).

The cookie names a random session id, signed with WEB_SESSION_SECRET so a cookie this server
never issued is refused before the store is consulted. The store is what makes logout final:
a session that was logged out, replaced at the next login, or expired is gone, so replaying its
cookie gets nothing. Sessions live in this process; a restart logs every agent out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from web.accounts import Agent
from web.throttle import Clock

COOKIE_NAME = "desk_session"
SESSION_SECONDS = 8 * 3600  # one shift
MAX_SESSIONS = 1_000  # far beyond a call centre's desks; only a correct login adds one


@dataclass(frozen=True)
class _Session:
    agent: Agent
    expires_at: float


class DeskSessions:
    def __init__(self, secret: str, clock: Clock) -> None:
        self.secret = secret
        self.clock = clock
        self._live: dict[str, _Session] = {}

    def _signature(self, session_id: str) -> str:
        return hmac.new(self.secret.encode(), session_id.encode(), hashlib.sha256).hexdigest()

    def _session_id(self, cookie: str | None) -> str | None:
        """The id an authentic cookie carries (live or not); None for anything else."""
        if not cookie or cookie.count(".") != 1:
            return None
        session_id, signature = cookie.split(".")
        return session_id if hmac.compare_digest(signature, self._signature(session_id)) else None

    def start(self, agent: Agent) -> str:
        """A new session for `agent`; the cookie value that names it."""
        now = self.clock()
        self._live = {key: live for key, live in self._live.items() if live.expires_at > now}
        while len(self._live) >= MAX_SESSIONS:
            del self._live[next(iter(self._live))]  # the oldest
        session_id = secrets.token_urlsafe(32)
        self._live[session_id] = _Session(agent, now + SESSION_SECONDS)
        return f"{session_id}.{self._signature(session_id)}"

    def agent_of(self, cookie: str | None) -> Agent | None:
        """The agent a live, unexpired session's cookie names; None for anything else."""
        session_id = self._session_id(cookie)
        live = self._live.get(session_id) if session_id else None
        if live is None or live.expires_at <= self.clock():
            return None
        return live.agent

    def end(self, cookie: str | None) -> None:
        """Logout (or rotation at login): the session is gone for good, whoever holds its cookie."""
        session_id = self._session_id(cookie)
        if session_id:
            self._live.pop(session_id, None)
