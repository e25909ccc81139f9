"""Run with Rasa's environment (`.venv/bin/python tests/dialogue/rule_keys_scenario.py`): the
launcher's rule matching (`_possible_rule_keys`) against Rasa's `RulePolicy._get_possible_keys`,
on the trained model's rules (and rules for a conversation's first state) and conversations'
states built from them; prints JSON."""

from __future__ import annotations

import json
import random
import tarfile
from typing import Any

from rasa.core.policies.rule_policy import RulePolicy
from rasa.shared.core.constants import PREVIOUS_ACTION

from bot import rasa_launcher
from stack.services import latest_model

CASES = 1500


def trained_lookup() -> dict[str, dict[str, str]]:
    with tarfile.open(latest_model()) as model:
        member = next(m for m in model.getmembers() if m.name.endswith("RulePolicy0/rule_policy.json"))
        stored = model.extractfile(member)
        assert stored is not None
        lookup: dict[str, dict[str, str]] = json.load(stored)["lookup"]
    return lookup


def altered(state: dict[str, Any], draw: random.Random) -> dict[str, Any]:
    """The state with one of its features changed or dropped: a near miss for the rules."""
    changed = json.loads(json.dumps(state))
    part = draw.choice(sorted(changed)) if changed else None
    if part is None or not changed[part]:
        return changed
    key = draw.choice(sorted(changed[part]))
    if draw.random() < 0.5:
        del changed[part][key]
    else:
        changed[part][key] = "something_else"
    return changed


def conversations(rules: list[list[dict[str, Any]]], draw: random.Random) -> list[list[dict[str, Any]]]:
    """States as a conversation has them: a few rules' states one after another, sometimes a
    state altered, ending (mostly) on a rule's last states."""
    made: list[list[dict[str, Any]]] = [[]]
    for _ in range(CASES):
        states = [state for _ in range(draw.randint(1, 6)) for state in draw.choice(rules)]
        if draw.random() < 0.3:
            where = draw.randrange(len(states))
            states[where] = altered(states[where], draw)
        made.append(states)
    return made


def without_previous_action(states: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [*states[:-1], {part: features for part, features in states[-1].items() if part != PREVIOUS_ACTION}]


def with_conversation_starts(lookup: dict[str, str], draw: random.Random) -> dict[str, str]:
    """Some of the trained rules, and as many whose last state names no previous action (a
    conversation's first state; the trained model has none)."""
    some = draw.sample(sorted(lookup), 40)
    starts = {json.dumps(without_previous_action(json.loads(key))): "action_listen" for key in some[:20]}
    return {**{key: lookup[key] for key in some[20:]}, **starts}


def main() -> None:
    trained = trained_lookup()
    policy = RulePolicy.__new__(RulePolicy)  # the two methods read only the rules and the states
    draw = random.Random(20261207)
    lookup = {**trained, "conversation_starts": with_conversation_starts(trained["rules"], draw)}
    seen: dict[str, Any] = {}
    for kind in ("rules", "rules_for_loop_unhappy_path", "conversation_starts"):
        rules = [RulePolicy._rule_key_to_state(key) for key in lookup[kind]]
        cases = conversations(rules, draw)
        if kind == "conversation_starts":
            cases = [without_previous_action(states) if states and draw.random() < 0.5 else states
                     for states in cases]
        rasa = [sorted(RulePolicy._get_possible_keys(policy, lookup[kind], states)) for states in cases]
        launcher = [sorted(rasa_launcher._possible_rule_keys(policy, lookup[kind], states)) for states in cases]
        seen[kind] = {"rules": len(rules), "longest": max(map(len, rules)), "cases": len(cases),
                      "longest_case": max(map(len, cases)), "same": rasa == launcher,
                      "matched": sum(1 for keys in rasa if 0 < len(keys) < len(rules)),
                      "distinct_answers": len({tuple(keys) for keys in rasa})}
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
