"""Prompts pre-rendered in Kokoro's voice: what the phone channel says, and the disk cache of it.

Kokoro sounds far better than espeak-ng but costs about a CPU-second per second of audio on this
machine, too slow for live replies: it renders, ahead of time, every text the voice channel can
say (the `turns.prompts` of voice.yaml and every voice wording of the flows). A templated wording
("您前面还有{queue.ahead}位客户，请稍候。") is rendered by its fixed parts; a reply that fits the
template is then spoken as those parts around the variable words, which espeak-ng says live.

The cache is a folder of files keyed by the text, its reading (the polyphone dictionary's
pinyin for the words in it), the voice, the speed and the model: a dictionary edit re-renders
only the prompts it changes. Each file carries the sha256 of its audio, so a damaged file is
ignored (and rendered again by the next prerender) rather than played. Files are written under
a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import struct
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from voice.pronunciation import Pronunciations

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path(__file__).resolve().parent.parent / "var" / "tts-cache"
_MAGIC = b"IVRTTS1\n"
_HEADER = struct.Struct("<8sII32s")  # magic, sample rate, PCM bytes, sha256 of the PCM
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
SPOKEN = re.compile(r"[\u4e00-\u9fffA-Za-z0-9]")  # a part of only punctuation says nothing


@dataclass(frozen=True)
class Template:
    """A wording with `{placeholders}`; `parts` are the fixed texts around them."""

    text: str

    @cached_property
    def parts(self) -> tuple[str, ...]:
        return tuple(_PLACEHOLDER.split(self.text))

    @property
    def is_fixed(self) -> bool:
        return len(self.parts) == 1

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("(.+?)".join(map(re.escape, self.parts)), re.DOTALL)

    def spoken_parts(self) -> list[str]:
        """The fixed parts worth rendering (not the bare punctuation between two placeholders)."""
        return [part for part in self.parts if SPOKEN.search(part)]

    def split(self, text: str) -> list[tuple[str, bool]] | None:
        """`text` as (piece, is_fixed) in order when it is this template filled in, else None."""
        match = self.pattern.fullmatch(text)
        if match is None:
            return None
        pieces: list[tuple[str, bool]] = []
        for index, part in enumerate(self.parts):
            pieces.append((part, True))
            if index < len(match.groups()):
                pieces.append((match.group(index + 1), False))
        return [(piece, fixed) for piece, fixed in pieces if piece]


def voice_wordings(prompts: Iterable[str]) -> list[str]:
    """Every wording the voice channel can say: `prompts` (voice.yaml's) and the flows' voice texts."""
    from flowspec.model import repository_flowset  # only the prerender and the gateway need the flows

    flowset = repository_flowset()
    found = list(prompts)
    found += [response.voice for response in flowset.responses.values()]
    found += [intent.response.voice for intent in flowset.shared_intents.values() if intent.response]
    for flow in flowset.flows.values():
        if "voice" not in flow.channels:
            continue
        found += [response.voice for response in flow.responses.values()]
        found += [flow.confirm.voice] if flow.confirm else []
        found += [said.voice for slot in flow.slots if slot.asked_on("voice") for said in slot.wordings().values()]
    found += [said.voice for slot in flowset.identity_slots if slot.asked_on("voice")
              for said in slot.wordings().values()]
    return list(dict.fromkeys(text.strip() for text in found if text and text.strip()))


def texts_to_render(wordings: Iterable[str]) -> list[str]:
    """The texts Kokoro renders for these wordings: whole fixed ones, fixed parts of templates."""
    found: list[str] = []
    for wording in wordings:
        template = Template(wording)
        found += [wording] if template.is_fixed else [part.strip() for part in template.spoken_parts()]
    return list(dict.fromkeys(found))


class PromptCache:
    """Kokoro renderings on disk, at `sample_rate`, for one voice and its two speeds."""

    def __init__(self, folder: Path, model_id: str, voice: str, speeds: tuple[float, float],
                 pronunciations: Pronunciations) -> None:
        self.folder = folder
        self.model_id = model_id
        self.voice = voice
        self.speeds = speeds  # normal, slow
        self.pronunciations = pronunciations

    def speed(self, slow: bool) -> float:
        return self.speeds[1] if slow else self.speeds[0]

    def key(self, text: str, slow: bool) -> str:
        reading = self.pronunciations.for_espeak(text)  # the dictionary's pinyin for the words in it
        identity = "\n".join((self.model_id, self.voice, repr(self.speed(slow)), text, reading))
        return hashlib.sha256(identity.encode("utf-8")).hexdigest()

    def path(self, text: str, slow: bool) -> Path:
        key = self.key(text, slow)
        return self.folder / key[:2] / f"{key}.pcm"

    def load(self, text: str, slow: bool) -> tuple[bytes, int] | None:
        """(PCM, sample rate) of the rendering, or None if there is none or it is damaged."""
        path = self.path(text, slow)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            log.warning("cannot read the cached prompt %s: %s", path.name, error)
            return None
        if len(data) >= _HEADER.size:
            magic, rate, length, digest = _HEADER.unpack_from(data)
            pcm = data[_HEADER.size:]
            if magic == _MAGIC and len(pcm) == length and rate > 0 and hashlib.sha256(pcm).digest() == digest:
                return pcm, rate
        log.warning("the cached prompt %s is damaged: ignored (it is rendered again)", path.name)
        return None

    def has(self, text: str, slow: bool) -> bool:
        return self.load(text, slow) is not None

    def store(self, text: str, slow: bool, pcm: bytes, sample_rate: int) -> Path:
        path = self.path(text, slow)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = _HEADER.pack(_MAGIC, sample_rate, len(pcm), hashlib.sha256(pcm).digest())
        handle, staging = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(header + pcm)
            os.replace(staging, path)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise
        return path


class RenderedPrompts:
    """What the synthesiser asks: is this text, or the template it fills in, pre-rendered?"""

    def __init__(self, cache: PromptCache, wordings: Iterable[str]) -> None:
        self.cache = cache
        templates = [Template(wording) for wording in dict.fromkeys(wordings)]
        self.fixed = frozenset(template.text for template in templates if template.is_fixed)
        self.templates = [template for template in templates if not template.is_fixed and template.spoken_parts()]

    def expects(self, text: str) -> bool:
        """Whether `text` is one of the wordings, so that a rendering of it will exist once pre-rendered."""
        return text in self.fixed or any(template.pattern.fullmatch(text) for template in self.templates)

    def pieces(self, text: str, slow: bool) -> list[tuple[bytes, int] | str] | None:
        """The text as pre-rendered audio ((PCM, rate)) and live text (str) in order; None when
        nothing of it is pre-rendered. Reads files: call it off the event loop."""
        whole = self.cache.load(text, slow)
        if whole is not None:
            return [whole]
        for template in self.templates:
            split = template.split(text)
            if split is None:
                continue
            pieces: list[tuple[bytes, int] | str] = []
            for piece, fixed in split:
                if not fixed:
                    pieces.append(piece)
                elif SPOKEN.search(piece):
                    rendered = self.cache.load(piece.strip(), slow)
                    if rendered is None:
                        break  # this template is not rendered yet
                    pieces.append(rendered)
            else:
                return pieces
        return None
