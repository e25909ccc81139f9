"""Chat sessions issued by the server, never chosen by the client.

The web server issues a token for a fresh random session id; Rasa's public channels accept a
message only with a valid token and use the session id inside it as the conversation's sender
id. Whoever holds the token holds the conversation, so it is a bearer credential: HTTPS in
production, kept in the browser's session storage only, never logged.

Token: `v1.<session id>.<expiry, unix seconds>.<HMAC-SHA256 of the first three parts>`,
the MAC in unpadded URL-safe base64, keyed with CHAT_SESSION_SECRET.

Buttons: Rasa reads a message that starts with "/" as an intent with entities, skipping the NLU
(`/inform{"amount": 1}`). A public chat client may send only the payloads of buttons the bot
offered it: the channels send each intent payload with a MAC binding it to the session
(`<payload>#<MAC>`, `offered_choice`), and `received_text` passes a message on as the payload
only when its MAC is right; any other text starting with "/" loses its slashes and is read as words.
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
INTENT_PREFIX = "/"  # Rasa's INTENT_MESSAGE_PREFIX
CHOICE_SEPARATOR = "#"
CHOICE_MAC_CHARS = 22  # 132 bits of the HMAC


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


def offered_choice(secret: str, session_id: str, payload: str) -> str:
    """A button's payload as a public chat sends it to this session's client: an intent ("/…")
    with its MAC; words (a payload such as 5分) as they are, read as the customer's own."""
    if not payload.strip().startswith(INTENT_PREFIX):
        return payload
    mac = _mac(secret, f"choice.{session_id}.{payload}")[:CHOICE_MAC_CHARS]
    return f"{payload}{CHOICE_SEPARATOR}{mac}"


def received_text(secret: str, session_id: str, text: str) -> str:
    """What a public chat passes on to Rasa for a client's message in this session: the payload of
    a button offered to it (`offered_choice`); any other text starting with "/" (Rasa strips
    the text first) without its slashes, for the NLU to read as words; other text as it is."""
    stripped = text.strip()
    if not stripped.startswith(INTENT_PREFIX):
        return text
    payload, separator, _ = stripped.rpartition(CHOICE_SEPARATOR)
    if separator and hmac.compare_digest(offered_choice(secret, session_id, payload).encode(), stripped.encode()):
        return payload
    return stripped.lstrip(INTENT_PREFIX)
