"""Kokoro with the packaged model: Mandarin phonemes with the polyphone dictionary, a short prompt
at the phone's 8 kHz, and the prerender that fills (and repairs) the cache. Renders are kept to
a few short prompts: each costs about a CPU-second."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from voice.audio import level_dbfs, samples
from voice.kokoro import KokoroConfig, KokoroUnavailable, KokoroVoice, prerender, prompt_cache, start_prerender
from voice.rendered_prompts import RenderedPrompts
from voice.tts import Synthesizer

SHORT_PROMPT = "您好，请讲。"


@pytest.fixture(scope="module")
def kokoro() -> KokoroVoice:
    return KokoroVoice(KokoroConfig())


def test_kokoro_reads_huan_kuan_with_the_dictionary(kokoro: KokoroVoice) -> None:
    phonemes = kokoro.phonemes("请问您要提前还款吗？")
    assert "xwa↗nkʰwa↓n" in phonemes  # huán kuǎn (second and third tone)
    assert "xai↗" not in phonemes  # hái
    assert "xa↗ŋ" in kokoro.phonemes("银行")  # háng
    assert kokoro.phonemes("重新").startswith("ꭧʰʊ↗ŋ")  # chóng
    assert "xai↗" in kokoro.phonemes("还有什么可以帮您")  # hái stays hái where it is


def test_a_short_prompt_renders_at_8_khz_with_speech(kokoro: KokoroVoice) -> None:
    pcm = kokoro.render(SHORT_PROMPT, sample_rate=8000)
    duration = len(pcm) / 2 / 8000
    assert len(pcm) % 2 == 0
    assert len(SHORT_PROMPT) / 8 < duration < len(SHORT_PROMPT) / 2  # 4 syllables and a pause
    assert level_dbfs(pcm) > -30
    assert np.count_nonzero(np.abs(samples(pcm).astype(np.int32)) >= 32767) == 0  # not clipped
    assert kokoro.render("。，", sample_rate=8000) == b""


async def test_prerender_fills_the_cache_and_replaces_a_damaged_file(kokoro: KokoroVoice, tmp_path: Path) -> None:
    cache = prompt_cache(KokoroConfig(cache_dir=str(tmp_path)), kokoro.pronunciations)
    texts = ["好的。"]
    assert prerender(kokoro, cache, texts, max_seconds=600) == {"rendered": 2, "present": 0, "finished": True}
    normal, slow = cache.load("好的。", False), cache.load("好的。", True)
    assert normal is not None and slow is not None and normal[1] == slow[1] == 8000
    assert len(slow[0]) > len(normal[0])  # slow speed speaks more slowly
    assert prerender(kokoro, cache, texts, max_seconds=600) == {"rendered": 0, "present": 2, "finished": True}
    path = cache.path("好的。", False)
    path.write_bytes(path.read_bytes()[:-50])
    assert prerender(kokoro, cache, texts, max_seconds=600) == {"rendered": 1, "present": 1, "finished": True}
    repaired = cache.load("好的。", False)
    assert repaired is not None and level_dbfs(repaired[0]) > -30
    synthesizer = Synthesizer(prompts=RenderedPrompts(cache, texts))
    assert await synthesizer.render("好的。", 8000) == repaired[0]
    assert synthesizer.synthesis_count == 0
    synthesizer.close()


def test_prerender_stops_at_its_time_limit(kokoro: KokoroVoice, tmp_path: Path) -> None:
    cache = prompt_cache(KokoroConfig(cache_dir=str(tmp_path)), kokoro.pronunciations)
    assert prerender(kokoro, cache, ["好的。"], max_seconds=-1) == {"rendered": 0, "present": 0, "finished": False}


def test_prerender_stops_when_the_gateway_that_started_it_is_gone(kokoro: KokoroVoice, tmp_path: Path) -> None:
    cache = prompt_cache(KokoroConfig(cache_dir=str(tmp_path)), kokoro.pronunciations)
    gone = os.getppid() + 1  # not this process's parent: as if the parent had died
    assert prerender(kokoro, cache, ["好的。"], max_seconds=600, parent=gone)["finished"] is False
    assert not cache.has("好的。", False)


async def test_the_background_prerender_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert await start_prerender(KokoroConfig(prerender_at_start=False)) is None
    assert await start_prerender(KokoroConfig(enabled=False)) is None
    monkeypatch.setenv("KOKORO_PRERENDER_AT_START", "0")
    assert await start_prerender(KokoroConfig()) is None


def test_an_unknown_voice_is_a_clear_error() -> None:
    with pytest.raises(KokoroUnavailable, match="no voice 'zf_nobody'"):
        KokoroVoice(KokoroConfig(voice="zf_nobody")).phonemes("你好")


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="slow_speed"):
        KokoroConfig(slow_speed=0.1)
