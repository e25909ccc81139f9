"""bot/rasa_launcher.py finds an event's class from a table of the classes by name instead of
Rasa's walk over every subclass of Event per event read: the same class for every name Rasa
knows, and Rasa's own answer for what no class has (event_type_scenario.py, in Rasa's environment)."""

from __future__ import annotations

from pathlib import Path

from tests.rasa_scenarios import needs_rasa, run_in_rasa


@needs_rasa
def test_the_event_class_table_answers_every_name_as_rasa_does() -> None:
    seen = run_in_rasa(Path(__file__).with_name("event_type_scenario.py"))
    assert seen["names"] >= 25  # user, bot, slot, action, active_loop, session_started…
    assert seen["table"] == seen["rasa"]
    assert seen["rasa"][-3:] == ["None", "ValueError: Unknown event name 'no_such_event'.",
                                 "rasa.shared.core.events.Event"]
