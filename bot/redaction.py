"""What of a conversation's events may be kept at rest: one-time codes and ID digits never, other
texts masked (phone, card and ID numbers, stated names).

Rasa-free (flowspec and the masking only), so that both Rasa's tracker store
(bot/tracker_store.py) and the quality inspection's event stream (quality/broker.py) protect
events the same way, and the services' Python can test it.
"""

from __future__ import annotations

from typing import Any

from flowspec.model import repository_flowset
from risk_api.masking import mask_text

REDACTED = "[redacted]"
REQUESTED_SLOT = "requested_slot"
_SLOTS_CLEARED = {"restart", "reset_slots", "session_started"}


def secret_slots() -> frozenset[str]:
    """Slots whose values are used once, in the turn that gives them, and are never stored: the
    identity slots the identity flow marks `secret` (one-time codes, ID digits)."""
    return repository_flowset().secret_slot_names


def masked(value: Any) -> Any:
    """A copy with every string masked (never the event's own dicts: those are the live turn's)."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {key: masked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


def _walk(events: list[dict[str, Any]], asked: str | None,
          slots: frozenset[str]) -> tuple[set[int], str | None]:
    """Indices of the customer's messages that give one of `slots` (the answer to the question
    for one, and any message whose turn filled one), and the slot asked for after the events."""
    answers: set[int] = set()
    latest_user: int | None = None
    for index, event in enumerate(events):
        kind = event.get("event")
        if kind == "user":
            latest_user = index
            if asked in slots:
                answers.add(index)
        elif kind == "slot" and event.get("name") == REQUESTED_SLOT:
            asked = event.get("value")
        elif kind == "slot" and event.get("name") in slots and event.get("value") is not None:
            if latest_user is not None:
                answers.add(latest_user)
        elif kind in _SLOTS_CLEARED:
            asked = None
    return answers, asked


def asked_after(events: list[dict[str, Any]], asked: str | None = None) -> str | None:
    """The slot the bot had asked for after these events, `asked` before them."""
    return _walk(events, asked, frozenset())[1]


def protect(events: list[dict[str, Any]], asked: str | None = None,
            answers_redacted: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """The events as they may be stored. `asked`: the slot asked for just before them;
    `answers_redacted`: the slots whose answers lose their text (default: the secret ones)."""
    redact, _ = _walk(events, asked, secret_slots() if answers_redacted is None else answers_redacted)
    protected = []
    for index, event in enumerate(events):
        kind = event.get("event")
        parse_data = event.get("parse_data") or {}
        if kind == "user" and index in redact:
            # What the NLU made of it stays (intent), nothing the customer said or sent with it.
            kept = {key: parse_data[key] for key in ("intent", "intent_ranking", "message_id") if key in parse_data}
            event = {**event, "text": REDACTED, "metadata": {},
                     "parse_data": {**kept, "text": REDACTED, "entities": [], "metadata": {}}}
        elif kind == "user":
            event = {**event, "text": masked(event.get("text")), "metadata": masked(event.get("metadata")),
                     "parse_data": {key: masked(value) if key in ("text", "entities", "metadata") else value
                                    for key, value in parse_data.items()}}
        elif kind == "bot":
            event = {**event, "text": masked(event.get("text")), "data": masked(event.get("data")),
                     "metadata": masked(event.get("metadata"))}
        elif kind == "slot" and event.get("name") in secret_slots() and event.get("value") is not None:
            event = {**event, "value": REDACTED}
        protected.append(event)
    return protected
