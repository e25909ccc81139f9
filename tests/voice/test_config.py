"""ivr_config/voice.yaml: the shipped file loads, and every mistake names the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowspec.model import load_flowset
from ivr_config.loader import ConfigError
from voice.barge_in import BargeInConfig
from voice.config import load_voice_config
from voice.detection import DetectionConfig


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "voice.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_settings_load_and_the_keypad_menu_names_real_flows() -> None:
    config = load_voice_config()
    flows = load_flowset().flows
    assert config.turns.keypad_menu
    assert all(flow in flows for flow in config.turns.keypad_menu.values())


def test_shipped_detection_and_barge_in_settings_are_the_measured_defaults() -> None:
    """The detector tests and `make bench` run the code's defaults: the shipped file must not
    drift from what they measured."""
    config = load_voice_config()
    assert config.detection == DetectionConfig()
    assert config.barge_in == BargeInConfig()


def test_the_talker_gate_can_be_turned_off(tmp_path: Path) -> None:
    assert load_voice_config(write(tmp_path, "barge_in:\n  talker_margin_db: null\n")).barge_in.talker_margin_db is None


def test_model_path_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "asr:\n  model_path: ${VOSK_MODEL_PATH}\n")
    monkeypatch.setenv("VOSK_MODEL_PATH", "/opt/models/vosk-model-small-cn-0.22")
    assert load_voice_config(path).asr.model_path == "/opt/models/vosk-model-small-cn-0.22"
    monkeypatch.delenv("VOSK_MODEL_PATH")
    assert load_voice_config(path).asr.model_path is None


@pytest.mark.parametrize(("text", "named"), [
    ("detection:\n  vad_agressiveness: 2\n", "detection: Additional properties are not allowed ('vad_agressiveness'"),
    ("detection:\n  vad_aggressiveness: loud\n", "detection.vad_aggressiveness: 'loud' is not of type 'integer'"),
    ("detection:\n  vad_aggressiveness: 7\n", "detection: vad_aggressiveness must be 0-3"),
    ("detection:\n  pause_ms: 700\n", "detection: pause_ms must be 0 (off) or from one frame (20 ms) to below"),
    ("barge_in: [1, 2]\n", "barge_in: [1, 2] is not of type 'object'"),
    ("turns:\n  no_input_timeout_ms: 7000\n   digit_timeout_ms: 1\n", "line 3, column 20: invalid YAML"),
    ("tts:\n  rate: fast\n", "tts.rate: 'fast' is not of type 'integer'"),
    ("turn_models:\n  complete_probability: 2\n", "turn_models: complete_probability must be between 0 and 1"),
    ("turn_models:\n  check_after_silence_ms: 250\n", "turn_models: check_after_silence_ms must be a positive"),
    ("barge_in:\n  backchannel_max_ms: 20\n", "barge_in: backchannel_max_ms must be 0 (off) or at least min_speech_ms"),
    ("barge_in:\n  resume_after_ms: 0\n", "barge_in: resume_after_ms must be at least one frame (20 ms)"),
    ("turns:\n  prompts:\n    goodbye: [再见]\n", "turns.prompts.goodbye: ['再见'] is not of type 'string'"),
    ("barge_in:\n  talker_margin_db: 0\n", "barge_in: talker_margin_db must be positive, or null"),
    ("barge_in:\n  talker_margin_db: far\n", "barge_in.talker_margin_db: 'far' is not of type 'number', 'null'"),
])
def test_a_mistake_is_an_error_naming_file_and_field(tmp_path: Path, text: str, named: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_voice_config(path)
    assert str(path) in str(error.value) and named in str(error.value)


def test_an_empty_file_is_the_defaults_and_a_numbered_key_is_a_key(tmp_path: Path) -> None:
    assert load_voice_config(write(tmp_path, "")) == load_voice_config(write(tmp_path, "{}\n"))
    config = load_voice_config(write(tmp_path, "turns:\n  keypad_menu:\n    1: bill_inquiry\ntts:\n  volume: 1\n"))
    assert config.turns.keypad_menu == {"1": "bill_inquiry"} and config.tts.volume == 1.0
