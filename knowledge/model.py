"""The knowledge base's content: `knowledge/entries/<category>.yaml`, loaded and schema-checked.

The same loader serves the linter, the retriever and the evaluation, so an entry means one thing
everywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ivr_config import environment
from ivr_config.loader import ConfigError, load_yaml

PACKAGE_DIR = Path(__file__).resolve().parent
ENTRIES_DIR = PACKAGE_DIR / "entries"
SCHEMA_PATH = PACKAGE_DIR / "schema.json"
# The entries the assistant serves and the desk's approved edits are written into: the repository's
# own unless KNOWLEDGE_ENTRIES_DIR names another (a deployment's volume).
ENTRIES_DIR_ENV = "KNOWLEDGE_ENTRIES_DIR"
# Where the index the action servers answer from is kept (and the publishing lock): KNOWLEDGE_INDEX_DIR.
INDEX_DIR_ENV = "KNOWLEDGE_INDEX_DIR"
DEFAULT_INDEX_DIR = PACKAGE_DIR.parent / "var" / "knowledge"
# Questions that sound like the knowledge base's but are not its to answer (other companies' products,
# daily life): `phrasings:` only. Part of the content (and of its hash), not a category.
OUT_OF_SCOPE_FILE = "out_of_scope.yaml"
OUT_OF_SCOPE_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["phrasings"],
    "properties": {"phrasings": {"type": "array", "minItems": 1, "uniqueItems": True,
                                 "items": {"type": "string", "minLength": 2}}},
}
SERVED_STATUS = "approved"
CHANNELS = ("chat", "voice", "outbound")  # outbound calls are spoken: they get the voice answer
# Words that carry no meaning of their own in a question: the linter ignores them when it compares
# paraphrases, so "请问能提前还款吗" and "能提前还款" count as the same phrasing.
_FILLER_PREFIXES = ("你好", "您好", "请问", "我想问一下", "我想问下", "问一下", "问下")
_FILLER_SUFFIXES = "啊呀吧呢吗嘛哦哈啦呗"


class KnowledgeError(ConfigError):
    """An entries file is missing, unreadable, not YAML or not what the schema says."""


@dataclass(frozen=True)
class Entry:
    id: str
    category: str
    question: str
    paraphrases: tuple[str, ...]
    chat: str | None
    voice: str | None
    flow: str | None
    status: str
    path: Path

    @property
    def phrasings(self) -> tuple[str, ...]:
        """How customers ask it: the question and its paraphrases."""
        return (self.question, *self.paraphrases)

    def answer_for(self, channel: str) -> str | None:
        """The answer said on `channel`; None for an entry that points to a flow."""
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}: one of {', '.join(CHANNELS)}")
        return self.chat if channel == "chat" else self.voice


@dataclass(frozen=True)
class CategoryFile:
    path: Path
    category: str
    name: str
    entries: tuple[Entry, ...]


def normalise(text: str) -> str:
    """Text as the lexical signal sees it: full-width folded (NFKC), lower case, without spaces,
    punctuation or symbols."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return "".join(char for char in folded if unicodedata.category(char)[0] not in "PSZC")


def phrasing_key(text: str) -> str:
    """What two phrasings must differ in to count as different: `normalise` without greetings in
    front and modal particles at the end."""
    key = normalise(text)
    for prefix in _FILLER_PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            key = key[len(prefix):]
    return key.rstrip(_FILLER_SUFFIXES) or key


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def served_entries_dir(env: Mapping[str, str] = os.environ) -> Path:
    return environment.path(env, ENTRIES_DIR_ENV, ENTRIES_DIR)


def served_index_dir(env: Mapping[str, str] = os.environ) -> Path:
    return environment.path(env, INDEX_DIR_ENV, DEFAULT_INDEX_DIR)


def load_category(path: Path) -> CategoryFile:
    data = load_yaml(path, schema(), KnowledgeError)
    entries = tuple(
        Entry(id=raw["id"], category=data["category"], question=raw["question"],
              paraphrases=tuple(raw["paraphrases"]), chat=raw.get("chat"), voice=raw.get("voice"),
              flow=raw.get("flow"), status=raw["status"], path=path)
        for raw in data["entries"])
    return CategoryFile(path=path, category=data["category"], name=data["name"], entries=entries)


def entry_files(entries_dir: Path = ENTRIES_DIR) -> list[Path]:
    """The category files (every *.yaml but the out-of-scope phrasings)."""
    return sorted(path for path in entries_dir.glob("*.yaml") if path.name != OUT_OF_SCOPE_FILE)


def load_out_of_scope(entries_dir: Path = ENTRIES_DIR) -> list[str]:
    """The out-of-scope phrasings; none when the folder has no such file."""
    path = entries_dir / OUT_OF_SCOPE_FILE
    return list(load_yaml(path, OUT_OF_SCOPE_SCHEMA, KnowledgeError)["phrasings"]) if path.exists() else []


def content_hash(entries_dir: Path = ENTRIES_DIR) -> str:
    """A digest of every content file (names and bytes): the retriever's index is keyed by it."""
    digest = hashlib.sha256()
    for path in sorted(entries_dir.glob("*.yaml")):
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:24]


def load_entries(entries_dir: Path = ENTRIES_DIR) -> list[Entry]:
    """Every entry of every category file, in file order; KnowledgeError on the first bad file."""
    paths = entry_files(entries_dir)
    if not paths:
        raise KnowledgeError(f"{entries_dir}: no entries files (*.yaml)")
    return [entry for path in paths for entry in load_category(path).entries]

