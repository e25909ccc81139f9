"""The desk's references to conversations: opaque to the browser, kept by no one on the server.

A conversation id (a chat's session id above all) never reaches the browser. The desk names a
conversation by its id sealed with AES-SIV under a key derived from the desk's session secret
(WEB_SESSION_SECRET): the same conversation always gets the same reference (the live board, the
list of work and a hand-over's quality view agree), a reference cannot be read or made without
the key, and any web process holding the secret opens one — after a restart too, with no table
of references in memory to lose or to share between processes.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "Q-"
# The reference of a conversation id up to 255 characters (the quality stream's column): the
# 16-byte synthetic IV and the id, in unpadded base64url.
PATTERN = r"^Q-[A-Za-z0-9_-]{22,362}$"
_CONTEXT = [b"desk conversation reference"]  # associated data: a token sealed for another use does not open


class ConversationRefs:
    def __init__(self, secret: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=64, salt=None,
                   info=b"web desk conversation references").derive(secret.encode())
        self._siv = AESSIV(key)

    def ref(self, conversation_id: str) -> str:
        sealed = self._siv.encrypt(conversation_id.encode(), _CONTEXT)
        return PREFIX + base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def conversation_of(self, ref: str) -> str | None:
        """The conversation a reference names; None for one this desk did not make (or mangled)."""
        if not ref.startswith(PREFIX):
            return None
        token = ref[len(PREFIX):]
        try:
            sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            return self._siv.decrypt(sealed, _CONTEXT).decode()
        except (InvalidTag, binascii.Error, ValueError):
            return None
