"""bot/rasa_launcher.py's `ResponseValidator` against jsonschema's check of Rasa's whole action
response schema, in Rasa's environment: `python response_validation_scenario.py` prints, as one
JSON line, how many responses each found valid and where their verdicts differ.
tests/dialogue/test_response_validation.py runs it."""

from __future__ import annotations

import itertools
import json
from typing import Any

from jsonschema import ValidationError
from jsonschema.validators import validator_for
from rasa.core.actions.action import RemoteAction

from bot.rasa_launcher import ResponseValidator

SCHEMA = RemoteAction.action_response_format_spec()
# A value of every JSON kind, and shapes Rasa's events hold (an intent, an entity, a button list).
VALUES: list[Any] = [None, "x", "", 1, 1.5, True, {}, [], {"name": "greet", "confidence": 1.0},
                     [{"entity": "amount", "value": 1, "start": 0, "end": 1}], [{"title": "是", "payload": "/affirm"}]]


def responses() -> list[Any]:
    """Every event type with each of its fields (and the common ones) set to each value, one at a
    time, then two at a time for the first fields; unknown types, broken lists and whole responses."""
    item = SCHEMA["properties"]["events"]["items"]
    common = list(item["properties"])
    made: list[Any] = []
    for branch in item["oneOf"]:
        name = branch["properties"]["event"]["const"]
        fields = [field for field in branch["properties"] if field != "event"] + common[1:]
        made.append({"events": [{"event": name}]})
        for field, value in itertools.product(fields, VALUES):
            made.append({"events": [{"event": name, field: value}]})
        for (first, second), (one, other) in itertools.product(itertools.combinations(fields[:4], 2),
                                                               itertools.product(VALUES[:6], repeat=2)):
            made.append({"events": [{"event": name, first: one, second: other}]})
    made += [{}, {"events": None}, {"events": "slot"}, {"events": [None]}, {"events": [{}]},
             {"events": [{"event": 5}]}, {"events": [{"event": "no_such_event"}]}, {"responses": "x"},
             {"responses": [{"text": "好的"}]}, [], "events",
             {"events": [{"event": "slot", "name": "a", "value": 1}, {"event": "no_such_event"}]},
             {"events": [{"event": "slot", "name": "a", "value": 1}, {"event": "bot", "text": "好的"},
                         {"event": "action", "name": "action_listen"}], "responses": [{"text": "好的"}]}]
    return made


def main() -> dict[str, Any]:
    whole = validator_for(SCHEMA)(SCHEMA)
    ours = ResponseValidator(SCHEMA)
    made = responses()
    valid = {"whole": 0, "ours": 0}
    differ = []
    for response in made:
        try:
            ours.validate(response)
            verdict = True
        except ValidationError:  # anything else is a crash: the scenario fails
            verdict = False
        expected = whole.is_valid(response)
        valid["whole"] += expected
        valid["ours"] += verdict
        if verdict != expected:
            differ.append({"response": response, "whole": expected, "ours": verdict})
    return {"responses": len(made), "valid": valid, "differ": differ[:5], "branches": ours.branches}


if __name__ == "__main__":
    print(json.dumps(main(), ensure_ascii=False, default=str))
