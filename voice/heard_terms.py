"""The business's words put back into what a recogniser heard (ivr_config/heard_terms.yaml).

Whisper base has no grammar and no domain: it writes 账单 as 障碳 and 冻结账号 as 冬雪站好, words
that sound nearly the same. Each stretch of whole words (jieba's, without its guesses at unknown
words) as long as a term is compared with it by sound, syllable by syllable (pinyin without
tones): it is put back to the term when every syllable is the same or near (one of the pairs
Mandarin speakers and recognisers confuse: z/zh, d/t, j/q/x, an/ang, in/ing…) and at most one
syllable (two in a term of four or more) is only near. What was heard stays when it is itself a
word jieba knows as more common than the term: 预期 (expected) sounds exactly like 逾期 (overdue)
and is said far more often.

`sound_keys` gives the same sounds to the intent classifier (bot/components.py SoundFeaturizer):
one key per syllable with the near sounds merged, so a misheard word keeps the keys of the word
said whether or not it is a term.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ivr_config.loader import load_yaml
from voice.pronunciation import load_pronunciations

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "ivr_config" / "heard_terms.yaml"
SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["terms"],
    "properties": {"terms": {"type": "array", "minItems": 1, "uniqueItems": True,
                             "items": {"type": "string", "pattern": r"^[\u4e00-\u9fff]{2,8}$"}}},
}
_NEAR_INITIALS = ({"z", "zh"}, {"c", "ch"}, {"s", "sh"}, {"n", "l"}, {"l", "r"}, {"f", "h"}, {"d", "t"},
                  {"b", "p"}, {"g", "k"}, {"j", "q", "x"})
_NEAR_FINALS = ({"an", "ang"}, {"en", "eng"}, {"in", "ing"}, {"ian", "iang"}, {"uan", "uang"})
_HAN_RUN = re.compile(r"[\u4e00-\u9fff]+")
_HAN_OR_LATIN_RUN = re.compile(r"[\u4e00-\u9fff]+|[a-z0-9]+")

Syllable = tuple[str, str]  # (initial, final), no tone


def _near(one: str, other: str, groups: tuple[set[str], ...]) -> bool:
    return any(one in group and other in group for group in groups)


@cache
def _pinyin() -> tuple[Callable[..., list[str]], Any]:
    """pypinyin's reader and styles, loaded on first use (not at import) and taught the finance
    polyphones once: 还款 read huán kuǎn, as the caller says it (loading the words takes ~50 ms)."""
    from pypinyin import Style, lazy_pinyin

    load_pronunciations().load_into_pypinyin()
    return lazy_pinyin, Style


def _sounds(text: str) -> list[Syllable]:
    lazy_pinyin, Style = _pinyin()  # noqa: N806 (pypinyin's class)
    initials = lazy_pinyin(text, style=Style.INITIALS, strict=False)
    finals = lazy_pinyin(text, style=Style.FINALS, strict=False)
    return list(zip(initials, finals, strict=True))


@dataclass(frozen=True)
class Term:
    word: str
    sounds: tuple[Syllable, ...]
    frequency: int  # jieba's count of the word (0 if it has none)


class HeardTerms:
    def __init__(self, words: list[str]) -> None:
        import jieba  # its dictionary gives the frequencies that keep common words as heard

        jieba.initialize()
        self._frequency = jieba.get_FREQ
        self._tokenize = jieba.tokenize
        self.terms = sorted((Term(word, tuple(_sounds(word)), self._frequency(word) or 0) for word in words),
                            key=lambda term: len(term.word), reverse=True)  # longest first: 提前还款 before 还款

    def correct(self, text: str) -> str:
        return _HAN_RUN.sub(lambda run: self._correct_run(run.group()), text)

    def _correct_run(self, run: str) -> str:
        sounds = _sounds(run)
        # Only whole words of what was heard are compared: 这些东西 holds 些东 (xiē dōng, near 解冻)
        # across two words, and 直接关了 holds 接关 (near 借款).
        bounds = {0}
        for _, _, end in self._tokenize(run, HMM=False):
            bounds.add(end)
        out: list[str] = []
        position = 0
        while position < len(run):
            said = next((term for term in self.terms if run.startswith(term.word, position)), None)
            term = said or next((term for term in self.terms if position in bounds
                                 and position + len(term.word) in bounds
                                 and self._heard_as(term, run, sounds, position)), None)
            if term is None:
                out.append(run[position])
                position += 1
            else:
                out.append(term.word)
                position += len(term.word)
        return "".join(out)

    def _heard_as(self, term: Term, run: str, sounds: list[Syllable], position: int) -> bool:
        heard = run[position:position + len(term.word)]
        if len(heard) < len(term.word):
            return False
        if any(other.word in heard for other in self.terms if len(other.word) < len(heard)):
            return False  # 还款里 holds 还款 as said: 里 is not a misheard 日
        only_near = 0
        for (initial, final), (term_initial, term_final) in zip(sounds[position:], term.sounds, strict=False):
            if (initial, final) == (term_initial, term_final):
                continue
            if not ((initial == term_initial and _near(final, term_final, _NEAR_FINALS))
                    or (final == term_final and _near(initial, term_initial, _NEAR_INITIALS))):
                return False
            only_near += 1
        if only_near > (2 if len(term.word) >= 4 else 1):
            return False
        return (self._frequency(heard) or 0) < max(term.frequency, 1)


def load_heard_terms(path: Path = DEFAULT_PATH) -> HeardTerms:
    return HeardTerms(load_yaml(path, SCHEMA)["terms"])


@cache
def default_heard_terms() -> HeardTerms:
    return load_heard_terms()


def _merged(groups: tuple[set[str], ...]) -> dict[str, str]:
    """Each sound to one name for all the sounds it is near to, directly or through another
    (n ~ l ~ r are all l)."""
    name: dict[str, str] = {}
    for group in groups:
        names = {name.get(member, member) for member in group}
        target = min(names)
        for member in group:
            name[member] = target
        for sound, old in name.items():
            if old in names:
                name[sound] = target
    return name


_MERGED_INITIALS = _merged(_NEAR_INITIALS)
_MERGED_FINALS = _merged(_NEAR_FINALS)


def sound_keys(text: str) -> list[str]:
    """What `text` sounds like, one key per syllable with near sounds merged (冻结 and 动结 are
    both dong jie, 实名 and 使命 si min, 还清 and 环境 fuan jin): misheard words keep the keys of the
    words said. Latin letters and digits stay as they are, one key per run."""
    keys = []
    for run in _HAN_OR_LATIN_RUN.findall(text.lower()):
        if not _HAN_RUN.fullmatch(run):
            keys.append(run)
            continue
        keys += [_MERGED_INITIALS.get(initial, initial) + _MERGED_FINALS.get(final, final)
                 for initial, final in _sounds(run)]
    return keys
