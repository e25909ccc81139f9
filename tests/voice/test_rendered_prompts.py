"""Pre-rendered prompts: the disk cache, its keys, damaged files, and the synthesiser using it
before espeak-ng. The cached audio here is a generated tone (not Kokoro), so that what comes
out can be told apart from espeak-ng's speech; test_kokoro.py renders with the real model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flowspec.model import repository_flowset
from voice.audio import resample
from voice.pronunciation import Pronunciations
from voice.rendered_prompts import PromptCache, RenderedPrompts, Template, texts_to_render, voice_wordings
from voice.tts import Synthesizer

GREETING = "您好，请讲。"
QUEUE = "您前面还有{queue.ahead}位客户，请稍候。"
READINGS = Pronunciations({"还款": ("huan2", "kuan3")})


def tone(seconds: float, rate: int = 8000, hertz: float = 440.0) -> bytes:
    times = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * hertz * times)).astype("<i2").tobytes()


def cache_in(folder: Path, voice: str = "jf_gongitsune", speeds: tuple[float, float] = (1.0, 0.8),
             readings: Pronunciations = READINGS) -> PromptCache:
    return PromptCache(folder, "model-sha", voice, speeds, readings)


def test_a_stored_rendering_comes_back_for_its_text_and_speed_only(tmp_path: Path) -> None:
    cache = cache_in(tmp_path)
    cache.store(GREETING, False, tone(0.5), 8000)
    assert cache.load(GREETING, False) == (tone(0.5), 8000)
    assert cache.load(GREETING, True) is None  # slow is its own rendering
    assert cache.load("您好。", False) is None


def test_the_key_holds_text_voice_speed_model_and_reading(tmp_path: Path) -> None:
    base = cache_in(tmp_path)
    keys = {base.key(GREETING, False), base.key(GREETING, True), base.key("您好。", False),
            cache_in(tmp_path, voice="jm_kumo").key(GREETING, False),
            cache_in(tmp_path, speeds=(1.1, 0.8)).key(GREETING, False),
            PromptCache(tmp_path, "other-model", "jf_gongitsune", (1.0, 0.8), READINGS).key(GREETING, False)}
    assert len(keys) == 6
    assert cache_in(tmp_path).key(GREETING, False) == base.key(GREETING, False)  # stable across instances
    # A dictionary edit re-renders only the prompts whose reading it changes.
    other_reading = cache_in(tmp_path, readings=Pronunciations({"还款": ("hai2", "kuan3")}))
    assert other_reading.key(GREETING, False) == base.key(GREETING, False)
    assert other_reading.key("请按时还款。", False) != base.key("请按时还款。", False)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_a_damaged_file_is_ignored(tmp_path: Path, damage: str) -> None:
    cache = cache_in(tmp_path)
    path = cache.store(GREETING, False, tone(0.5), 8000)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:-100]
    elif damage == "flip":
        data[-10] ^= 0xFF
    elif damage == "garbage":
        data = bytearray(b"RIFF" + bytes(200))
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    assert cache.load(GREETING, False) is None
    assert not cache.has(GREETING, False)


def test_templates_split_into_fixed_parts_and_the_words_filled_in() -> None:
    template = Template(QUEUE)
    assert template.parts == ("您前面还有", "位客户，请稍候。")
    assert template.split("您前面还有3位客户，请稍候。") == [
        ("您前面还有", True), ("3", False), ("位客户，请稍候。", True)]
    assert template.split("请稍候。") is None
    assert Template("{a}，{b}").spoken_parts() == []  # bare punctuation says nothing
    assert texts_to_render([GREETING, QUEUE, GREETING, "{x}"]) == [GREETING, "您前面还有", "位客户，请稍候。"]


def test_the_wordings_cover_the_channel_prompts_and_the_flows() -> None:
    wordings = voice_wordings(["渠道自己的提示。"])
    assert wordings[0] == "渠道自己的提示。"
    assert "请问还有什么可以帮您？" in wordings  # flows/shared/responses.yml, voice
    assert QUEUE in wordings
    code = next(slot for slot in repository_flowset().identity_slots if slot.name == "otp_code")
    assert code.help and code.reprompt and {code.help.voice, code.reprompt.voice} < set(wordings), \
        "a slot's help and reprompt are said too"
    assert all("{" not in text for text in texts_to_render(wordings))
    assert len(wordings) == len(set(wordings))


async def test_the_synthesizer_says_a_cached_prompt_and_espeak_says_the_rest(tmp_path: Path) -> None:
    cache = cache_in(tmp_path)
    cache.store(GREETING, False, tone(0.5), 8000)
    synthesizer = Synthesizer(prompts=RenderedPrompts(cache, [GREETING]))
    assert await synthesizer.render(GREETING, 8000) == tone(0.5)  # hit: the cached rendering as it is
    assert await synthesizer.render(GREETING, 16000) == resample(tone(0.5), 8000, 16000)  # at the call's rate
    assert (synthesizer.prerendered_count, synthesizer.synthesis_count) == (2, 0)
    live = await synthesizer.render("您的账单已经发送。", 8000)  # not a prompt: espeak-ng
    slow = await synthesizer.render(GREETING, 8000, slow=True)  # the slow rendering is missing: espeak-ng
    assert synthesizer.synthesis_count == 2
    assert live and slow and tone(0.5) not in (live, slow)
    synthesizer.close()


async def test_a_prompt_switches_to_the_cached_voice_once_it_is_rendered(tmp_path: Path) -> None:
    cache = cache_in(tmp_path)
    synthesizer = Synthesizer(prompts=RenderedPrompts(cache, [GREETING]))
    stand_in = await synthesizer.render(GREETING, 8000)
    assert await synthesizer.render(GREETING, 8000) == stand_in
    assert synthesizer.synthesis_count == 1  # the stand-in is kept while the rendering is missing
    cache.store(GREETING, False, tone(0.4), 8000)  # the background prerender got to it
    assert await synthesizer.render(GREETING, 8000) == tone(0.4)
    assert synthesizer.synthesis_count == 1
    synthesizer.close()


async def test_a_damaged_rendering_falls_back_to_espeak(tmp_path: Path) -> None:
    cache = cache_in(tmp_path)
    path = cache.store(GREETING, False, tone(0.5), 8000)
    path.write_bytes(path.read_bytes()[:-2])
    synthesizer = Synthesizer(prompts=RenderedPrompts(cache, [GREETING]))
    speech = await synthesizer.render(GREETING, 8000)
    assert speech != tone(0.5)[:-2] and synthesizer.synthesis_count == 1
    synthesizer.close()


async def test_a_filled_in_template_plays_its_cached_parts_around_live_words(tmp_path: Path) -> None:
    cache = cache_in(tmp_path)
    synthesizer = Synthesizer(prompts=RenderedPrompts(cache, [QUEUE]))
    text = "您前面还有3位客户，请稍候。"
    await synthesizer.render(text, 8000)  # parts not rendered yet: espeak-ng says it all
    assert (synthesizer.synthesis_count, synthesizer.prerendered_count) == (1, 0)
    cache.store("您前面还有", False, tone(0.3, hertz=300), 8000)
    cache.store("位客户，请稍候。", False, tone(0.4, hertz=500), 8000)
    three = await Synthesizer().render("3", 8000)
    pcm = await synthesizer.render(text, 8000)
    assert synthesizer.prerendered_count == 1 and synthesizer.synthesis_count == 2  # only "3" said live
    assert pcm.startswith(tone(0.3, hertz=300)) and pcm.endswith(tone(0.4, hertz=500))
    assert len(pcm) == pytest.approx(len(tone(0.3)) + len(three) + len(tone(0.4)), abs=200)
    synthesizer.close()
