"""How logs name a conversation without giving away its id (the id reaches the conversation)."""

from __future__ import annotations

import hashlib


def session_ref(session_id: str | None) -> str:
    """A short, stable digest: lines of one conversation can be joined, the id not recovered."""
    if not session_id:
        return "-"
    return "s-" + hashlib.sha256(session_id.encode()).hexdigest()[:12]
