"""The polyphone dictionary: its schema, and that both voices read 还款 huán kuǎn with it (checked on
the phonemes each front end produces, not on audio)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ivr_config.loader import ConfigError
from voice.pronunciation import Pronunciations, load_pronunciations

DICTIONARY = load_pronunciations()


def espeak_phonemes(text: str) -> str:
    """What espeak-ng's cmn-latn-pinyin voice (the bot's live voice) would say, as its phonemes."""
    return subprocess.run(["espeak-ng", "-q", "-x", "-v", "cmn-latn-pinyin", text],
                          capture_output=True, text=True, check=True, timeout=30).stdout


def test_the_shipped_dictionary_has_the_finance_polyphones() -> None:
    assert DICTIONARY.words["还款"] == ("huan2", "kuan3")
    for word in ("还清", "重新", "银行", "行长", "长期", "利率", "还本付息", "降息"):
        assert word in DICTIONARY.words


def test_the_longest_word_wins_at_each_position() -> None:
    assert DICTIONARY.for_espeak("银行行长") == " yin2 hang2  hang2 zhang3 "
    assert DICTIONARY.for_espeak("请于还款日前还款。") == "请于 huan2 kuan3 ri4 前 huan2 kuan3 。"
    assert DICTIONARY.for_espeak("您好") == "您好"


def test_espeak_reads_huan_kuan_with_the_dictionary_and_hai_without() -> None:
    # espeak-ng's phonemes for 还: X'ai35 is hái, X'ua35n is huán.
    without = espeak_phonemes("提前还款")
    assert "X'ai35" in without and "X'ua35n" not in without  # the misreading the dictionary fixes
    fixed = espeak_phonemes(DICTIONARY.for_espeak("提前还款"))
    assert "X'ua35n" in fixed and "khw'a214n" in fixed and "X'ai35" not in fixed
    assert "X'a35N" in espeak_phonemes(DICTIONARY.for_espeak("银行"))  # háng, not xíng
    assert "S;'i35N" in espeak_phonemes("银行")


@pytest.mark.parametrize(("yaml_text", "problem"), [
    ("words:\n  还款: huan2 kuan\n", "words.还款"),  # a syllable without its tone
    ("words:\n  还款: huan2\n", "1 syllables for 2 characters"),
    ("words:\n  还: huan2\n", "words"),  # a single character is not a word: it would change every 还
    ("words:\n  ATM: a1 t1 m1\n", "words"),
    ("other: 1\n", "(top level)"),
])
def test_a_broken_dictionary_names_the_file_and_the_entry(tmp_path: Path, yaml_text: str, problem: str) -> None:
    path = tmp_path / "pronunciations.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(ConfigError, match="pronunciations.yaml") as error:
        load_pronunciations(path)
    assert problem in str(error.value)


def test_an_empty_dictionary_changes_nothing() -> None:
    assert Pronunciations({}).for_espeak("还款") == "还款"
