"""Streaming speech recognition for calls: Vosk (Kaldi) on a model loaded once per process.

A `Recognizer` hands out one `RecognitionStream` per utterance. The stream takes caller audio
as it arrives and answers with partial text while the caller speaks and the final text at the
end. Closed questions (yes/no, digits, menu choices) can constrain a stream to a grammar from
`grammar_for`, which makes short answers on narrow-band phone audio far more reliable.

Without a model speech recognition is off (`load_recognizer` returns None) and callers use the
keypad. (`bench.stand_ins.ScriptedRecognizer` stands in for a model in the demo, the tests and the bench.)
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from flowspec.model import load_answers
from flowspec.slot_types import types_with
from ivr_config import environment

log = logging.getLogger(__name__)

MODEL_HELP = ("download vosk-model-small-cn-0.22 from https://alphacephei.com/vosk/models, unzip it and set "
              "VOSK_MODEL_PATH to the unzipped folder (see voice/README.md)")

# Vosk's Chinese models write words separated by spaces; a space between two ideographs is an
# artefact, while Korean (and Latin) words need theirs.
_CJK = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_SPACE_BETWEEN_IDEOGRAPHS = re.compile(f"(?<=[{_CJK}])\\s+(?=[{_CJK}])")
_IDEOGRAPHS_ONLY = re.compile(f"[{_CJK}]+")

_UNKNOWN_WORD = "[unk]"

# Always in a grammar so that a caller stuck on a closed question can still get out of it.
ESCAPE_PHRASES = ("转人工", "人工", "人工服务", "重复", "再说一遍", "没听清")
_CHINESE_NUMERALS = ("一", "二", "三", "四", "五", "六", "七", "八", "九", "十")


class AsrModelError(RuntimeError):
    """A Vosk model path is configured but does not hold a usable model."""


def remove_cjk_spaces(text: str) -> str:
    """Drop the spaces Vosk puts between Chinese words; keep spaces next to anything else."""
    return _SPACE_BETWEEN_IDEOGRAPHS.sub("", text).strip()


class RecognitionStream(Protocol):
    def accept(self, pcm: bytes) -> str | None:
        """Feed audio at the recogniser's rate; the utterance's text so far when it changed."""
        ...

    def pause(self) -> None:
        """The caller paused: the utterance may end here (a whole-utterance recogniser may start)."""
        ...

    def finish(self, ended_in_pause: bool = False) -> str:
        """End of the utterance: everything recognised since the stream started.
        `ended_in_pause`: nothing was said after the last `pause`."""
        ...


class Recognizer(Protocol):
    sample_rate: int
    # Whether a caller's spoken name can be trusted to it for identity (L1 by phone, name and ID
    # digits); when not, the phone gateway vouches for the line so the caller proves L1 by keypad.
    hears_names: bool

    def stream(self, grammar: list[str] | None = None) -> RecognitionStream:
        """A stream for one utterance, free or limited to the grammar's phrases."""
        ...


class _VoskStream:
    def __init__(self, kaldi_recognizer: Any) -> None:
        self._kaldi = kaldi_recognizer
        self._segments: list[str] = []  # parts Vosk finalised on its own after a pause
        self._last_reported = ""
        self._final: str | None = None

    def accept(self, pcm: bytes) -> str | None:
        if self._final is not None:
            raise RuntimeError("this utterance is finished: start a new stream")
        if self._kaldi.AcceptWaveform(pcm):
            self._add_segment(self._kaldi.Result(), "text")
            current = self._joined()
        else:
            current = self._joined(_result_text(self._kaldi.PartialResult(), "partial"))
        if not current or current == self._last_reported:
            return None
        self._last_reported = current
        return current

    def pause(self) -> None:
        pass  # streaming: the text so far is already decoded

    def finish(self, ended_in_pause: bool = False) -> str:
        if self._final is None:
            self._add_segment(self._kaldi.FinalResult(), "text")
            self._final = self._joined()
        return self._final

    def _add_segment(self, result_json: str, key: str) -> None:
        text = _result_text(result_json, key)
        if text:
            self._segments.append(text)

    def _joined(self, partial: str = "") -> str:
        return remove_cjk_spaces(" ".join([*self._segments, partial]))


