"""The knowledge base linter: every entries file against the schema and the rules below.

Run with `python -m knowledge lint`; it prints every problem as `file: field: problem` and exits
non-zero when there is any (`make lint`, and so `make test`, run it).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from flowspec.model import FLOWS_DIR, REPO_ROOT
from knowledge.model import (
    ENTRIES_DIR,
    OUT_OF_SCOPE_FILE,
    CategoryFile,
    KnowledgeError,
    entry_files,
    load_category,
    load_out_of_scope,
    phrasing_key,
)

# Characters are counted (Chinese has no spaces). A spoken answer over ~120 characters lasts more than
# about 30 seconds of speech: callers lose the thread.
MAX_CHAT_CHARS = 300
MAX_VOICE_CHARS = 120
MAX_PHRASING_CHARS = 80
URL = re.compile(r"https?://|www\.|[a-z0-9-]+\.(com|cn|net|org)\b", re.IGNORECASE)
# Spoken answers are read by the speech synthesiser: digits must be written as words (二十四小时,
# 百分之二十四), and brackets, slashes, currency and other symbols are not read aloud at all.
SPOKEN_PUNCTUATION = set("，。、？！：；“”‘’…—")
SPOKEN_LATIN_WORDS = {"APP"}
# Seven digits or more in a row (spaces and dashes between them ignored) is a phone, ID, card or
# account number: one customer's personal data, which an agent's edit could carry in from a chat.
# The hotlines the answers give (96110, 12378, 95xxx) are five digits.
PERSONAL_NUMBER = re.compile(r"\d(?:[\s-]*\d){6,}")


@dataclass(frozen=True)
class Problem:
    path: Path
    field: str
    problem: str
    # The same for the desk's agents and reviewers (web/knowledge_desk.py), with the entry it is in;
    # empty where only a developer's file edit can cause it (the desk then shows `problem`).
    chinese: str = ""

    def __str__(self) -> str:
        try:
            where = self.path.relative_to(REPO_ROOT)
        except ValueError:
            where = self.path
        return f"{where}: {self.field}: {self.problem}" if self.field else f"{where}: {self.problem}"


def has_personal_number(text: str) -> bool:
    return PERSONAL_NUMBER.search(unicodedata.normalize("NFKC", text)) is not None


def _length(text: str) -> int:
    return sum(1 for char in text if not char.isspace())


def _voice_problems(text: str) -> list[tuple[str, str]]:
    """Why a voice answer cannot be spoken as written, in English and in Chinese."""
    problems = []
    if URL.search(text):
        problems.append(("has a web address: say where to find it instead (the APP, the official website)",
                         "含网址，请改为说明在哪里查看（APP、官方网站）"))
    if any(char.isascii() and char.isdigit() for char in text):
        problems.append(("has digits: write numbers as they are read aloud (二十四小时, 百分之二十四)",
                         "含阿拉伯数字，请按读法写成汉字（二十四小时、百分之二十四）"))
    spoken = "、".join(sorted(SPOKEN_LATIN_WORDS))
    for word in re.findall(r"[A-Za-z]+", text):
        if word not in SPOKEN_LATIN_WORDS:
            problems.append((f"has the Latin word '{word}': only {', '.join(sorted(SPOKEN_LATIN_WORDS))} is spoken",
                             f"含英文“{word}”，语音只能读出 {spoken}"))
    symbols = sorted({char for char in text if unicodedata.category(char)[0] in "PS"
                      and char not in SPOKEN_PUNCTUATION and not char.isalnum()})
    if symbols:
        problems.append((f"has symbols not read aloud: {' '.join(symbols)}", f"含读不出的符号：{' '.join(symbols)}"))
    return problems


def voice_problems(text: str) -> list[str]:
    """Why a voice answer cannot be spoken as written; empty when it can."""
    return [english for english, _ in _voice_problems(text)]


def _field_name(field: str) -> str:
    """An entry's field as the desk names it: question, paraphrases[2], chat, voice, id, flow."""
    if field.startswith("paraphrases["):
        return f"第{int(field[len('paraphrases['):-1]) + 1}个其他问法"
    # The names the desk's form gives them (web/pages.py knowledge_page).
    names = {"question": "标准问题", "chat": "文字答复", "voice": "语音答复", "id": "条目编号", "flow": "指向的流程"}
    return names.get(field, field)


def _in_entry(entry_id: str, field: str, text: str) -> str:
    return f"条目 {entry_id}" + (f" 的{_field_name(field)}" if field else "") + f"：{text}"


