"""The voice settings: `ivr_config/voice.yaml`, read by the one YAML loader (ivr_config/loader.py).

Each YAML section maps onto one engine's config dataclass, key for key, so the dataclasses are
the schema: the JSON schema the loader checks is derived from them, and an unknown key, a wrong
type or broken YAML is an error naming the file and the field. The dataclasses' own checks
(ranges, consistency) name the file and the section. `${NAME}` in a string is taken from the
environment (the Vosk and Whisper model paths, the turn models' folder).
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

from ivr_config.loader import ConfigError, field_name, load_yaml
from voice.asr import AsrConfig
from voice.barge_in import BargeInConfig
from voice.detection import DetectionConfig
from voice.kokoro import KokoroConfig
from voice.tts import TtsConfig
from voice.turn_models import TurnModelsConfig
from voice.turns import TurnConfig
from voice.whisper import WhisperConfig

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "ivr_config" / "voice.yaml"
ENV_REFERENCE = re.compile(r"\$\{([A-Z0-9_]+)\}")
JSON_TYPES: dict[Any, str] = {bool: "boolean", int: "integer", float: "number", str: "string"}


@dataclass(frozen=True)
class VoiceConfig:
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    barge_in: BargeInConfig = field(default_factory=BargeInConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    whisper: WhisperConfig = field(default_factory=WhisperConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)
    kokoro: KokoroConfig = field(default_factory=KokoroConfig)
    turns: TurnConfig = field(default_factory=TurnConfig)
    turn_models: TurnModelsConfig = field(default_factory=TurnModelsConfig)


def load_voice_config(path: Path = DEFAULT_PATH) -> VoiceConfig:
    data = load_yaml(path, {**json_schema(VoiceConfig), "type": ["object", "null"]}) or {}  # an empty file: defaults
    return _build(VoiceConfig, data, path, ())


def json_schema(hint: Any) -> dict[str, Any]:
    """The JSON schema of a settings dataclass (or of one field's type hint)."""
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return {"type": "object", "additionalProperties": False,
                "properties": {item.name: json_schema(hints[item.name]) for item in dataclasses.fields(hint)}}
    if isinstance(hint, types.UnionType):  # `str | None`, `float | None`: an optional setting
        return {"type": [json_schema(option)["type"] for option in typing.get_args(hint)]}
    if hint is type(None):
        return {"type": "null"}
    if typing.get_origin(hint) is dict:  # keys are always strings in JSON; a YAML `1:` counts as "1"
        return {"type": "object", "additionalProperties": json_schema(typing.get_args(hint)[1])}
    return {"type": JSON_TYPES[hint]}


def _build(cls: type, data: dict[str, Any], path: Path, where: tuple[str, ...]) -> Any:
    hints = typing.get_type_hints(cls)
    values = {name: _value(hints[name], raw, path, (*where, name)) for name, raw in data.items()}
    try:
        return cls(**values)
    except ValueError as error:  # the dataclass's own checks (ranges, consistency)
        raise ConfigError(f"{path}: {field_name(where)}: {error}") from error


def _value(hint: Any, raw: Any, path: Path, where: tuple[str, ...]) -> Any:
    """`raw`, already valid against the schema, as the field's type."""
    if dataclasses.is_dataclass(hint):
        return _build(hint, raw, path, where)
    if isinstance(raw, str):
        raw = ENV_REFERENCE.sub(lambda match: os.environ.get(match.group(1), ""), raw)
        if raw == "" and isinstance(hint, types.UnionType):  # an unset variable: the optional setting left out
            return None
    if hint is float:
        return float(raw)
    if isinstance(raw, dict):
        return {str(key): value for key, value in raw.items()}
    return raw
