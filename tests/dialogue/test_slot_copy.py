"""bot/rasa_launcher.py gives slots a `__copy__` (Rasa copies every slot of the domain each time it
makes a tracker): the copies `copy.copy` made before, for every slot of the domain and every slot
class (slot_copy_scenario.py, in Rasa's environment)."""

from __future__ import annotations

from pathlib import Path

from tests.rasa_scenarios import needs_rasa, run_in_rasa


@needs_rasa
def test_a_slots_copy_is_the_copy_rasa_made() -> None:
    seen = run_in_rasa(Path(__file__).with_name("slot_copy_scenario.py"))
    assert seen["slots"] > 40
    assert seen["types"] == ["AnySlot", "BooleanSlot", "CategoricalSlot", "FloatSlot", "ListSlot", "TextSlot"]
    assert seen["same"] and seen["all_alike"]
    assert seen["original_kept"], "a tracker's slot is its own: setting it leaves the domain's alone"
