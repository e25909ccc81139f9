"""The polyphone dictionary (`ivr_config/pronunciations.yaml`) for both of the bot's voices.

Chinese front ends read a polyphone by its most common reading unless they know the word: 还款
comes out hái kuǎn, and espeak-ng reads 银行 yín xíng and 重新 zhòng xīn. One dictionary fixes
both voices:
- Kokoro's front end (misaki's `ZHG2P`) segments with jieba and reads each word with pypinyin,
  whose own segmenter prefers phrases from its phrase dictionary: the words are loaded into it
  (`pypinyin.load_phrases_dict`, process-wide, which only ever makes readings more right);
- espeak-ng's `cmn-latn-pinyin` voice reads pinyin with tone digits as Mandarin, so a known word
  is sent to it spelled in pinyin (`for_espeak`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ivr_config.loader import ConfigError, load_yaml

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "ivr_config" / "pronunciations.yaml"
SYLLABLE = r"[a-z]*[aeiouv][a-z]*[1-5]"  # pinyin, ü written v, tone 1-4 or 5 (neutral)
SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["words"],
    "properties": {"words": {
        "type": "object", "minProperties": 1,
        "propertyNames": {"pattern": r"^[\u4e00-\u9fff]{2,}$"},  # polyphones are fixed by their word
        "additionalProperties": {"type": "string", "pattern": rf"^{SYLLABLE}( {SYLLABLE})*$"}}},
}


@dataclass(frozen=True)
class Pronunciations:
    words: dict[str, tuple[str, ...]]  # word -> one pinyin syllable per character

    def __post_init__(self) -> None:
        for word, syllables in self.words.items():
            if len(syllables) != len(word):
                raise ValueError(f"{word}: {len(syllables)} syllables for {len(word)} characters")

    def segments(self, text: str) -> list[tuple[str, tuple[str, ...] | None]]:
        """`text` cut into known words (with their syllables) and the text between (None): at each
        position the longest known word, so 银行行长 is 银行 + 行长."""
        if not self.words:
            return [(text, None)] if text else []
        found: list[tuple[str, tuple[str, ...] | None]] = []
        last = 0
        for match in _word_pattern(tuple(sorted(self.words))).finditer(text):
            if match.start() > last:
                found.append((text[last:match.start()], None))
            found.append((match.group(), self.words[match.group()]))
            last = match.end()
        if last < len(text):
            found.append((text[last:], None))
        return found

    def for_espeak(self, text: str) -> str:
        """The text with every known word spelled in pinyin for espeak-ng's cmn-latn-pinyin voice."""
        return "".join(part if syllables is None else f" {' '.join(syllables)} "
                       for part, syllables in self.segments(text))

    def load_into_pypinyin(self) -> None:
        """Make pypinyin (and so misaki's Mandarin front end) read these words right."""
        from pypinyin import load_phrases_dict
        from pypinyin.contrib.tone_convert import tone3_to_tone

        load_phrases_dict({word: [[tone3_to_tone(syllable)] for syllable in syllables]
                           for word, syllables in self.words.items()})


@cache
def _word_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first: the regex takes the first alternative that matches at a position.
    return re.compile("|".join(map(re.escape, sorted(words, key=len, reverse=True))))


def load_pronunciations(path: Path = DEFAULT_PATH) -> Pronunciations:
    data = load_yaml(path, SCHEMA)
    try:
        return Pronunciations({word: tuple(pinyin.split()) for word, pinyin in data["words"].items()})
    except ValueError as error:
        raise ConfigError(f"{path}: words.{error}") from error

