"""The action server's surroundings: its risk API down (a real loopback port with nothing
listening), its knowledge base index there or not."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.actions import conversation


@pytest.fixture
def risk_api_down(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv("RISK_API_URL", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("RISK_API_TOKEN", "unused-engine-token")
    conversation.risk_client.cache_clear()
    yield
    conversation.risk_client.cache_clear()


def _fresh_knowledge_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The action server's retriever as at its start: made at the next question."""
    from bot.actions import knowledge_answers

    for key, value in (("retriever", None), ("looked_at", float("-inf"))):
        monkeypatch.setitem(knowledge_answers._state, key, value)


@pytest.fixture
def knowledge_base(monkeypatch: pytest.MonkeyPatch) -> None:
    """The knowledge base's index as `make train` built it (var/knowledge)."""
    monkeypatch.delenv("KNOWLEDGE_INDEX_DIR", raising=False)
    _fresh_knowledge_answers(monkeypatch)


@pytest.fixture
def no_knowledge_base(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No index on disk: the action server answers without the knowledge base."""
    monkeypatch.setenv("KNOWLEDGE_INDEX_DIR", str(tmp_path))
    _fresh_knowledge_answers(monkeypatch)
