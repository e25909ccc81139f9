"""The knowledge base linter: the real entries pass; each kind of mistake is named by file and field."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from knowledge.__main__ import main
from knowledge.lint import MAX_CHAT_CHARS, MAX_VOICE_CHARS, lint, voice_problems
from knowledge.model import ENTRIES_DIR, load_entries, phrasing_key

MIN_ENTRIES = 250


def test_the_real_entries_are_sound_and_cover_every_topic() -> None:
    problems = lint()
    assert problems == [], "\n".join(str(problem) for problem in problems)
    entries = load_entries()
    assert len(entries) >= MIN_ENTRIES
    assert len({entry.id for entry in entries}) == len(entries)
    categories = {entry.category for entry in entries}
    assert {"fees", "interest", "repayment", "early_repayment", "overdue", "credit_report", "app", "account",
            "card", "anti_fraud", "service", "privacy"} <= categories
    assert all(len(entry.paraphrases) >= 3 for entry in entries)
    answered = [entry for entry in entries if entry.flow is None]
    assert all(entry.chat and entry.voice for entry in answered)
    assert all(entry.chat is None and entry.voice is None for entry in entries if entry.flow)


def test_the_command_line_linter_exits_zero_on_the_real_entries(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint"]) == 0
    assert "knowledge lint: 0 problem(s)" in capsys.readouterr().out


@pytest.fixture
def entries_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "entries"
    shutil.copytree(ENTRIES_DIR, copy)
    return copy


def edit(entries: Path, category: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = entries / f"{category}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def entry(data: dict[str, Any], entry_id: str) -> dict[str, Any]:
    return next(item for item in data["entries"] if item["id"] == entry_id)


def only_problem(entries: Path) -> str:
    problems = lint(entries)
    assert len(problems) == 1, [str(problem) for problem in problems]
    return str(problems[0])


def test_a_duplicate_id_across_files_is_named(entries_copy: Path) -> None:
    def copy_fee_entry(data: dict[str, Any]) -> None:
        data["entries"].append({**entry(data, "interest.holiday"), "id": "interest.start_date",
                                "question": "一个全新的问题", "paraphrases": ["新说法一", "新说法二", "新说法三"]})

    edit(entries_copy, "interest", copy_fee_entry)
    assert only_problem(entries_copy).endswith("'interest.start_date' is used twice (also in interest.yaml)")


def test_the_same_phrasing_in_two_entries_is_named_even_with_punctuation_and_particles(entries_copy: Path) -> None:
    # "请问，借款的年化利率是多少呢？" is fees.apr_disclosure's question with a greeting, a particle and punctuation.
    edit(entries_copy, "interest", lambda data: entry(data, "interest.holiday")["paraphrases"].append(
        "请问，借款的年化利率是多少呢？"))
    problem = only_problem(entries_copy)
    assert "interest.yaml: entries[" in problem and ".paraphrases[3]" in problem
    assert "the same phrasing as one of entry 'fees.apr_disclosure'" in problem
    # The desk's words for the same: by entry and the form's field names, nothing of files.
    (found,) = lint(entries_copy)
    assert found.chinese == ("条目 interest.holiday 的第4个其他问法：“请问，借款的年化利率是多少呢？”"
                             "与条目 fees.apr_disclosure 的问法相同")
    assert phrasing_key("请问，借款的年化利率是多少呢？") == phrasing_key("借款的年化利率是多少")


def test_an_entry_phrasing_that_is_also_out_of_scope_is_named(entries_copy: Path) -> None:
    path = entries_copy / "out_of_scope.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["phrasings"].append("借款都要收哪些费用？")  # fees.fee_list's question
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert only_problem(entries_copy).endswith(
        "fees.yaml: entries[5].question: '借款都要收哪些费用' is the same phrasing as one of out_of_scope.yaml")
    path.write_text("phrasings: []\n", encoding="utf-8")
    assert only_problem(entries_copy).endswith("out_of_scope.yaml: phrasings: [] should be non-empty")


def test_an_unknown_flow_is_named(entries_copy: Path) -> None:
    edit(entries_copy, "card", lambda data: entry(data, "card.change_flow").update(flow="change_card_now"))
    assert only_problem(entries_copy).endswith(".flow: 'change_card_now' is not a flow in flows/")


def test_an_entry_pointing_to_a_flow_may_not_answer_itself(entries_copy: Path) -> None:
    edit(entries_copy, "card", lambda data: entry(data, "card.change_flow").update(chat="在APP里换卡即可。"))
    assert only_problem(entries_copy).endswith(
        "card.yaml: entries[0]: points to the flow 'change_bank_card', which answers: no chat or voice answer here")


def test_an_answer_without_a_voice_version_is_refused(entries_copy: Path) -> None:
    edit(entries_copy, "card", lambda data: entry(data, "card.credit_card").pop("voice"))
    assert only_problem(entries_copy).endswith("card.yaml: entries[4]: needs both a chat and a voice answer, or a flow")


@pytest.mark.parametrize(("voice", "expected"), [
    ("请登录www.example.com查看。", "has a web address"),
    ("请拨打96110咨询。", "has digits"),
    ("年化利率不超过百分之二十四（以合同为准）。", "has symbols not read aloud: （ ）"),
    ("利率约为24%。", "has digits"),
    ("请加客服QQ咨询。", "has the Latin word 'QQ'"),
])
def test_a_voice_answer_that_cannot_be_spoken_is_named(entries_copy: Path, voice: str, expected: str) -> None:
    edit(entries_copy, "card", lambda data: entry(data, "card.credit_card").update(voice=voice))
    found = lint(entries_copy)
    problems = [str(problem) for problem in found]
    assert any(expected in problem and ".voice:" in problem for problem in problems), problems
    assert all(problem.chinese.startswith("条目 card.credit_card 的语音答复：") for problem in found), found
    assert voice_problems("我们不会收取任何费用，请在APP账单页查看，反诈专线是九六一一零。") == []


def test_answers_over_the_length_limits_are_named(entries_copy: Path) -> None:
    def lengthen(data: dict[str, Any]) -> None:
        entry(data, "card.credit_card").update(chat="借" * (MAX_CHAT_CHARS + 1), voice="说" * (MAX_VOICE_CHARS + 1))

    edit(entries_copy, "card", lengthen)
    problems = sorted(str(problem) for problem in lint(entries_copy))
    assert [problem.rsplit(": ", 1)[1] for problem in problems] == [
        f"{MAX_CHAT_CHARS + 1} characters, over {MAX_CHAT_CHARS}",
        f"{MAX_VOICE_CHARS + 1} characters, over {MAX_VOICE_CHARS}"]


def test_a_file_whose_category_is_not_its_name_and_a_misprefixed_id_are_named(entries_copy: Path) -> None:
    edit(entries_copy, "card", lambda data: entry(data, "card.credit_card").update(id="cards.credit_card"))
    assert only_problem(entries_copy).endswith("'cards.credit_card' must start with 'card.'")
    (entries_copy / "card.yaml").rename(entries_copy / "cards.yaml")
    problems = [str(problem) for problem in lint(entries_copy)]
    assert any("cards.yaml: category: 'card' must equal the file name 'cards'" in problem for problem in problems)


def test_broken_yaml_is_named_with_its_line(entries_copy: Path) -> None:
    (entries_copy / "card.yaml").write_text("category: card\nentries: [\n", encoding="utf-8")
    assert "card.yaml: line 3, column 1: invalid YAML" in only_problem(entries_copy)


def test_an_empty_folder_is_a_problem(tmp_path: Path) -> None:
    assert [str(problem).rsplit(": ", 1)[1] for problem in lint(tmp_path)] == ["no entries files (*.yaml)"]
