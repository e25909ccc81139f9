"""Risk rules: the validated configuration (rules.yaml) and their evaluation."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

Level = Literal["L1", "L2"]
Channel = Literal["voice", "chat", "outbound", "agent"]
# How a conversation proves L1 (risk_api/verification.py): `phone_name_id4` with the phone number,
# the name and the last 4 characters of the ID number; `line_id6` with the line of a call the
# phone gateway vouched for and the last 6 characters of the ID number (no name: keypad-only
# callers).
L1Method = Literal["phone_name_id4", "line_id6"]
LineChannel = Literal["voice", "outbound"]  # the channels whose calls have a line to vouch for
Decision = Literal["allow", "step_up", "review", "deny"]
RiskAction = Literal[
    "verify_identity", "change_phone", "reset_password", "update_profile", "freeze_account",
    "unfreeze_account", "close_account", "limit_increase", "limit_decrease", "cancel_loan",
    "early_repayment", "partial_prepayment", "change_auto_debit", "defer_repayment",
    "restructure", "change_bank_card", "unbind_card", "issue_certificate", "issue_invoice",
]
SEVERITY: dict[str, int] = {"allow": 0, "step_up": 1, "review": 2, "deny": 3}
EARTH_RADIUS_KM = 6371.0


class RulesConfigError(RuntimeError):
    """rules.yaml is unreadable or invalid; the message names the file and the fields."""


@dataclass(frozen=True)
class RiskFacts:
    """What the rules may look at for one decision."""

    action: str
    today: date
    account_status: str
    frozen_reason: str | None
    device_changed_on: date | None
    phone_changed_on: date | None
    identities_on_device: int
    location: tuple[float, float] | None
    usual_location: tuple[float, float]
    lender_applications: list[date] = field(default_factory=list)
    amount: float | None = None


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    id: str = Field(min_length=1, pattern=r"^[a-z0-9_]+$")
    decision: Decision
    actions: Literal["all"] | list[RiskAction] = "all"
    except_actions: list[RiskAction] = Field(default_factory=list, alias="except")
    explanation: str = Field(min_length=1)

    def applies_to(self, action: str) -> bool:
        listed = self.actions == "all" or action in self.actions
        return listed and action not in self.except_actions

    def fires(self, facts: RiskFacts) -> bool:
        raise NotImplementedError


class AccountClosed(_Rule):
    check: Literal["account_closed"]

    def fires(self, facts: RiskFacts) -> bool:
        return facts.account_status == "closed"


class AccountFrozen(_Rule):
    check: Literal["account_frozen"]

    def fires(self, facts: RiskFacts) -> bool:
        return facts.account_status == "frozen"


class FrozenForFraud(_Rule):
    check: Literal["frozen_for_fraud"]

    def fires(self, facts: RiskFacts) -> bool:
        return facts.account_status == "frozen" and facts.frozen_reason == "fraud"


def _within(day: date | None, facts: RiskFacts, days: int) -> bool:
    return day is not None and facts.today - day <= timedelta(days=days)


class DeviceChangedWithin(_Rule):
    check: Literal["device_changed_within"]
    days: PositiveInt

    def fires(self, facts: RiskFacts) -> bool:
        return _within(facts.device_changed_on, facts, self.days)


class PhoneChangedWithin(_Rule):
    check: Literal["phone_changed_within"]
    days: PositiveInt

    def fires(self, facts: RiskFacts) -> bool:
        return _within(facts.phone_changed_on, facts, self.days)


class IdentitiesOnDevice(_Rule):
    check: Literal["identities_on_device"]
    min_identities: int = Field(ge=2)

    def fires(self, facts: RiskFacts) -> bool:
        return facts.identities_on_device >= self.min_identities


class LocationFar(_Rule):
    check: Literal["location_far"]
    max_km: PositiveFloat

    def fires(self, facts: RiskFacts) -> bool:
        return facts.location is not None and (
            distance_km(facts.location, facts.usual_location) > self.max_km)


class MultiLenderApplications(_Rule):
    check: Literal["multi_lender_applications"]
    days: PositiveInt
    min_applications: PositiveInt

    def fires(self, facts: RiskFacts) -> bool:
        recent = [day for day in facts.lender_applications if _within(day, facts, self.days)]
        return len(recent) >= self.min_applications


class AmountOver(_Rule):
    check: Literal["amount_over"]
    limits: dict[RiskAction, PositiveFloat]

    def fires(self, facts: RiskFacts) -> bool:
        limit = self.limits.get(facts.action)  # type: ignore[call-overload]
        return limit is not None and facts.amount is not None and facts.amount > limit


Rule = Annotated[
    AccountClosed | AccountFrozen | FrozenForFraud | DeviceChangedWithin | PhoneChangedWithin
    | IdentitiesOnDevice | LocationFar | MultiLenderApplications | AmountOver,
    Field(discriminator="check"),
]


@dataclass(frozen=True)
class Evaluation:
    decision: str
    reasons: list[str]
    explanation: str
    fired: list[str]  # every rule that fired, including step-ups already satisfied


class RulesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1]
    default_level: Level
    required_levels: dict[RiskAction, Level] = Field(default_factory=dict)
    # Each L1 method and the channels it is allowed on; a file without the key allows only
    # phone, name and ID last 4, on every channel.
    l1_methods: dict[L1Method, list[Channel]] = Field(
        default_factory=lambda: {"phone_name_id4": list(get_args(Channel))})
    decision_ttl_seconds: PositiveInt
    step_up_window_seconds: PositiveInt
    explanations: dict[Decision, str]
    rules: list[Rule]

    @model_validator(mode="after")
    def _check_complete(self) -> RulesConfig:
        ids = [rule.id for rule in self.rules]
        duplicated = sorted({rule_id for rule_id in ids if ids.count(rule_id) > 1})
        if duplicated:
            raise ValueError(f"rule ids must be unique, repeated: {duplicated}")
        missing = set(SEVERITY) - set(self.explanations)
        if missing:
            raise ValueError(f"explanations lacks {sorted(missing)}")
        lineless = set(self.l1_methods.get("line_id6", [])) - set(get_args(LineChannel))
        if lineless:
            raise ValueError(f"l1_methods.line_id6: only calls have a line to vouch for "
                             f"({', '.join(get_args(LineChannel))}), not {sorted(lineless)}")
        return self

    def allows_l1(self, method: L1Method, channel: str) -> bool:
        return channel in self.l1_methods.get(method, [])

    def required_level(self, action: str) -> str:
        return self.required_levels.get(action, self.default_level)  # type: ignore[call-overload]

    def evaluate(self, facts: RiskFacts, *, step_up_passed: bool) -> Evaluation:
        fired = [rule for rule in self.rules if rule.applies_to(facts.action) and rule.fires(facts)]
        counted = [rule for rule in fired if not (step_up_passed and rule.decision == "step_up")]
        decision = max((rule.decision for rule in counted), key=SEVERITY.__getitem__,
                       default="allow")
        deciding = [rule for rule in counted if rule.decision == decision]
        explanation = deciding[0].explanation if deciding else self.explanations[decision]
        return Evaluation(decision, [rule.id for rule in counted], explanation,
                          [rule.id for rule in fired])


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle (haversine) distance between two (lat, lon) points."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def load_rules(path: Path) -> RulesConfig:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RulesConfigError(f"cannot read risk rules {path}: {exc}") from exc
    try:
        return RulesConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "\n".join(
            f"  {'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise RulesConfigError(f"invalid risk rules in {path}:\n{problems}") from exc
