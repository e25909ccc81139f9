"""bot/rasa_launcher.py checks each event of an action server's response against the one branch of
Rasa's schema its type names (`ResponseValidator`): on thousands of responses, every event type
with each field set to values of every JSON kind, it finds valid exactly what jsonschema finds
valid with the whole schema (response_validation_scenario.py, in Rasa's environment)."""

from __future__ import annotations

from pathlib import Path

from tests.rasa_scenarios import needs_rasa, run_in_rasa


@needs_rasa
def test_each_event_checked_against_its_own_branch_gives_the_whole_schemas_verdicts() -> None:
    seen = run_in_rasa(Path(__file__).with_name("response_validation_scenario.py"))
    assert seen["branches"] == 23, "the schema's event types are checked one by one"
    assert seen["differ"] == []
    assert seen["valid"]["ours"] == seen["valid"]["whole"]
    # Neither all valid nor all invalid: both verdicts are exercised.
    assert 100 < seen["valid"]["whole"] < seen["responses"] - 100, seen
