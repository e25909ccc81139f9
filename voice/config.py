"""The voice settings: `ivr_config/voice.yaml`, checked against the settings' own dataclasses.

Each YAML section maps onto one engine's config dataclass, key for key, so the dataclasses are
the schema: an unknown key, a wrong type or broken YAML is an error naming the file and the
field. `${NAME}` in a string is taken from the environment (the Vosk and Whisper model paths).
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from voice.asr import AsrConfig
from voice.barge_in import BargeInConfig
from voice.detection import DetectionConfig
from voice.tts import TtsConfig
from voice.turns import TurnConfig
from voice.whisper import WhisperConfig

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "ivr_config" / "voice.yaml"
ENV_REFERENCE = re.compile(r"\$\{([A-Z0-9_]+)\}")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class VoiceConfig:
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    barge_in: BargeInConfig = field(default_factory=BargeInConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    whisper: WhisperConfig = field(default_factory=WhisperConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)
    turns: TurnConfig = field(default_factory=TurnConfig)


def load_voice_config(path: Path = DEFAULT_PATH) -> VoiceConfig:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read voice settings: {error}") from error
    return _build(VoiceConfig, data, f"{path}")


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(fields))})")
    values = {name: _value(hints[name], raw, f"{where}: {name}") for name, raw in data.items()}
    try:
        return cls(**values)
    except ValueError as error:  # the dataclass's own checks (ranges, consistency)
        raise ConfigError(f"{where}: {error}") from error


def _value(hint: Any, raw: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, raw, where)
    if isinstance(raw, str):
        raw = ENV_REFERENCE.sub(lambda match: os.environ.get(match.group(1), ""), raw)
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if raw in (None, "") and type(None) in options:
        return None
    for option in options:
        origin = typing.get_origin(option) or option
        if origin is float and isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        if origin is dict and isinstance(raw, dict):
            return {str(key): str(value) for key, value in raw.items()}
        if origin in (int, str, bool) and type(raw) is origin:
            return raw
    raise ConfigError(f"{where}: expected {hint}, got {raw!r}")
