"""bench/heard_examples.py: which flow examples are spoken to Whisper, how one is heard, and that
its file is what the flow compiler reads."""

from __future__ import annotations

from pathlib import Path

from bench.heard_examples import PER_INTENT, VOICES, hear, plan, write
from flowspec.model import load_heard

EXAMPLES = {"bill_inquiry": tuple(f"我想查第{n}期的账单" for n in range(12)), "affirm": ("对", "好的")}


def test_each_intent_gets_up_to_per_intent_sentences_of_its_own_examples() -> None:
    kept, todo = plan(EXAMPLES, {})
    assert kept == {"bill_inquiry": [], "affirm": []}
    by_intent = {intent: [item["said"] for item in todo if item["intent"] == intent] for intent in EXAMPLES}
    assert len(by_intent["bill_inquiry"]) == PER_INTENT and sorted(by_intent["affirm"]) == ["好的", "对"]
    assert all(item["said"] in EXAMPLES[item["intent"]] and item["voice"] in VOICES for item in todo)


def test_what_was_heard_is_kept_and_an_edit_only_adds_the_missing_sentences() -> None:
    _, todo = plan(EXAMPLES, {})
    heard = {"bill_inquiry": [{"said": item["said"], "voice": item["voice"], "heard": item["said"]}
                              for item in todo if item["intent"] == "bill_inquiry"]}
    removed = heard["bill_inquiry"][0]["said"]
    edited = {**EXAMPLES, "bill_inquiry": tuple(text for text in EXAMPLES["bill_inquiry"] if text != removed)}
    kept, again = plan(edited, heard)
    assert [entry["said"] for entry in kept["bill_inquiry"]] == [entry["said"] for entry in heard["bill_inquiry"][1:]]
    assert [item["intent"] for item in again].count("bill_inquiry") == 1  # one new sentence replaces the removed one
    assert next(item["said"] for item in again if item["intent"] == "bill_inquiry") not in {
        entry["said"] for entry in heard["bill_inquiry"]}


def test_the_written_file_is_what_the_flow_compiler_reads(tmp_path: Path) -> None:
    path = tmp_path / "heard.yml"
    write(path, {"bill_inquiry": [{"said": "我的账单", "voice": VOICES[0], "heard": "我的帐单"}], "affirm": []})
    assert load_heard(path) == {"bill_inquiry": (("我的账单", "我的帐单"),)}


def test_a_sentence_is_spoken_over_the_line_and_heard_by_whisper() -> None:
    said = "我想查一下我的账单"
    intent, entry = hear({"intent": "bill_inquiry", "said": said, "voice": "jm_kumo", "seed": 7})
    assert intent == "bill_inquiry" and (entry["said"], entry["voice"]) == (said, "jm_kumo")
    assert sum(character in entry["heard"] for character in said) * 2 >= len(said), entry["heard"]
