"""Priority tiers from ivr_config/priority.yaml and the loader's error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from risk_api.demo import PERSONA_TAGS
from telephony.priority import (
    DEFAULT_RULES_PATH,
    CallFacts,
    PriorityConfigError,
    PriorityRules,
    load_priority_rules,
)

FLOWS_DIR = Path(__file__).resolve().parents[2] / "flows"


@pytest.fixture(scope="module")
def rules() -> PriorityRules:
    return load_priority_rules()


def tier_name(rules: PriorityRules, **facts: object) -> str:
    return rules.tier_for(CallFacts(**facts)).name  # type: ignore[arg-type]


def test_tiers_are_ordered_highest_first(rules: PriorityRules) -> None:
    assert [tier.name for tier in rules.tiers] == ["emergency", "care", "vip", "repeat", "complaint", "normal"]
    priorities = [tier.queue_priority for tier in rules.tiers]
    assert priorities == sorted(priorities, reverse=True)


def test_fraud_flag_or_fraud_intent_is_an_emergency(rules: PriorityRules) -> None:
    assert tier_name(rules, tags=frozenset({"frozen_fraud"})) == "emergency"
    for intent in ("fraud_report", "unauthorized_transaction", "account_freeze"):
        assert tier_name(rules, intent=intent, tags=frozenset({"vip"})) == "emergency"
    emergency = rules.tier("emergency")
    assert emergency.skip_menus and emergency.short_greeting and emergency.handoff_priority == "emergency"


def test_elderly_and_hardship_callers_get_care(rules: PriorityRules) -> None:
    assert tier_name(rules, age=65) == "care"
    assert tier_name(rules, age=64) == "normal"
    assert tier_name(rules, tags=frozenset({"hardship"})) == "care"
    assert tier_name(rules, intent="elderly_assistance") == "care"
    assert rules.tier("care").skip_menus and not rules.tier("care").short_greeting  # slow and clear for them


def test_repeat_caller_within_24_hours(rules: PriorityRules) -> None:
    assert tier_name(rules, hours_since_last_call=23.5) == "repeat"
    assert tier_name(rules, hours_since_last_call=25) == "normal"
    assert tier_name(rules, hours_since_last_call=None) == "normal"


def test_complaint_intent_and_default(rules: PriorityRules) -> None:
    assert tier_name(rules, intent="collection_complaint") == "complaint"
    assert tier_name(rules, intent="bill_inquiry", tags=frozenset({"overdue"}), age=40) == "normal"
    assert rules.tier_for(CallFacts()) is rules.default


def test_callback_offered_only_to_lower_tiers(rules: PriorityRules) -> None:
    offered = [tier.callback_when_saturated for tier in rules.tiers]
    assert offered == [False, False, False, True, True, True]


def test_facts_from_the_risk_api_customer_summary(rules: PriorityRules) -> None:
    summary = {"customer_id": "C100018", "age": 71, "elderly": True, "vip": False, "hardship": False,
               "tags": ["elderly"], "account_status": "active"}
    facts = CallFacts.from_customer_summary(summary, hours_since_last_call=3.0, intent="bill_inquiry")
    assert facts == CallFacts(age=71, tags=frozenset({"elderly"}), hours_since_last_call=3.0, intent="bill_inquiry")
    assert rules.tier_for(facts).name == "care"
    vip_by_flag = CallFacts.from_customer_summary({"age": 40, "vip": True, "tags": ["normal"]})
    assert rules.tier_for(vip_by_flag).name == "vip"
    assert rules.tier_for(CallFacts.from_customer_summary(None)).name == "normal"


def test_configured_tags_and_intents_exist() -> None:
    config = yaml.safe_load(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))
    for tier in config["tiers"]:
        for rule in tier["when"]:
            assert set(rule.get("tags_any", ())) <= set(PERSONA_TAGS), tier["name"]
            for intent in rule.get("intent_in", ()):
                assert (FLOWS_DIR / f"{intent}.yml").exists(), f"{tier['name']}: no flow {intent}"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "priority.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def with_change(old: str, new: str) -> str:
    original = DEFAULT_RULES_PATH.read_text(encoding="utf-8")
    assert old in original
    return original.replace(old, new, 1)


def test_broken_priority_yaml_names_file_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\ntiers:\n  - name: [emergency\n")
    with pytest.raises(PriorityConfigError, match=rf"^{path}: line \d+, column \d+: invalid YAML"):
        load_priority_rules(path)
    path = write(tmp_path, with_change("skip_menus: true", "skip_menu: true"))
    with pytest.raises(PriorityConfigError, match=rf"^{path}: tiers\[0\]: .*'skip_menu' was unexpected"):
        load_priority_rules(path)
    path = write(tmp_path, with_change("age_at_least: 65", "age_at_least: sixty-five"))
    with pytest.raises(PriorityConfigError, match=rf"^{path}: tiers\[1\]\.when\[0\]\.age_at_least: 'sixty-five'"):
        load_priority_rules(path)


def test_unknown_default_tier_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, with_change("default_tier: normal", "default_tier: standard"))
    with pytest.raises(PriorityConfigError, match=rf"^{path}: default_tier: unknown tier 'standard'; known: emerg"):
        load_priority_rules(path)


def test_tier_order_and_callback_policy_are_enforced(tmp_path: Path) -> None:
    path = write(tmp_path, with_change("queue_priority: 40", "queue_priority: 60"))
    with pytest.raises(PriorityConfigError, match=r"tiers\[1\]\.queue_priority: 60 must be below 50"):
        load_priority_rules(path)
    path = write(tmp_path, with_change("callback_when_saturated: false\n    handoff_priority: emergency",
                                       "callback_when_saturated: true\n    handoff_priority: emergency"))
    with pytest.raises(PriorityConfigError, match=r"tiers\[1\]\.callback_when_saturated: 'care' is below 'emergency'"):
        load_priority_rules(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PriorityConfigError, match="nowhere.yaml: cannot read"):
        load_priority_rules(tmp_path / "nowhere.yaml")