def _result_text(result_json: str, key: str) -> str:
    words = json.loads(result_json).get(key, "").split()
    return " ".join(word for word in words if word != _UNKNOWN_WORD)


class VoskRecognizer:
    """Vosk on one model loaded once; every call's streams share it (Kaldi models are read-only).

    Grammar phrases are plain text ("是的", "转人工"). A Vosk grammar may only use words in the
    model's vocabulary, and the small Chinese model's vocabulary is made of words, not single
    characters, so each phrase is mapped onto the model's own words: the phrase itself when the
    model knows it, else the segmentation into the fewest known words (single characters when
    nothing longer fits). Phrases that cannot be written with known words are left out with a
    warning instead of being silently ignored by Vosk.
    """

    hears_names = True

    def __init__(self, model_path: str | Path, sample_rate: int = 16000) -> None:
        path = Path(model_path).expanduser()
        _check_model_folder(path)
        # Imported here so that keypad-only deployments and scripted tests need no native library.
        import vosk

        vosk.SetLogLevel(-1)
        try:
            self._model = vosk.Model(str(path))
        except Exception as error:  # Vosk raises a bare Exception("Failed to create a model")
            raise AsrModelError(f"Vosk could not load the model in {path}: {MODEL_HELP}") from error
        self._kaldi_recognizer_class = vosk.KaldiRecognizer
        self.model_path = path
        self.sample_rate = sample_rate
        self._known_words: dict[str, bool] = {}
        self._has_unknown_word = self.knows(_UNKNOWN_WORD)

    def knows(self, word: str) -> bool:
        """Whether the model's vocabulary holds this exact word."""
        if word not in self._known_words:
            self._known_words[word] = self._model.vosk_model_find_word(word) >= 0
        return self._known_words[word]

    def vocabulary_grammar(self, phrases: list[str]) -> list[str]:
        """The phrases as space-separated model words, without those the model cannot say."""
        entries: list[str] = []
        for phrase in phrases:
            words = self._words_for(phrase)
            if words is None:
                _warn_unusable_phrase(phrase)
            elif " ".join(words) not in entries:
                entries.append(" ".join(words))
        # With [unk] in the grammar, speech outside it is not forced onto the nearest phrase.
        if entries and self._has_unknown_word:
            entries.append(_UNKNOWN_WORD)
        return entries

    def stream(self, grammar: list[str] | None = None) -> RecognitionStream:
        if grammar is None:
            return _VoskStream(self._kaldi_recognizer_class(self._model, self.sample_rate))
        entries = self.vocabulary_grammar(grammar)
        if not entries:
            log.warning("no grammar phrase is in the model's vocabulary: recognising freely")
            return _VoskStream(self._kaldi_recognizer_class(self._model, self.sample_rate))
        # ensure_ascii=False: Vosk looks words up as UTF-8; \\u escapes are "missing in vocabulary".
        grammar_json = json.dumps(entries, ensure_ascii=False)
        return _VoskStream(self._kaldi_recognizer_class(self._model, self.sample_rate, grammar_json))

    def _words_for(self, phrase: str) -> list[str] | None:
        words: list[str] = []
        for token in phrase.split():
            if self.knows(token):
                words.append(token)
                continue
            if not _IDEOGRAPHS_ONLY.fullmatch(token):
                return None
            segmented = self._fewest_known_words(token)
            if segmented is None:
                return None
            words.extend(segmented)
        return words or None

    def _fewest_known_words(self, ideographs: str) -> list[str] | None:
        # best[end] = shortest split of ideographs[:end] into known words (phrases are short).
        best: list[list[str] | None] = [[]] + [None] * len(ideographs)
        for end in range(1, len(ideographs) + 1):
            for start in range(end):
                prefix = best[start]
                if prefix is not None and self.knows(ideographs[start:end]):
                    candidate = [*prefix, ideographs[start:end]]
                    current = best[end]
                    if current is None or len(candidate) < len(current):
                        best[end] = candidate
        return best[-1]


