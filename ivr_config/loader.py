"""One way to read a YAML configuration file: parse it, check it against its JSON schema, and
on any problem raise an error that names the file, the line or the field, and what is wrong."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """A configuration file is missing, unreadable, not YAML or not what its schema says."""


def field_name(parts: Iterable[str | int]) -> str:
    """`tiers[0].when` from a JSON path."""
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name or "(top level)"


def load_yaml(path: Path | str, schema: Path | Mapping[str, Any], error: type[ConfigError] = ConfigError) -> Any:
    """The file's data, valid against the schema (a JSON file, or the schema itself when code
    derives it); `error` (a ConfigError) for anything else."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as problem:
        raise error(f"{path}: cannot read: {problem.strerror}") from None
    except yaml.YAMLError as problem:
        mark = getattr(problem, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        reason = getattr(problem, "problem", None) or str(problem)
        raise error(f"{path}: {where}invalid YAML: {reason}") from None
    except ValueError as problem:  # a value YAML parses but cannot build, such as the date 2026-13-01
        raise error(f"{path}: invalid value: {problem}") from None
    if isinstance(schema, Path):
        schema = json.loads(schema.read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        raise error(f"{path}: {field_name(first.absolute_path)}: {first.message}")
    return data
