"""bot/rasa_launcher.py finds an event's class from a table of the classes by name instead of
Rasa's walk over every subclass of Event per event read: the same class for every name Rasa
knows, and Rasa's own answer for what no class has (event_type_scenario.py, in Rasa's environment)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from stack.services import RASA_VENV, ROOT

RASA_PYTHON = RASA_VENV / "bin" / "python"


@pytest.mark.skipif(not RASA_PYTHON.exists(), reason="needs Rasa's environment (make setup)")
def test_the_event_class_table_answers_every_name_as_rasa_does() -> None:
    done = subprocess.run([str(RASA_PYTHON), str(ROOT / "tests" / "dialogue" / "event_type_scenario.py")], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["names"] >= 25  # user, bot, slot, action, active_loop, session_started…
    assert seen["table"] == seen["rasa"]
    assert seen["rasa"][-3:] == ["None", "ValueError: Unknown event name 'no_such_event'.",
                                 "rasa.shared.core.events.Event"]
