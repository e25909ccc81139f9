"""One vocabulary for yes, no and digits (flows/shared/answers.yml): what the phone's recogniser
may hear is exactly what the dialogue core understands, and a broken file is a clear error."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.actions.parsing import parse_digits
from bot.actions.validators import Utterance, validate_yes_no
from flowspec.model import FlowError, Slot, load_answers
from voice.asr import grammar_for

YES_NO = Slot.from_yaml({"name": "confirmed", "type": "yes_no", "prompt": {"voice": "?", "chat": "?"}})


def test_every_word_the_yes_no_grammar_lets_a_caller_say_is_understood_the_same_way() -> None:
    answers = load_answers()
    grammar = grammar_for({"slot": "confirmed", "type": "yes_no"})
    assert grammar is not None
    for word in answers.yes:
        assert word in grammar and validate_yes_no(YES_NO, Utterance(word)) is True, word
    for word in answers.no:
        assert word in grammar and validate_yes_no(YES_NO, Utterance(word)) is False, word
    assert {"嗯", "确定"} <= set(answers.yes)  # the validator always took them; the grammar lacked them


def test_every_spoken_digit_the_digit_grammar_allows_is_parsed_to_its_digit() -> None:
    grammar = grammar_for({"slot": "id_last4", "type": "digits", "length": 4})
    assert grammar is not None
    for word, digit in load_answers().digits.items():
        assert word in grammar and parse_digits(word) == str(digit), word
    assert parse_digits("幺三八洞洞") == "13800"


@pytest.mark.parametrize(("text", "problem"), [
    ("affirm: []\ndeny: [不]\ndigits: {一: 1}\n", "affirm: must be a list of words"),
    ("yes: [是]\nno: [不]\ndigits: {一: 1}\n", "affirm: must be a list of words"),  # YAML reads yes as true
    ("affirm: [是]\ndeny: [不]\ndigits: {一二: 12}\n", "digits: must map single characters"),
    ("affirm: [是, 好]\ndeny: [好]\ndigits: {一: 1}\n", "words both yes and no"),
    ("affirm: [是\n", "not valid YAML"),
])
def test_a_broken_answers_file_names_the_file_and_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "answers.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FlowError) as caught:
        load_answers(path)
    assert problem in str(caught.value) and "answers.yml" in str(caught.value)
