"""One registry of slot types (flowspec/slot_types.py): the flow schema's enum, the dialogue
core's validators and the phone's keypad and grammar handling all name the same types."""

from __future__ import annotations

import json
from pathlib import Path

from bot.actions.validators import VALIDATORS
from flowspec.model import repository_flowset
from flowspec.slot_types import SLOT_TYPES, types_with
from voice.asr import grammar_for
from voice.turns import DIGIT_ANSWERS, KEYED_ANSWERS

SCHEMA = Path(__file__).resolve().parents[2] / "flows" / "schema.json"


def test_the_flow_schema_enum_lists_exactly_the_registered_types() -> None:
    slot = json.loads(SCHEMA.read_text(encoding="utf-8"))["$defs"]["slot"]
    assert sorted(slot["properties"]["type"]["enum"]) == sorted(SLOT_TYPES)


def test_every_type_has_a_validator_and_every_flows_slot_a_registered_type() -> None:
    assert set(VALIDATORS) == set(SLOT_TYPES)
    used = {slot.type for flow in repository_flowset().flows.values() for slot in flow.slots}
    assert used <= set(SLOT_TYPES)


def test_the_phone_reads_keypad_answers_and_grammars_from_the_registry() -> None:
    assert types_with("digits") == DIGIT_ANSWERS and types_with("key") == KEYED_ANSWERS
    for name in types_with("digits"):
        assert "幺" in (grammar_for({"type": name}) or []), name  # said digit by digit
    for name in types_with("speech"):
        assert grammar_for({"type": name}) is None, name  # free recognition


def test_what_is_personal_is_neither_logged_nor_shown_in_full() -> None:
    for name in ("digits", "phone", "text"):
        assert not SLOT_TYPES[name].loggable
    assert {name for name, slot_type in SLOT_TYPES.items() if slot_type.masked} == {"digits", "phone"}
