"""The events of the inspection stream: what Rasa's broker and the phone gateway publish, as
stored. Nothing in them identifies a person in clear: texts are masked, one-time codes and ID
digits redacted, and of Rasa's slots only those the rules read keep a value (the verified
customer as a digest)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

from flowspec.model import RIGHT_PARTY

RASA = "rasa"
CALL = "call"
DIALLER = "dialler"  # outbound/dialer.py: dial_placed, dial_result, dial_skipped
# Slots whose values the rules and figures read; every other slot is kept by name only.
KEPT_SLOTS = frozenset({"requested_slot", "verified_level", "channel", "priority_tier", RIGHT_PARTY})
# The customer the risk API verified (the engine's slot), kept as a keyed digest: enough to see the
# same customer come back (first-contact resolution); without the key it cannot be matched to a
# customer id, even by trying every id.
CUSTOMER_SLOT = "customer_id"
HANDOFF_FIELDS = ("flow", "reason", "priority", "channel", "verified_level", "live")


@dataclass(frozen=True)
class StreamEvent:
    conversation_id: str
    source: str  # RASA, CALL or DIALLER
    kind: str  # Rasa's event name (user, bot, action, slot…) or a call event (see voice/call_events.py)
    at: float  # seconds since the epoch
    data: dict[str, Any] = field(default_factory=dict)
    id: int = 0  # position in the store (the consumers' cursor); 0 until stored


def from_rasa(body: dict[str, Any], customer_key: bytes) -> StreamEvent:
    """A protected Rasa event (bot/redaction.py `protect`) as the stream keeps it: the fields the
    rules and figures read, nothing else (no entities, no metadata beyond the input source)."""
    kind = str(body.get("event") or "?")
    data: dict[str, Any] = {}
    if kind == "user":
        intent = (body.get("parse_data") or {}).get("intent") or {}
        metadata = body.get("metadata") or {}
        data = {"text": body.get("text") or "", "intent": intent.get("name"), "confidence": intent.get("confidence"),
                "input": metadata.get("input"), "channel": metadata.get("channel") or body.get("input_channel")}
    elif kind == "bot":
        custom = (body.get("data") or {}).get("custom") or {}
        data = {"text": body.get("text") or ""}
        if custom.get("outcome"):
            data |= {"flow": custom.get("flow"), "outcome": custom["outcome"]}
        if isinstance(custom.get("knowledge"), str):
            data["knowledge"] = custom["knowledge"]  # the knowledge-base entry the answer came from
        if isinstance(custom.get("knowledge_nearest"), str):
            data["knowledge_nearest"] = custom["knowledge_nearest"]  # unanswered: the entry it was closest to
        if isinstance(custom.get("handoff"), dict):
            data["handoff"] = {key: custom["handoff"].get(key) for key in HANDOFF_FIELDS}
        if isinstance(custom.get("live_agent"), dict):
            data["agent"] = {"state": custom["live_agent"].get("state"), "text": custom["live_agent"].get("text") or ""}
    elif kind == "action":
        data = {"name": body.get("name"), "policy": body.get("policy"), "confidence": body.get("confidence")}
    elif kind == "slot":
        data = {"name": body.get("name")}
        if body.get("name") in KEPT_SLOTS:
            data["value"] = body.get("value")
        elif body.get("name") == CUSTOMER_SLOT and body.get("value"):
            data["value"] = customer_ref(str(body["value"]), customer_key)
    return StreamEvent(str(body.get("sender_id") or "?"), RASA, kind, float(body.get("timestamp") or 0.0), data)


def customer_key(secret: str) -> bytes:
    """The digest's key, derived from a deployment secret (TRACKER_STORE_KEY) for this use only."""
    return hmac.new(secret.encode(), b"quality stream customer digest", hashlib.sha256).digest()


def customer_ref(customer_id: str, key: bytes) -> str:
    return "c-" + hmac.new(key, customer_id.encode(), hashlib.sha256).hexdigest()[:16]
