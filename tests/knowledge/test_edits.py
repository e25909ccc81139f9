"""Publishing an approved edit into the entries files (knowledge/edits.py) and keeping proposals
(knowledge/proposals.py): only the edited entry's lines change, nothing the linter refuses is
written, an edit made from an entry that changed since is refused; a proposal is decided once, by
someone other than its author, on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from flowspec.model import FLOWS_DIR
from knowledge.edits import (
    EditConflict,
    EditRefused,
    EntryEdit,
    entry_digest,
    find_entry,
    prepare,
    publish,
)
from knowledge.model import ENTRIES_DIR, KnowledgeError, load_category
from knowledge.proposals import ProposalError, ProposalStore
from tests.outbound.helpers import database_url

NEW_VOICE = "只能绑定本人名下的储蓄卡，信用卡不能绑定，也不能用信用卡还款。"


@pytest.fixture
def entries(tmp_path: Path) -> Path:
    folder = tmp_path / "entries"
    shutil.copytree(ENTRIES_DIR, folder)
    return folder


def reworded(entries: Path) -> tuple[EntryEdit, str]:
    entry = find_entry(entries, "card.credit_card")
    assert entry is not None
    edit = EntryEdit(entry.id, entry.question, (*entry.paraphrases, "拿信用卡来绑定行吗"), entry.chat, NEW_VOICE)
    return edit, str(entry_digest(entry))


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    return [(old, new) for old, new in zip(before.splitlines(), after.splitlines(), strict=True) if old != new]


def test_an_edit_rewrites_only_its_entrys_lines(entries: Path, tmp_path: Path) -> None:
    before = (entries / "card.yaml").read_text(encoding="utf-8")
    edit, base = reworded(entries)
    published = publish(entries, FLOWS_DIR, edit, base, tmp_path / "lock")
    after = (entries / "card.yaml").read_text(encoding="utf-8")
    assert changed_lines(before, after) == [
        ("    paraphrases: [信用卡能用吗, 可以用信用卡还款吗, 放款能打到信用卡吗]",
         "    paraphrases: [信用卡能用吗, 可以用信用卡还款吗, 放款能打到信用卡吗, 拿信用卡来绑定行吗]"),
        ("    voice: 放款和还款需要用本人名下的储蓄卡，不支持绑定信用卡，也不能用信用卡还款。",
         f"    voice: {NEW_VOICE}")]
    assert published.entry.voice == NEW_VOICE and published.digest == entry_digest(published.entry)
    assert after.startswith("# ")  # the file's comment is kept


def test_a_new_entry_goes_after_its_categorys_last_and_text_yaml_would_misread_is_quoted(
        entries: Path, tmp_path: Path) -> None:
    before = (entries / "card.yaml").read_text(encoding="utf-8")
    phrasings = ("#新绑的卡什么时候能用", "刚绑的卡: 能马上还款吗", "换了新卡多久生效")
    edit = EntryEdit("card.new_card_when", "yes", phrasings, "绑定成功后即可使用，放款和还款都可以用新卡。",
                     "绑定成功后马上就能用。")
    publish(entries, FLOWS_DIR, edit, None, tmp_path / "lock")
    after = (entries / "card.yaml").read_text(encoding="utf-8")
    assert after.startswith(before)
    added = load_category(entries / "card.yaml").entries[-1]
    assert (added.id, added.question, added.paraphrases, added.status) == (
        "card.new_card_when", "yes", edit.paraphrases, "approved")
    with pytest.raises(EditConflict, match="was added since"):  # the same new entry proposed twice
        publish(entries, FLOWS_DIR, edit, None, tmp_path / "lock")


def test_retiring_an_entry_that_points_to_a_flow_keeps_its_flow(entries: Path, tmp_path: Path) -> None:
    entry = find_entry(entries, "account.real_name_flow")
    assert entry is not None and entry.flow == "real_name_authentication"
    publish(entries, FLOWS_DIR, EntryEdit(entry.id, entry.question, entry.paraphrases, retire=True),
            entry_digest(entry), tmp_path / "lock")
    retired = find_entry(entries, entry.id)
    assert retired is not None and (retired.status, retired.flow, retired.chat) == ("retired", entry.flow, None)
    with pytest.raises(EditRefused, match="points to the flow"):
        prepare(entries, FLOWS_DIR, EntryEdit(entry.id, entry.question, entry.paraphrases, "一段答复。", "一段答复。"),
                entry_digest(retired))


@pytest.mark.parametrize(("change", "problem"), [
    ({"voice": "请拨打400 820 8820。"}, "has digits"),
    ({"paraphrases": ("我的手机号138 0013 8000能用吗", "a信用卡", "b信用卡")}, "seven digits or more"),
    ({"paraphrases": ("请问银行卡绑不上吗？", "用信用卡可以吗", "拿信用卡绑定")}, "same phrasing as one of entry"),
    ({"voice": "很长" * 61}, "over 120"),
])
def test_an_edit_the_linter_refuses_is_not_written(entries: Path, tmp_path: Path, change: dict[str, object],
                                                   problem: str) -> None:
    edit, base = reworded(entries)
    fields = {**edit.as_dict(), **change}
    before = (entries / "card.yaml").read_bytes()
    with pytest.raises(EditRefused) as refused:
        publish(entries, FLOWS_DIR, EntryEdit.from_dict(fields), base, tmp_path / "lock")
    assert any(problem in line and line.startswith("card.yaml: ") for line in refused.value.problems), refused.value
    assert (entries / "card.yaml").read_bytes() == before


def test_an_edit_made_from_an_older_entry_is_refused(entries: Path, tmp_path: Path) -> None:
    edit, base = reworded(entries)
    publish(entries, FLOWS_DIR, edit, base, tmp_path / "lock")
    other = EntryEdit(edit.entry_id, edit.question, edit.paraphrases, edit.chat, "信用卡不能绑定。")
    with pytest.raises(EditConflict, match="has changed since"):
        publish(entries, FLOWS_DIR, other, base, tmp_path / "lock")
    with pytest.raises(EditRefused, match="no category 'loans'"):
        prepare(entries, FLOWS_DIR, EntryEdit("loans.what", "什么是贷款", ("贷款是啥", "啥叫贷款", "贷款什么意思"),
                                              "一段答复。", "一段答复。"), None)
    with pytest.raises(EditRefused, match="no entry 'card.nothing' to retire"):
        prepare(entries, FLOWS_DIR, EntryEdit("card.nothing", "无", ("无一", "无二", "无三"), retire=True), None)


def test_a_file_not_written_in_the_entries_style_is_not_published_into(entries: Path, tmp_path: Path) -> None:
    path = entries / "card.yaml"  # the same entries as yaml.safe_dump writes them: "- id:" at the margin
    path.write_text(yaml.safe_dump(yaml.safe_load(path.read_text(encoding="utf-8")), allow_unicode=True),
                    encoding="utf-8")
    edit, base = reworded(entries)
    before = path.read_bytes()
    with pytest.raises(KnowledgeError):
        publish(entries, FLOWS_DIR, edit, base, tmp_path / "lock")
    assert path.read_bytes() == before


def test_two_publishers_at_once_publish_one_edit(entries: Path, tmp_path: Path) -> None:
    edit, base = reworded(entries)
    outcomes: list[str] = []

    def one() -> None:
        try:
            publish(entries, FLOWS_DIR, edit, base, tmp_path / "lock")
            outcomes.append("published")
        except EditConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["conflict"] * 3 + ["published"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProposalStore]:
    with database_url(request.param, tmp_path, "knowledge") as url:
        proposals = ProposalStore(url, clock=iter(range(1_000, 2_000)).__next__)
        yield proposals
        proposals.close()


def test_a_proposal_is_decided_once_by_someone_else(store: ProposalStore, entries: Path) -> None:
    edit, base = reworded(entries)
    before = find_entry(entries, edit.entry_id)
    first = store.propose(edit, before, "客户听不懂原来的说法", "agent")
    second = store.propose(edit, before, "再提一次", "agent2")
    assert (first.status, first.edit, first.base_digest, first.proposed_at) == ("pending", edit, base, 1000)
    assert first.before is not None and first.before["voice"] != NEW_VOICE and first.before["question"] == edit.question
    assert store.listed("pending") == ([first, second], 2)
    assert store.listed("pending", proposed_by="agent2") == ([second], 1)
    assert store.listed("pending", limit=1, offset=1) == ([second], 2)
    with pytest.raises(ProposalError) as own:
        store.decide(first.id, True, "agent", "")
    assert own.value.code == "own_proposal"

    published: list[str] = []

    def refuse(_: object) -> None:
        raise EditConflict("card.credit_card has changed since")

    with pytest.raises(EditConflict):  # publishing failed: still pending
        store.decide(first.id, True, "reviewer", "", refuse)
    assert store.get(first.id) == first
    decided = store.decide(first.id, True, "reviewer", "好", lambda proposal: published.append(proposal.id))
    assert (decided.status, decided.decided_by, decided.note, published) == ("approved", "reviewer", "好", [first.id])
    with pytest.raises(ProposalError) as again:
        store.decide(first.id, False, "supervisor", "")
    assert again.value.code == "decided"
    rejected = store.decide(second.id, False, "reviewer", "重复")
    assert rejected.status == "rejected" and store.listed("pending") == ([], 0)
    with pytest.raises(ProposalError) as missing:
        store.decide("K-00000000000000000000", False, "reviewer", "")
    assert missing.value.code == "not_found"


def test_a_name_or_code_written_in_a_reason_or_a_note_is_stored_masked(store: ProposalStore, entries: Path) -> None:
    edit, _ = reworded(entries)
    proposal = store.propose(edit, find_entry(entries, edit.entry_id), "客户说我叫杨测戊，听不懂这句", "agent")
    assert proposal.reason == "客户说我叫杨**，听不懂这句"
    decided = store.decide(proposal.id, False, "reviewer", "他报了验证码 4821，别写进来")
    assert decided.note == "他报了验证码 ****，别写进来"
    with store.engine.connect() as connection:
        stored = " ".join(str(value) for row in connection.exec_driver_sql("SELECT * FROM knowledge_proposals")
                          for value in row)
    assert "杨测戊" not in stored and "4821" not in stored


@pytest.mark.postgres
def test_on_postgresql_a_decision_on_another_desk_waits_for_the_one_being_published(
        entries: Path, tmp_path: Path) -> None:
    """Two desks (stores of their own, as on two hosts) share the database; one approves and is
    still publishing when the other rejects: the rejection waits for the approval, then finds the
    proposal decided. Without the shared lock it would be recorded over an edit already published."""
    edit, _ = reworded(entries)
    with database_url("postgres", tmp_path, "knowledge") as url:
        here, there = ProposalStore(url), ProposalStore(url)
        proposal = here.propose(edit, find_entry(entries, edit.entry_id), "客户听不懂", "agent")
        publishing, published = threading.Event(), threading.Event()

        def slow_publish(_: object) -> None:
            publishing.set()
            assert published.wait(60)

        approval = threading.Thread(target=there.decide, args=(proposal.id, True, "reviewer", "", slow_publish))
        approval.start()
        assert publishing.wait(60)
        rejected: list[str] = []

        def reject() -> None:
            try:
                here.decide(proposal.id, False, "supervisor", "")
                rejected.append("rejected")
            except ProposalError as error:
                rejected.append(error.code)

        rejection = threading.Thread(target=reject)
        rejection.start()
        waiting = sa.text("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                          "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()")
        with here.engine.connect() as connection:
            for _ in range(3000):  # until the rejection waits on the lock, or (without one) has finished
                if not rejection.is_alive() or connection.execute(waiting).scalar_one():
                    break
                connection.rollback()
                time.sleep(0.02)
        published.set()
        approval.join(60)
        rejection.join(60)
        assert rejected == ["decided"]
        decided = here.get(proposal.id)
        assert decided is not None and (decided.status, decided.decided_by) == ("approved", "reviewer")
        here.close()
        there.close()
