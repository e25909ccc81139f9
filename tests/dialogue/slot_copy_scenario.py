"""Run with Rasa's environment (`.venv/bin/python tests/dialogue/slot_copy_scenario.py`): copies of
every slot of the domain and of every slot class, with values set, by `copy.copy` as Rasa has it
and with bot/rasa_launcher.py's `Slot.__copy__`; prints JSON."""

from __future__ import annotations

import copy
import json
from typing import Any

from rasa.shared.core.domain import Domain
from rasa.shared.core.slots import AnySlot, BooleanSlot, CategoricalSlot, FloatSlot, ListSlot, Slot, TextSlot
from rasa.shared.core.trackers import DialogueStateTracker

from bot import rasa_launcher
from stack.services import ROOT

MAPPINGS = [{"type": "custom"}]


def slots() -> list[Slot]:
    made = [*Domain.load(ROOT / "bot" / "domain.yml").slots,
            AnySlot("any", MAPPINGS, initial_value={"a": [1]}), BooleanSlot("yes", MAPPINGS, initial_value=True),
            CategoricalSlot("tier", MAPPINGS, values=["gold", "silver"], initial_value="gold"),
            FloatSlot("amount", MAPPINGS, initial_value=1.5, min_value=0, max_value=10),
            ListSlot("items", MAPPINGS, initial_value=["x"]), TextSlot("text", MAPPINGS, initial_value="还款")]
    for slot in made[:3]:
        slot.value = "set"
    return made


def described(original: Slot, copied: Slot) -> dict[str, Any]:
    return {"type": type(copied).__name__, "new": copied is not original,
            "same_attributes": copied.__dict__ == original.__dict__
            and all(copied.__dict__[name] is value for name, value in original.__dict__.items()),
            "value": repr(copied.value), "as_dict": copied.persistence_info()}


def main() -> None:
    originals = slots()
    rasa = [described(slot, copy.copy(slot)) for slot in originals]
    Slot.__copy__ = rasa_launcher._slot_copy  # type: ignore[attr-defined]
    launcher = [described(slot, copy.copy(slot)) for slot in originals]
    tracker = DialogueStateTracker("s", originals)
    tracker.slots[originals[0].name].value = "changed in the tracker"
    print(json.dumps({"slots": len(originals), "types": sorted({entry["type"] for entry in rasa}),
                      "same": launcher == rasa, "all_alike": all(entry["same_attributes"] and entry["new"]
                                                              for entry in launcher),
                      "original_kept": originals[0].value == "set"}, default=str))


if __name__ == "__main__":
    main()
