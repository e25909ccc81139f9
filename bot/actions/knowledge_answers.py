"""Answers from the knowledge base (knowledge/) for a message no flow fits. One retriever per
action-server process, made at the first such message from the index `make train` built (never
built during a turn: without an index on disk the bot does without it, and looks again a minute
later); it looks at the entries again at most once a minute, so an edit the desk approved and
indexed (web/knowledge_desk.py) is served without a restart."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from knowledge.model import KnowledgeError
from knowledge.retrieval import Consulted, Retriever

log = logging.getLogger(__name__)
REFRESH_SECONDS = 60.0
# What the NLU could not place is often vague ("那个账户的事") or not ours: the knowledge base's own
# threshold (0.83, calibrated on well-formed questions) answers 17 % of the validation split's
# out-of-KB questions; at 0.86 it answers 3 % of them, 85 % of in-KB ones right, 5.5 % wrong
# (tests/knowledge/held_out.yaml, validation split). Below it, an answer is not offered.
DIRECT_ANSWER_CONFIDENCE = 0.86
_lock = threading.Lock()
# The retriever once made, and when the entries were last looked at. An action server that found
# no index (started before one was built, or on a volume still being filled) looks again a minute
# later instead of doing without the knowledge base until a restart.
_state: dict[str, Any] = {"retriever": None, "looked_at": float("-inf")}
clock: Callable[[], float] = time.monotonic


def _retriever() -> Retriever | None:
    with _lock:
        retriever: Retriever | None = _state["retriever"]
        now = clock()
        if now - _state["looked_at"] < REFRESH_SECONDS:
            return retriever
        _state["looked_at"] = now
        try:
            if retriever is None:
                retriever = _state["retriever"] = Retriever(build=False)
            else:
                retriever.refresh()
        except (KnowledgeError, OSError) as error:  # none yet, or the last good index goes on answering
            log.warning("knowledge base %s: %s", "not refreshed" if retriever else "not loaded", error)
        return retriever


def _consult(question: str, channel: str) -> Consulted:
    retriever = _retriever()
    return retriever.consult(question, channel) if retriever else Consulted(None, None)


async def consult_knowledge(question: str, channel: str) -> Consulted:
    """The entry's answer for `question` on `channel` (chat, voice, outbound) if the knowledge base
    has one, and the nearest entry either way: off the event loop (the embedding model's first
    load, and ~20 ms of CPU per question)."""
    return await asyncio.to_thread(_consult, question, channel)
