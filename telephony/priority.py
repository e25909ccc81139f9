"""Call priority tiers: which calls jump the agent queue, skip menus or get a callback offer.

Rules live in ivr_config/priority.yaml (validated against ivr_config/priority.schema.json).
Tiers are listed highest first; a call gets the first tier one of whose rules matches, and the
default tier otherwise. Facts (`CallFacts`) come from the risk API's CustomerSummary
(`POST /customers/lookup`: age, elderly, vip, hardship, tags), the gateway's own call
log (hours since the caller's previous call) and the dialogue (the recognised flow id).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr_config.loader import ConfigError, load_yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "ivr_config"
DEFAULT_RULES_PATH = CONFIG_DIR / "priority.yaml"
SCHEMA_PATH = CONFIG_DIR / "priority.schema.json"
# CustomerSummary booleans that also count as tags, so rules can say `tags_any: [vip]`.
FLAG_TAGS = ("elderly", "vip", "hardship")


class PriorityConfigError(ConfigError):
    """priority.yaml is broken; the message names the file and the field."""


@dataclass(frozen=True)
class CallFacts:
    age: int | None = None
    tags: frozenset[str] = frozenset()
    hours_since_last_call: float | None = None
    intent: str | None = None

    @classmethod
    def from_customer_summary(cls, summary: Mapping[str, Any] | None, hours_since_last_call: float | None = None,
                              intent: str | None = None) -> CallFacts:
        """Facts from the risk API's CustomerSummary (None for an unknown caller)."""
        summary = summary or {}
        tags = set(summary.get("tags") or ())
        tags.update(flag for flag in FLAG_TAGS if summary.get(flag))
        age = summary.get("age")
        return cls(age=age if isinstance(age, int) else None, tags=frozenset(tags),
                   hours_since_last_call=hours_since_last_call, intent=intent)


@dataclass(frozen=True)
class Rule:
    age_at_least: int | None = None
    tags_any: frozenset[str] | None = None
    called_within_hours: float | None = None
    intent_in: frozenset[str] | None = None

    def matches(self, facts: CallFacts) -> bool:
        """All conditions present in the rule must hold; an unknown fact never matches."""
        if self.age_at_least is not None and (facts.age is None or facts.age < self.age_at_least):
            return False
        if self.tags_any is not None and not self.tags_any & facts.tags:
            return False
        if self.called_within_hours is not None and (
                facts.hours_since_last_call is None or facts.hours_since_last_call > self.called_within_hours):
            return False
        return self.intent_in is None or facts.intent in self.intent_in


@dataclass(frozen=True)
class Tier:
    name: str
    queue_priority: int
    skip_menus: bool
    short_greeting: bool
    callback_when_saturated: bool
    handoff_priority: str = "normal"
    rules: tuple[Rule, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class PriorityRules:
    tiers: tuple[Tier, ...]
    default: Tier
    saturated_when_waiting: int = 10

    def tier_for(self, facts: CallFacts) -> Tier:
        for tier in self.tiers:
            if any(rule.matches(facts) for rule in tier.rules):
                return tier
        return self.default

    def tier(self, name: str) -> Tier:
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise KeyError(f"unknown priority tier {name!r}; known: {', '.join(t.name for t in self.tiers)}")


def load_priority_rules(path: Path | str = DEFAULT_RULES_PATH) -> PriorityRules:
    path = Path(path)
    return _build(path, load_yaml(path, SCHEMA_PATH, PriorityConfigError))


def _build(path: Path, data: dict[str, Any]) -> PriorityRules:
    tiers: list[Tier] = []
    for index, raw in enumerate(data["tiers"]):
        where = f"{path}: tiers[{index}]"
        if any(tier.name == raw["name"] for tier in tiers):
            raise PriorityConfigError(f"{where}.name: tier {raw['name']!r} is listed twice")
        if tiers and raw["queue_priority"] >= tiers[-1].queue_priority:
            raise PriorityConfigError(f"{where}.queue_priority: {raw['queue_priority']} must be below "
                                      f"{tiers[-1].queue_priority} of {tiers[-1].name!r} (tiers go highest first)")
        if tiers and tiers[-1].callback_when_saturated and not raw["callback_when_saturated"]:
            raise PriorityConfigError(f"{where}.callback_when_saturated: {raw['name']!r} is below "
                                      f"{tiers[-1].name!r}, which is offered a callback; only lower tiers are")
        rules = tuple(Rule(
            age_at_least=rule.get("age_at_least"),
            tags_any=frozenset(rule["tags_any"]) if "tags_any" in rule else None,
            called_within_hours=rule.get("called_within_hours"),
            intent_in=frozenset(rule["intent_in"]) if "intent_in" in rule else None,
        ) for rule in raw["when"])
        tiers.append(Tier(raw["name"], raw["queue_priority"], raw["skip_menus"], raw["short_greeting"],
                          raw["callback_when_saturated"], raw["handoff_priority"], rules))
    names = [tier.name for tier in tiers]
    if data["default_tier"] not in names:
        raise PriorityConfigError(f"{path}: default_tier: unknown tier {data['default_tier']!r}; "
                                  f"known: {', '.join(names)}")
    default = next(tier for tier in tiers if tier.name == data["default_tier"])
    return PriorityRules(tuple(tiers), default, data.get("saturated_when_waiting", 10))
