"""The action server's metrics (served on its `/metrics` by rasa_sdk_plugins): how flow turns end,
which knowledge-base entries answered (and which came nearest the questions it did not answer),
and how sure the NLU was of the messages that ran the flows.
Labels are flow ids, outcomes and entry ids from the flow and knowledge files and the channel,
never a sender id or a message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Histogram

# The channels action_session_start takes from a trusted channel's metadata; anything else is one label.
CHANNELS = frozenset({"chat", "voice", "outbound"})
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)

FLOW_OUTCOMES = Counter("ivr_bot_flow_outcomes_total", "Flow turns that ended, by flow, outcome and channel",
                        ["flow", "outcome", "channel"])
KNOWLEDGE_ANSWERS = Counter("ivr_bot_knowledge_answers_total",
                            "Answers said from the knowledge base, by entry id and channel", ["entry", "channel"])
KNOWLEDGE_UNANSWERED = Counter("ivr_bot_knowledge_unanswered_total",
                               "Questions the knowledge base did not answer, by the entry nearest each and channel",
                               ["entry", "channel"])
NLU_CONFIDENCE = Histogram("ivr_bot_nlu_confidence",
                           "Intent confidence of the user messages that ran a flow action, by channel",
                           ["channel"], buckets=CONFIDENCE_BUCKETS)


def channel_label(channel: str | None) -> str:
    return channel if channel in CHANNELS else "other"


def record_flow_signal(channel: str | None, signal: Mapping[str, Any]) -> None:
    """Counts a `Turn.signal` payload that ends a flow turn (`flow` and `outcome`), says an answer
    came from the knowledge base (`knowledge`: its entry id) or that it had none (`knowledge_nearest`:
    the entry nearest the question); others pass."""
    flow, outcome, entry = signal.get("flow"), signal.get("outcome"), signal.get("knowledge")
    nearest = signal.get("knowledge_nearest")
    if isinstance(nearest, str):
        KNOWLEDGE_UNANSWERED.labels(nearest, channel_label(channel)).inc()
    if isinstance(flow, str) and isinstance(outcome, str):
        FLOW_OUTCOMES.labels(flow, outcome, channel_label(channel)).inc()
    if isinstance(entry, str):
        KNOWLEDGE_ANSWERS.labels(entry, channel_label(channel)).inc()


def record_nlu_confidence(channel: str | None, latest_message: Mapping[str, Any] | None) -> None:
    """The intent confidence of the message a flow action runs for (none: a keypad or a button)."""
    intent = (latest_message or {}).get("intent") or {}
    confidence = intent.get("confidence")
    if isinstance(confidence, (int, float)):
        NLU_CONFIDENCE.labels(channel_label(channel)).observe(float(confidence))
