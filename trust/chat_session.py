"""Chat sessions issued by the server, never chosen by the client.

The web server issues a token for a fresh random session id; Rasa's public channels accept a
message only with a valid token and use the session id inside it as the conversation's sender
id. Whoever holds the token holds the conversation, so it is a bearer credential: HTTPS in
production, kept in the browser's session storage only, never logged.

Token: `v1.<session id>.<expiry, unix seconds>.<HMAC-SHA256 of the first three parts>`,
the MAC in unpadded URL-safe base64, keyed with CHAT_SESSION_SECRET.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

VERSION = "v1"
SESSION_SECONDS = 2 * 60 * 60  # a chat longer than Rasa's 60-minute session still works
MAX_TOKEN_LENGTH = 200
_SESSION_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class ChatSession:
    session_id: str
    expires_at: int
    token: str


def _mac(secret: str, signed: str) -> str:
    digest = hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue(secret: str, now: float, lifetime_seconds: int = SESSION_SECONDS) -> ChatSession:
    session_id = secrets.token_hex(16)
    expires_at = int(now) + lifetime_seconds
    signed = f"{VERSION}.{session_id}.{expires_at}"
    return ChatSession(session_id, expires_at, f"{signed}.{_mac(secret, signed)}")


def verify(secret: str, token: object, now: float) -> str | None:
    """The session id a valid, unexpired token names; None for anything else."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        return None
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != VERSION or not _SESSION_ID.match(parts[1]) or not parts[2].isdigit():
        return None
    signed = ".".join(parts[:3])
    if not hmac.compare_digest(_mac(secret, signed), parts[3]):
        return None
    if int(parts[2]) <= now:
        return None
    return parts[1]
