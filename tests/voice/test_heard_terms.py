"""The business's words put back into what Whisper heard (voice/heard_terms.py). The mishearings
below are Whisper base's own, on Kokoro's voice at 8 kHz (bench/spoken_requests.py, the test of a
spoken call); the words kept are the over-corrections a first version made on the NLU data."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr_config.loader import ConfigError
from voice.heard_terms import default_heard_terms, load_heard_terms, sound_keys
from voice.whisper import WhisperConfig, WhisperRecognizer


@pytest.mark.parametrize(("heard", "meant"), [
    ("我想查一下我的障碳", "我想查一下我的账单"),  # zhàng tàn: d heard as t
    ("我想提前环宽", "我想提前还款"),  # the same sounds as 还款 read huán kuǎn (not hái kuǎn)
    ("我的饿度还有多少", "我的额度还有多少"),
    ("我要偷诉", "我要投诉"),
    ("验证吗是多少", "验证码是多少"),
    ("熟知丢了快帮我冬雪站好", "熟知丢了快帮我冬雪账号"),  # zhàn hǎo: an heard for ang; 冬雪 is too far from 冻结
    ("专人工", "转人工"),
])
def test_a_misheard_business_word_is_put_back(heard: str, meant: str) -> None:
    assert default_heard_terms().correct(heard) == meant


@pytest.mark.parametrize("said", [
    "跟预期不一样",  # 预期 sounds exactly like 逾期 and is the more common word
    "这些东西我搞不懂",  # 些东 (near 解冻) spans two words
    "我想用手机借一万块",  # 借一 (near 协议) spans two words
    "你喜欢吃什么",  # 你喜 (near 利息)
    "额度直接关了吧",  # 接关 (near 借款)
    "每期还款里利息占多少",  # 还款里 holds 还款 as said: 里 is not a misheard 日
    "日息万分之几",  # a term of its own, not a misheard 利息
    "我想查一下我的账单",
])
def test_what_was_said_right_or_is_another_word_stays_as_heard(said: str) -> None:
    assert default_heard_terms().correct(said) == said


def test_digits_latin_and_punctuation_around_the_words_are_kept() -> None:
    assert default_heard_terms().correct("APP里障碳3.5元，对吗") == "APP里账单3.5元，对吗"


def test_a_term_that_is_not_chinese_is_refused_with_the_file_and_the_place(tmp_path: Path) -> None:
    path = tmp_path / "heard_terms.yaml"
    path.write_text("terms:\n  - 账单\n  - bill\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"heard_terms\.yaml: terms\[1\]: .bill. does not match"):
        load_heard_terms(path)


def heard_as_whisper_wrote_it(model_dir: str, threads: int, pcm: bytes) -> str:
    """Whisper's raw text for the spoken request of the call test (runs in the worker process)."""
    return "我想查一下我的障碳。"


def test_the_recogniser_hands_the_dialogue_the_corrected_words() -> None:
    recognizer = WhisperRecognizer(WhisperConfig(), transcriber=heard_as_whisper_wrote_it)
    try:
        assert recognizer.recognise(bytes(3200)) == "我想查一下我的账单"
    finally:
        recognizer.close()


@pytest.mark.parametrize(("said", "heard"), [  # Whisper base's own mishearings (bench/spoken_requests.py)
    ("额度怎么冻结了", "额度怎么动结了"),  # the same syllables, other characters
    ("我这个号实名了吗", "我这个号使命了吗"),  # shí míng / shǐ mìng: tones are not kept
    ("一次性还清", "一次性环境"),  # q ~ j, ing ~ in; 还 read huán (the polyphone dictionary)
    ("我想降额", "我想降饿"),
])
def test_misheard_words_keep_the_sound_keys_of_the_words_said(said: str, heard: str) -> None:
    assert sound_keys(heard) == sound_keys(said)


def test_sound_keys_merge_near_sounds_and_keep_other_text_as_runs() -> None:
    assert sound_keys("入账") == sound_keys("路张")  # r ~ l (and n ~ l), zh ~ z, ang ~ an
    assert sound_keys("利息") != sound_keys("利率")  # far sounds stay apart
    assert sound_keys("尾号ABC 1234，好") == ["wei", "fao", "abc", "1234", "fao"]  # h ~ f
    assert sound_keys("，。！") == [] and sound_keys("") == []
