"""Intent accuracy on held-out examples that training never saw (tests/nlu/held_out/).

Each example goes through the running model's /model/parse; nlu_fallback counts as a miss.
The test prints accuracy, macro-F1 and the confusions, and needs accuracy >= 95% and
macro-F1 >= 0.93.
"""

from __future__ import annotations

from collections import Counter

import pytest
import yaml

from flowspec.lint import HELD_OUT_DIR
from tests.conftest import Stack

MIN_ACCURACY = 0.95
MIN_MACRO_F1 = 0.93


def held_out_examples() -> list[tuple[str, str]]:
    examples = []
    for path in sorted(HELD_OUT_DIR.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        examples += [(text, data["intent"]) for text in data["examples"]]
    return examples


def macro_f1(pairs: list[tuple[str, str]]) -> float:
    labels = {gold for gold, _ in pairs}
    scores = []
    for label in labels:
        true_positive = sum(1 for gold, got in pairs if gold == label and got == label)
        predicted = sum(1 for _, got in pairs if got == label)
        actual = sum(1 for gold, _ in pairs if gold == label)
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / actual if actual else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / len(scores)


@pytest.mark.stack
def test_held_out_intent_accuracy_and_macro_f1(running_stack: Stack) -> None:
    examples = held_out_examples()
    assert len(examples) >= 5 * 76
    pairs = []
    with running_stack.rasa_api() as client:
        for text, gold in examples:
            parsed = client.post("/model/parse", json={"text": text}).json()
            pairs.append((gold, parsed["intent"]["name"]))
    accuracy = sum(1 for gold, got in pairs if gold == got) / len(pairs)
    f1 = macro_f1(pairs)
    confusions = Counter((gold, got) for gold, got in pairs if gold != got)
    print(f"\nNLU held-out: {len(pairs)} examples, accuracy {accuracy:.3f}, macro-F1 {f1:.3f}")
    for (gold, got), count in confusions.most_common(15):
        print(f"  {gold} -> {got}: {count}")
    assert accuracy >= MIN_ACCURACY
    assert f1 >= MIN_MACRO_F1
