"""Agents' edits to the knowledge base, published in place once a reviewer approves them.

An edit is an entry's whole new content: its question, paraphrases and both answers (an entry that
points to a flow keeps its flow and has no answer of its own), or its retirement. Publishing
rewrites that entry's lines in its category file only (a new entry goes after the category's last
one): comments, order and every other entry stay byte for byte, so `git diff` shows exactly the
approved change and carrying it into the repository is a commit.

Nothing is written that the linter would refuse: the whole knowledge base with the edit is linted
in a scratch copy first, and the rewritten file must read back as exactly the entries intended. An
edit made against an entry that has changed since (`base`, the digest of the entry it was made
from; None for a new entry) is refused: it would silently undo someone else's approved change.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flowspec.model import REPO_ROOT
from knowledge.lint import Problem, lint
from knowledge.model import (
    ENTRIES_DIR_ENV,
    INDEX_DIR_ENV,
    OUT_OF_SCOPE_FILE,
    Entry,
    KnowledgeError,
    entry_files,
    load_category,
)

# Every entry of a category file starts with this line (the files' one style; the round-trip check
# refuses to publish into a file that is written otherwise).
_ENTRY_START = re.compile(r"^  - id: (\S+)[ \t]*$", re.MULTILINE)
_TOP_LEVEL_LINE = re.compile(r"^\S", re.MULTILINE)
INDEX_TIMEOUT_SECONDS = 600.0  # embedding every text of a cold cache takes about a minute here
_publishing = threading.Lock()


class EditRefused(KnowledgeError):
    """The edit would leave the knowledge base broken: what the linter (or the edit's own check) said."""

    def __init__(self, problems: list[str], chinese: list[str]) -> None:
        """`problems` as the linter words them (file: field: problem); `chinese` the same for the desk."""
        super().__init__(f"{len(problems)} problem(s), first: {problems[0]}")
        self.problems = problems
        self.chinese = chinese


class EditConflict(KnowledgeError):
    """The entry is not the one the edit was made from (changed, retired, added or removed since)."""


@dataclass(frozen=True)
class EntryEdit:
    entry_id: str
    question: str
    paraphrases: tuple[str, ...]
    chat: str | None = None
    voice: str | None = None
    retire: bool = False

    @property
    def category(self) -> str:
        return self.entry_id.split(".", 1)[0]

    def as_dict(self) -> dict[str, Any]:
        return {"entry_id": self.entry_id, "question": self.question, "paraphrases": list(self.paraphrases),
                "chat": self.chat, "voice": self.voice, "retire": self.retire}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EntryEdit:
        return cls(entry_id=data["entry_id"], question=data["question"], paraphrases=tuple(data["paraphrases"]),
                   chat=data.get("chat"), voice=data.get("voice"), retire=bool(data.get("retire")))


@dataclass(frozen=True)
class Published:
    path: Path
    entry: Entry
    digest: str


def entry_content(entry: Entry) -> dict[str, Any]:
    """What an entry says: every field but where it is kept."""
    return {"question": entry.question, "paraphrases": list(entry.paraphrases), "chat": entry.chat,
            "voice": entry.voice, "flow": entry.flow, "status": entry.status}


def entry_digest(entry: Entry | None) -> str | None:
    """What an edit names the entry it was made from by; None for no entry."""
    if entry is None:
        return None
    return hashlib.sha256(json.dumps(entry_content(entry), ensure_ascii=False).encode()).hexdigest()[:16]


def find_entry(entries_dir: Path, entry_id: str) -> Entry | None:
    """The entry with this id in its category's file, whatever its status; None if there is none."""
    path = entries_dir / f"{entry_id.split('.', 1)[0]}.yaml"
    if not path.is_file() or path.name == OUT_OF_SCOPE_FILE:
        return None
    return next((entry for entry in load_category(path).entries if entry.id == entry_id), None)


def categories(entries_dir: Path) -> list[tuple[str, str]]:
    """(category, name) of every category file: where a new entry may go."""
    return [(loaded.category, loaded.name) for loaded in map(load_category, entry_files(entries_dir))]


def _scalar(value: Any) -> str:
    """`value` as YAML on one line (flow style for a list), quoted only where YAML needs it."""
    dumped = yaml.safe_dump(value, allow_unicode=True, default_flow_style=True, width=1_000_000)
    return dumped.removesuffix("\n").removesuffix("\n...").strip()


def _block(edit: EntryEdit, flow: str | None) -> str:
    lines = [f"  - id: {edit.entry_id}", f"    question: {_scalar(edit.question)}",
             f"    paraphrases: {_scalar(list(edit.paraphrases))}"]
    if flow is not None:
        lines.append(f"    flow: {flow}")
    else:
        lines += [f"    chat: {_scalar(edit.chat)}", f"    voice: {_scalar(edit.voice)}"]
    lines.append(f"    status: {'retired' if edit.retire else 'approved'}")
    return "\n".join(lines) + "\n"


def _with_block(text: str, entry_id: str, block: str) -> str:
    """`text` with the lines of `entry_id` replaced by `block`, or `block` after the last entry."""
    starts = list(_ENTRY_START.finditer(text))
    if not starts:
        raise KnowledgeError("no entry written as '  - id: …' to put the edit beside")
    for number, start in enumerate(starts):
        if start.group(1) == entry_id:
            end = starts[number + 1].start() if number + 1 < len(starts) else _end_of_last(text, start.end())
            old = text[start.start():end]
            kept_blank_lines = old[len(old.rstrip("\n")) + 1:]
            return text[:start.start()] + block + kept_blank_lines + text[end:]
    end = _end_of_last(text, starts[-1].end())
    before = text[:end] if text[:end].endswith("\n") else text[:end] + "\n"
    return before + block + text[end:]


def _end_of_last(text: str, after: int) -> int:
    """Where the last entry's lines end: at the next line that is not indented, or the file's end."""
    following = _TOP_LEVEL_LINE.search(text, after)
    if following is None:
        return len(text)
    # Blank lines just before the next top-level line stay with it.
    return len(text[:following.start()].rstrip("\n")) + 1


def _expected(edit: EntryEdit, flow: str | None, path: Path) -> Entry:
    return Entry(id=edit.entry_id, category=edit.category, question=edit.question, paraphrases=edit.paraphrases,
                 chat=None if flow else edit.chat, voice=None if flow else edit.voice, flow=flow,
                 status="retired" if edit.retire else "approved", path=path)


def _refused(scratch: Path, problems: list[Problem]) -> EditRefused:
    """The linter's problems named by file, not by the scratch copy's path; in Chinese for the desk
    (the linter's own words where it has none: a broken file only a developer's edit makes)."""
    lines = [": ".join(part for part in (problem.path.relative_to(scratch).as_posix()
                                         if problem.path.is_relative_to(scratch) else problem.path.name,
                                         problem.field, problem.problem) if part)
             for problem in problems]
    return EditRefused(lines, [problem.chinese or line for problem, line in zip(problems, lines, strict=True)])


def prepare(entries_dir: Path, flows_dir: Path, edit: EntryEdit, base: str | None) -> tuple[Path, str, Entry | None]:
    """The category file to write, its new text and the entry it replaces. Raises EditConflict when
    the entry is not the one `base` names, EditRefused when the result would be refused."""
    path = entries_dir / f"{edit.category}.yaml"
    if path.name == OUT_OF_SCOPE_FILE or not path.is_file():
        raise EditRefused([f"entry_id: no category '{edit.category}' in the knowledge base"],
                          [f"知识库里没有“{edit.category}”这个分类"])
    current = find_entry(entries_dir, edit.entry_id)
    if entry_digest(current) != base:
        raise EditConflict(f"{edit.entry_id} " + ("was added since" if base is None
                                                  else "is gone" if current is None else "has changed since"))
    if current is None and edit.retire:
        raise EditRefused([f"entry_id: there is no entry '{edit.entry_id}' to retire"],
                          [f"没有条目 {edit.entry_id} 可以停用"])
    flow = current.flow if current else None
    if flow is not None and (edit.chat is not None or edit.voice is not None):
        raise EditRefused([f"{edit.entry_id}: points to the flow '{flow}', which answers: no chat or voice answer"],
                          [f"条目 {edit.entry_id}：指向业务流程“{flow}”，由流程作答，不写答案"])
    text = _with_block(path.read_text(encoding="utf-8"), edit.entry_id, _block(edit, flow))
    with tempfile.TemporaryDirectory(prefix="knowledge-edit-") as scratch_name:
        scratch = Path(scratch_name)
        for source in entries_dir.glob("*.yaml"):
            shutil.copyfile(source, scratch / source.name)
        (scratch / path.name).write_text(text, encoding="utf-8")
        problems = lint(scratch, flows_dir)
        if problems:
            raise _refused(scratch, problems)
        rewritten = load_category(scratch / path.name).entries
    others_before = [entry_digest(entry) for entry in load_category(path).entries if entry.id != edit.entry_id]
    others_after = [entry_digest(entry) for entry in rewritten if entry.id != edit.entry_id]
    edited = [entry for entry in rewritten if entry.id == edit.entry_id]
    if others_after != others_before or [entry_digest(e) for e in edited] != [
            entry_digest(_expected(edit, flow, path))]:
        raise KnowledgeError(f"{path.name}: the edit of {edit.entry_id} does not read back as written")
    return path, text, current


@contextmanager
def _exclusive(lock_dir: Path) -> Iterator[None]:
    """One publisher at a time: across threads, and across processes sharing `lock_dir`."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    with _publishing, (lock_dir / "publish.lock").open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def publish(entries_dir: Path, flows_dir: Path, edit: EntryEdit, base: str | None, lock_dir: Path) -> Published:
    """Write the edit into its category file (checked as `prepare` does, then replaced in one rename)."""
    with _exclusive(lock_dir):
        path, text, _ = prepare(entries_dir, flows_dir, edit, base)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as written:
                written.write(text)
            os.chmod(temporary, path.stat().st_mode & 0o777)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    entry = find_entry(entries_dir, edit.entry_id)
    assert entry is not None  # just written
    return Published(path=path, entry=entry, digest=str(entry_digest(entry)))


def build_index(entries_dir: Path, index_dir: Path) -> str:
    """Index the entries as they are now (`python -m knowledge index`, in a process of its own so the
    embedding model never stays in the caller's memory); its one-line report. KnowledgeError if it failed."""
    env = {**os.environ, ENTRIES_DIR_ENV: str(entries_dir), INDEX_DIR_ENV: str(index_dir),
           "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH"))))}
    try:
        done = subprocess.run([sys.executable, "-m", "knowledge", "index"], env=env, cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=INDEX_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired as error:
        raise KnowledgeError(f"indexing took over {INDEX_TIMEOUT_SECONDS:.0f} s") from error
    if done.returncode != 0:
        raise KnowledgeError(f"indexing failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout.strip()
