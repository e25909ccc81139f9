"""The action server's knowledge base over time (bot/actions/knowledge_answers.py, a fake clock): one
started before any index was built answers once one is, a minute later; an edit published and
indexed as the desk does (knowledge/edits.py) is served at the next look, without a restart."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from bot.actions import knowledge_answers
from flowspec.model import FLOWS_DIR
from knowledge.edits import EntryEdit, build_index, entry_digest, find_entry, publish
from knowledge.model import ENTRIES_DIR

QUESTION = "信用卡能用吗"
NEW_VOICE = "只能绑定本人名下的储蓄卡，信用卡不能绑定，也不能用信用卡还款。"


class FakeClock:
    now = 1_000.0

    def __call__(self) -> float:
        return self.now


def voice_answer() -> str | None:
    answer = asyncio.run(knowledge_answers.consult_knowledge(QUESTION, "voice")).answer
    return answer.text if answer else None


def test_an_action_server_started_before_the_index_answers_once_it_is_built_and_serves_edits(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    entries, index = tmp_path / "entries", tmp_path / "index"
    entries.mkdir()
    for category in ("card", "anti_fraud"):
        shutil.copy(ENTRIES_DIR / f"{category}.yaml", entries)
    monkeypatch.setenv("KNOWLEDGE_ENTRIES_DIR", str(entries))
    monkeypatch.setenv("KNOWLEDGE_INDEX_DIR", str(index))
    clock = FakeClock()
    monkeypatch.setattr(knowledge_answers, "clock", clock)
    monkeypatch.setitem(knowledge_answers._state, "retriever", None)
    monkeypatch.setitem(knowledge_answers._state, "looked_at", float("-inf"))
    shipped = find_entry(entries, "card.credit_card")
    assert shipped is not None

    assert voice_answer() is None  # no index yet: no answer, and no building during a turn
    assert not list(index.glob("index-*.npz"))
    build_index(entries, index)  # `make train`, or the volume being filled
    clock.now += 30
    assert voice_answer() is None  # not looked at again within the minute
    clock.now += knowledge_answers.REFRESH_SECONDS
    assert voice_answer() == shipped.voice

    edit = EntryEdit(shipped.id, shipped.question, shipped.paraphrases, shipped.chat, NEW_VOICE)
    publish(entries, FLOWS_DIR, edit, entry_digest(shipped), index)
    build_index(entries, index)  # what the desk does after publishing
    assert voice_answer() == shipped.voice  # within the minute: the index in memory
    clock.now += knowledge_answers.REFRESH_SECONDS
    assert voice_answer() == NEW_VOICE
