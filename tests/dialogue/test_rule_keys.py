"""bot/rasa_launcher.py checks against the latest state only the rules filed under its previous
action, and no state further back than the longest rule: the same rules as Rasa's
`RulePolicy._get_possible_keys` for the trained model's rules, rules for a conversation's first
state, and conversations made of them (rule_keys_scenario.py, in Rasa's environment)."""

from __future__ import annotations

from pathlib import Path

from tests.rasa_scenarios import needs_rasa, run_in_rasa


@needs_rasa
def test_rule_matching_by_the_latest_action_finds_the_rules_rasa_finds() -> None:
    seen = run_in_rasa(Path(__file__).with_name("rule_keys_scenario.py"))
    for kind in ("rules", "rules_for_loop_unhappy_path", "conversation_starts"):
        found = seen[kind]
        assert found["same"], kind
        assert found["rules"] >= 30 and found["longest_case"] > 4 * found["longest"], found  # long histories
        assert found["matched"] > found["cases"] // 3 and found["distinct_answers"] > 20, found  # not vacuous