def _check_file(category_file: CategoryFile, flow_ids: set[str]) -> list[Problem]:
    problems = []
    path = category_file.path
    if category_file.category != path.stem:
        problems.append(Problem(path, "category", f"'{category_file.category}' must equal the file name '{path.stem}'"))
    for index, entry in enumerate(category_file.entries):
        where = f"entries[{index}]"

        def found(field: str, english: str, chinese: str, entry_id: str = entry.id, where: str = where) -> None:
            problems.append(Problem(path, f"{where}.{field}" if field else where, english,
                                    _in_entry(entry_id, field, chinese)))

        if not entry.id.startswith(f"{category_file.category}."):
            found("id", f"'{entry.id}' must start with '{category_file.category}.'",
                  f"须以“{category_file.category}.”开头")
        if entry.flow is not None and entry.flow not in flow_ids:
            found("flow", f"'{entry.flow}' is not a flow in flows/", f"没有“{entry.flow}”这个业务流程")
        if entry.flow is not None and (entry.chat is not None or entry.voice is not None):
            found("", f"points to the flow '{entry.flow}', which answers: no chat or voice answer here",
                  f"指向业务流程“{entry.flow}”，由流程作答，此处不写答案")
        if entry.flow is None and (entry.chat is None or entry.voice is None):
            found("", "needs both a chat and a voice answer, or a flow",
                  "须同时有文字答复和语音答复（或指向一个业务流程）")
        for number, text in enumerate(entry.phrasings):
            if _length(text) > MAX_PHRASING_CHARS:
                found("question" if number == 0 else f"paraphrases[{number - 1}]",
                      f"{_length(text)} characters, over {MAX_PHRASING_CHARS}",
                      f"{_length(text)} 个字，超过 {MAX_PHRASING_CHARS} 字")
        texts = [("question", entry.question)]
        texts += [(f"paraphrases[{number}]", text) for number, text in enumerate(entry.paraphrases)]
        texts += [(name, text) for name, text in (("chat", entry.chat), ("voice", entry.voice)) if text is not None]
        for name, text in texts:
            if has_personal_number(text):
                found(name, "has a number of seven digits or more (a phone, ID or card number?): no personal data here",
                      "含七位以上连续数字（手机号、身份证号或卡号？），不能写入客户个人信息")
        if entry.chat is not None and _length(entry.chat) > MAX_CHAT_CHARS:
            found("chat", f"{_length(entry.chat)} characters, over {MAX_CHAT_CHARS}",
                  f"{_length(entry.chat)} 个字，超过 {MAX_CHAT_CHARS} 字")
        if entry.voice is not None:
            if _length(entry.voice) > MAX_VOICE_CHARS:
                found("voice", f"{_length(entry.voice)} characters, over {MAX_VOICE_CHARS}",
                      f"{_length(entry.voice)} 个字，超过 {MAX_VOICE_CHARS} 字（电话里说太久客户记不住）")
            if entry.chat is not None and _length(entry.voice) > _length(entry.chat):
                found("voice", "longer than the chat answer: say it shorter", "比文字答复还长，请说得更简短")
            for english, chinese in _voice_problems(entry.voice):
                found("voice", english, chinese)
    return problems


def _check_phrasings(files: list[CategoryFile], out_of_scope: list[str], out_of_scope_path: Path) -> list[Problem]:
    """No phrasing twice, within an entry, across entries or among the out-of-scope ones: the retriever
    could not tell them apart."""
    problems = []
    first_seen: dict[str, tuple[str, Path]] = {}
    for number, text in enumerate(out_of_scope):
        key = phrasing_key(text)
        if key in first_seen:
            problems.append(Problem(out_of_scope_path, f"phrasings[{number}]", f"'{text}' is there twice"))
        first_seen.setdefault(key, ("the out-of-scope phrasings", out_of_scope_path))
    for category_file in files:
        for index, entry in enumerate(category_file.entries):
            for number, text in enumerate(entry.phrasings):
                key = phrasing_key(text)
                field = f"entries[{index}].{'question' if number == 0 else f'paraphrases[{number - 1}]'}"
                if key in first_seen:
                    owner, owner_path = first_seen[key]
                    same = ("this entry" if owner == entry.id else OUT_OF_SCOPE_FILE if owner_path == out_of_scope_path
                            else f"entry '{owner}'")
                    same_cn = ("本条目的另一个问法" if owner == entry.id else "知识库范围外的问法"
                               if owner_path == out_of_scope_path else f"条目 {owner} 的问法")
                    problems.append(Problem(
                        category_file.path, field, f"'{text}' is the same phrasing as one of {same}",
                        _in_entry(entry.id, field.split(".", 1)[1], f"“{text}”与{same_cn}相同")))
                else:
                    first_seen[key] = (entry.id, category_file.path)
    return problems


def lint(entries_dir: Path = ENTRIES_DIR, flows_dir: Path = FLOWS_DIR) -> list[Problem]:
    """Every problem found, in file order; an empty list means the knowledge base is sound."""
    problems: list[Problem] = []
    flow_ids = {path.stem for path in flows_dir.glob("*.yml")}
    paths = entry_files(entries_dir)
    if not paths:
        return [Problem(entries_dir, "", "no entries files (*.yaml)")]
    files = []
    for path in paths:
        try:
            files.append(load_category(path))
        except KnowledgeError as error:
            problems.append(Problem(path, "", str(error).removeprefix(f"{path}: ")))
    seen_ids: dict[str, Path] = {}
    for category_file in files:
        problems += _check_file(category_file, flow_ids)
        for index, entry in enumerate(category_file.entries):
            if entry.id in seen_ids:
                problems.append(Problem(category_file.path, f"entries[{index}].id",
                                        f"'{entry.id}' is used twice (also in {seen_ids[entry.id].name})",
                                        f"条目编号 {entry.id} 已被使用（{seen_ids[entry.id].name}）"))
            seen_ids.setdefault(entry.id, category_file.path)
    out_of_scope: list[str] = []
    try:
        out_of_scope = load_out_of_scope(entries_dir)
    except KnowledgeError as error:
        problems.append(Problem(entries_dir / OUT_OF_SCOPE_FILE, "", str(error).split(": ", 1)[1]))
    return problems + _check_phrasings(files, out_of_scope, entries_dir / OUT_OF_SCOPE_FILE)
