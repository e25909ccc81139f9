"""Run with Rasa's environment (`.venv/bin/python tests/dialogue/event_type_scenario.py`): the
launcher's event class table against Rasa's own `Event.resolve_by_type`, name by name; prints JSON."""

from __future__ import annotations

import json

import rasa.shared.utils.common
from rasa.shared.core.events import Event

from bot import rasa_launcher


def outcome(resolve: object, *args: object) -> str:
    try:
        found = resolve(*args)  # type: ignore[operator]
    except ValueError as error:
        return f"ValueError: {error}"
    return "None" if found is None else f"{found.__module__}.{found.__qualname__}"


def main() -> None:
    names = sorted({cls.type_name for cls in rasa.shared.utils.common.all_subclasses(Event)})
    asked = [(name,) for name in names] + [("topic",), ("no_such_event",), ("no_such_event", Event)]
    rasa_says = [outcome(rasa_launcher._resolve_by_type, *args) for args in asked]
    table_says = [outcome(rasa_launcher._resolve_event_type, *args) for args in asked]
    print(json.dumps({"names": len(names), "rasa": rasa_says, "table": table_says}))


if __name__ == "__main__":
    main()
