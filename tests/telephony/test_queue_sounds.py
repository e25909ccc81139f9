"""`python -m telephony.queue_sounds`: the Chinese prompts and hold music Asterisk plays without the
bot, as 8 kHz 16-bit mono WAV files where ivr_config/asterisk/*.conf expects them."""

from __future__ import annotations

import re
import wave
from pathlib import Path

import numpy as np
import pytest

from flowspec.model import load_flowset
from outbound.campaigns import load_campaigns
from telephony.queue_sounds import HOLD_MUSIC, LANGUAGE, MOH_CLASS, PROMPTS, main, sounds
from tests.telephony.test_asterisk_config import moh_directory, referenced_sounds
from voice.audio import FULL_SCALE, TELEPHONE_RATE, level_dbfs, samples

QUIET_SAMPLE = 100  # ≈ -50 dBFS: below this the caller hears nothing


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("asterisk-sounds")
    assert main([str(output)]) == 0
    return output


def read_wav(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getcomptype()) == \
            (1, 2, TELEPHONE_RATE, "NONE"), f"{path}: not 8 kHz 16-bit mono PCM"
        return wav.readframes(wav.getnframes())


def seconds(pcm: bytes) -> float:
    return len(pcm) / 2 / TELEPHONE_RATE


def longest_quiet_seconds(pcm: bytes) -> float:
    quiet = np.abs(samples(pcm).astype(np.int32)) < QUIET_SAMPLE
    edges = np.flatnonzero(np.diff(np.concatenate(([0], quiet.astype(np.int8), [0]))))
    runs = edges[1::2] - edges[::2]
    return float(runs.max(initial=0)) / TELEPHONE_RATE


def test_writes_one_file_per_prompt_and_the_hold_music(rendered: Path) -> None:
    files = {path.relative_to(rendered).as_posix() for path in rendered.rglob("*") if path.is_file()}
    assert files == {f"sounds/{LANGUAGE}/{name}.wav" for name in sounds()} | {f"moh/{MOH_CLASS}/{HOLD_MUSIC}.wav"}


@pytest.mark.parametrize("name", sorted(sounds()))
def test_each_prompt_is_audible_speech_as_long_as_its_words(rendered: Path, name: str) -> None:
    pcm = read_wav(rendered / "sounds" / LANGUAGE / f"{name}.wav")
    syllables = len(re.findall(r"[\u4e00-\u9fff]", sounds()[name]))
    # A calm IVR pace: between 2 and 6 syllables a second, pauses included.
    assert syllables / 6 < seconds(pcm) < syllables / 2
    assert level_dbfs(pcm) > -30
    assert longest_quiet_seconds(pcm) < 1.0


def test_hold_music_is_a_soft_tone_pattern_without_dead_air(rendered: Path) -> None:
    pcm = read_wav(rendered / "moh" / MOH_CLASS / f"{HOLD_MUSIC}.wav")
    values = samples(pcm).astype(np.float64)
    assert seconds(pcm) >= 10
    assert -40 < level_dbfs(pcm) < -15
    assert np.abs(values).max() < 0.5 * FULL_SCALE, "hold music louder than it needs to be"
    assert longest_quiet_seconds(pcm) < 2.0, "a caller would think the line went dead"
    # Tones, not noise or hum: the energy sits where the notes are.
    power = np.abs(np.fft.rfft(values)) ** 2
    frequencies = np.fft.rfftfreq(values.size, 1 / TELEPHONE_RATE)
    assert power[(frequencies > 400) & (frequencies < 2000)].sum() > 0.9 * power.sum()


def test_every_sound_the_configuration_plays_is_rendered(rendered: Path) -> None:
    sounds = referenced_sounds()
    assert sounds, "no sound names found in ivr_config/asterisk"
    for name in sounds:
        assert (rendered / "sounds" / LANGUAGE / f"{name}.wav").is_file(), f"{name} is not rendered"
    # musiconhold.conf's directory is relative to Asterisk's data directory, which `rendered` mirrors.
    assert [path.name for path in (rendered / moh_directory()).glob("*.wav")] == [f"{HOLD_MUSIC}.wav"]


def test_each_campaign_message_to_a_machine_is_rendered_under_the_name_the_dialler_sends(rendered: Path) -> None:
    messages = [c.machine for c in load_campaigns(load_flowset()).values() if c.machine.behaviour == "message"]
    assert messages, "no shipped campaign leaves a message: nothing to check"
    for machine in messages:
        assert machine.prompt not in PROMPTS
        assert (rendered / "sounds" / LANGUAGE / f"{machine.prompt}.wav").is_file(), machine.prompt