@cache
def _warn_unusable_phrase(phrase: str) -> None:
    log.warning("grammar phrase %r left out: the model's vocabulary cannot spell it", phrase)


def _check_model_folder(path: Path) -> None:
    if not path.is_dir():
        raise AsrModelError(f"no Vosk model at {path}: the folder does not exist; {MODEL_HELP}")
    # Current Vosk models keep the acoustic model in am/, older ones at the top level.
    if not ((path / "am" / "final.mdl").is_file() or (path / "final.mdl").is_file()):
        raise AsrModelError(f"{path} is not a Vosk model (no am/final.mdl): point VOSK_MODEL_PATH at the "
                            f"unzipped model folder; {MODEL_HELP}")


def grammar_for(expect: dict[str, Any]) -> list[str] | None:
    """Phrases a caller may say to a closed question, from the dialogue's `expect` payload.

    yes_no → yes and no words; digits and phone → digit words, said one at a time; choice →
    ordinals and numbers for options 1..choices. Every grammar also holds the escape phrases
    (转人工, 重复 …). Other types (amounts, dates, names, banks, free text) return None: free
    recognition. Phrases are plain text; `VoskRecognizer` maps them onto the model's words.
    """
    kind = expect.get("type")
    if kind == "yes_no":
        phrases = [*load_answers().yes, *load_answers().no]  # the words the dialogue core accepts
    elif kind in types_with("digits"):
        phrases = list(load_answers().digits)
    elif kind == "choice" and int(expect.get("choices", 0)) > 0:
        phrases = [phrase for number in _numerals(int(expect["choices"]))
                   for phrase in (f"第{number}个", f"第{number}项", f"第{number}", number)]
        if int(expect["choices"]) >= 2:
            phrases.append("两")
    else:
        return None
    return list(dict.fromkeys([*phrases, *ESCAPE_PHRASES]))


def _numerals(count: int) -> list[str]:
    """Chinese numerals for 1..count (menus are short; beyond ten, say them as 十一, 十二 …)."""
    spoken = []
    for number in range(1, count + 1):
        tens, units = divmod(number, 10)
        text = ("" if tens <= 1 else _CHINESE_NUMERALS[tens - 1]) + ("十" if tens else "")
        spoken.append(text + (_CHINESE_NUMERALS[units - 1] if units else ""))
    return spoken


RECOGNIZERS = ("auto", "vosk", "whisper", "none")


@dataclass(frozen=True)
class AsrConfig:
    # auto: vosk when a Vosk model is configured, else whisper; vosk: streaming, off without a model
    # path; whisper: open questions only (voice/whisper.py); none: keypad only
    recognizer: str = "auto"
    model_path: str | None = None
    sample_rate: int = 16000  # what vosk-model-small-cn-0.22 was trained on; calls are resampled up
    grammar_for_closed_questions: bool = True

    def __post_init__(self) -> None:
        if self.recognizer not in RECOGNIZERS:
            raise ValueError(f"recognizer must be one of {', '.join(RECOGNIZERS)}, got {self.recognizer!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> AsrConfig:
        """VOSK_MODEL_PATH names the unzipped model folder; unset or empty means no speech recognition."""
        return cls(model_path=environment.optional_text(env, "VOSK_MODEL_PATH"))


def load_recognizer(config: AsrConfig) -> Recognizer | None:
    """The process's recogniser for the configured model, or None when none is configured.

    A configured but unusable path raises AsrModelError: a typo must not silently turn speech off.
    """
    if not config.model_path:
        _warn_speech_recognition_off()
        return None
    return _shared_vosk_recognizer(str(Path(config.model_path).expanduser().resolve()), config.sample_rate)


@cache
def _shared_vosk_recognizer(model_path: str, sample_rate: int) -> VoskRecognizer:
    return VoskRecognizer(model_path, sample_rate)


@cache
def _warn_speech_recognition_off() -> None:
    log.warning("speech recognition is off: no Vosk model configured (set VOSK_MODEL_PATH to the unzipped "
                "vosk-model-small-cn-0.22 folder); callers use the keypad")
