"""Speech synthesis with pyttsx3 on espeak-ng's Mandarin voice, rendered for an 8 kHz phone line."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from voice.audio import level_dbfs, samples
from voice.tts import ESPEAK_RATE, Synthesizer, TtsConfig, TtsUnavailable, trim_silence

PROMPT = "您好，这里是消费金融客服中心。请问有什么可以帮您？"
HANZI_IN_PROMPT = 22


def seconds(pcm: bytes, rate: int) -> float:
    return len(pcm) / 2 / rate


def quiet_edges_ms(pcm: bytes, rate: int, threshold: int = 300) -> tuple[float, float]:
    values = np.abs(samples(pcm).astype(np.int32))
    loud = np.flatnonzero(values > threshold)
    return loud[0] * 1000 / rate, (values.size - 1 - loud[-1]) * 1000 / rate


@pytest.fixture
def synthesizer():
    synthesizer = Synthesizer(TtsConfig())
    yield synthesizer
    synthesizer.close()


async def test_mandarin_renders_at_the_calls_rate_with_a_plausible_length(synthesizer: Synthesizer) -> None:
    pcm = await synthesizer.render(PROMPT, 8000)
    duration = seconds(pcm, 8000)
    assert len(pcm) % 2 == 0
    # 22 syllables and two pauses at a calm IVR pace: between 2 and 6 syllables a second.
    assert HANZI_IN_PROMPT / 6 < duration < HANZI_IN_PROMPT / 2
    assert level_dbfs(pcm) > -30
    wideband = await synthesizer.render(PROMPT, 16000)
    assert seconds(wideband, 16000) == pytest.approx(duration, abs=0.05)  # espeak-ng varies by a few ms between renders
    assert len(wideband) == pytest.approx(2 * len(pcm), rel=0.02)


async def test_audio_is_not_clipped(synthesizer: Synthesizer) -> None:
    values = samples(await synthesizer.render(PROMPT, 8000))
    assert np.count_nonzero(np.abs(values.astype(np.int32)) >= 32767) == 0


async def test_slow_mode_speaks_more_slowly(synthesizer: Synthesizer) -> None:
    normal = await synthesizer.render(PROMPT, 8000)
    slow = await synthesizer.render(PROMPT, 8000, slow=True)
    assert seconds(slow, 8000) > 1.2 * seconds(normal, 8000)
    # and back: the rate of one render never leaks into the next
    again = await Synthesizer().render(PROMPT, 8000)
    assert seconds(again, 8000) == pytest.approx(seconds(normal, 8000), abs=0.05)


async def test_a_cached_prompt_is_not_synthesised_again(synthesizer: Synthesizer) -> None:
    first = await synthesizer.render(PROMPT, 8000)
    assert synthesizer.synthesis_count == 1
    assert await synthesizer.render(PROMPT, 8000) == first
    assert synthesizer.synthesis_count == 1
    await synthesizer.render(PROMPT, 16000)
    await synthesizer.render(PROMPT, 8000, slow=True)
    assert synthesizer.synthesis_count == 3  # rate and speed are part of the cache key


async def test_prerender_warms_the_cache(synthesizer: Synthesizer) -> None:
    await synthesizer.prerender(["请稍候。", "再见。", "请稍候。"], 8000)
    assert synthesizer.synthesis_count == 2
    await synthesizer.render("再见。", 8000)
    assert synthesizer.synthesis_count == 2


async def test_the_cache_forgets_the_least_recently_used_prompt() -> None:
    synthesizer = Synthesizer(TtsConfig(cache_size=2))
    for text in ("一", "二", "一", "三"):
        await synthesizer.render(text, 8000)
    assert synthesizer.synthesis_count == 3
    await synthesizer.render("一", 8000)  # kept: used more recently than 二
    assert synthesizer.synthesis_count == 3
    await synthesizer.render("二", 8000)
    assert synthesizer.synthesis_count == 4


async def test_concurrent_renders_from_many_coroutines_are_each_correct() -> None:
    # Prefixes of different lengths: each text has its own duration, so a render that came back
    # for the wrong request, or two renders run together, shows. (espeak's samples are not
    # bit-exact from run to run; durations are, to a few milliseconds.)
    texts = [PROMPT[:length] for length in range(2, len(PROMPT) + 1, 2)]
    reference = Synthesizer()
    expected = {text: seconds(await reference.render(text, 8000), 8000) for text in texts}
    assert len({round(duration, 2) for duration in expected.values()}) == len(texts)
    concurrent = Synthesizer()
    requests = texts * 3
    results = await asyncio.gather(*(concurrent.render(text, 8000, slow=text in texts[::3]) for text in requests))
    for text, pcm in zip(requests, results, strict=True):
        if text not in texts[::3]:
            assert seconds(pcm, 8000) == pytest.approx(expected[text], abs=0.05), text
        assert level_dbfs(pcm) > -30
    assert concurrent.synthesis_count == len(texts)  # the same prompt asked for at once is synthesised once


async def test_replies_start_and_end_without_long_silence(synthesizer: Synthesizer) -> None:
    lead_ms, tail_ms = quiet_edges_ms(await synthesizer.render(PROMPT, 8000), 8000)
    assert lead_ms <= 40
    assert tail_ms <= 120  # espeak itself leaves about 300 ms after the last syllable


def test_trim_silence_keeps_short_pads_around_the_speech() -> None:
    tone = (8000 * np.sin(np.arange(ESPEAK_RATE // 10) / 5)).astype("<i2").tobytes()
    padded = b"\x00\x00" * ESPEAK_RATE + tone + b"\x00\x00" * ESPEAK_RATE
    trimmed = trim_silence(padded, ESPEAK_RATE)
    assert 0.1 < seconds(trimmed, ESPEAK_RATE) < 0.25
    assert trim_silence(b"\x00\x00" * 1000, ESPEAK_RATE) == b""


async def test_empty_text_gives_no_audio_and_control_characters_are_not_commands(synthesizer) -> None:
    assert await synthesizer.render("  \n ", 8000) == b""
    assert synthesizer.synthesis_count == 0
    # \x01 starts an espeak embedded command: "\x0180S" would drop the speed to 80 words a minute.
    injected = await synthesizer.render("\x0180S" + PROMPT, 8000)
    assert seconds(injected, 8000) < 1.3 * seconds(await synthesizer.render(PROMPT, 8000), 8000)


async def test_a_closed_synthesizer_refuses_to_render() -> None:
    synthesizer = Synthesizer()
    synthesizer.close()
    with pytest.raises(RuntimeError, match="closed"):
        await synthesizer.render("你好", 8000)


def test_an_unknown_voice_is_a_clear_error() -> None:
    with pytest.raises(TtsUnavailable, match="no voice 'klingon'"):
        Synthesizer(TtsConfig(voice="klingon"))
