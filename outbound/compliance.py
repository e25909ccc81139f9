"""The collection rules, enforced in code: a campaign or a policy file may only make them stricter.

- No call outside 08:00-21:00 in the customer's local time (never 22:00-08:00, whatever is
  configured): the legal hours clamp every configured window.
- At most 6 unanswered calls per number per local day, over every campaign.
- Per-campaign caps: calls of one campaign to one customer per local day and per week.
- Do-not-call: the customer's do-not-call flag or marketing opt-out (risk API), or an opt-out the
  dialler learnt itself; never called by the robot again.
- A number whose answerer was a third party who refused, or which was a wrong number, is never
  called again.
- Holidays and blackout dates (the policy's and the campaign's): no calls that day.

`Compliance.decide` looks at one call about to be placed and returns a `Decision`: allowed, or
which rule stopped it and whether (and when) the attempt may be tried again. The queue records
every decision (outbound/queue.py). Time is always passed in (`now`): the rules never read a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from outbound.campaigns import Campaign

LEGAL_START = time(8)
LEGAL_END = time(21)
LEGAL_MAX_UNANSWERED_PER_NUMBER_PER_DAY = 6
DEFAULT_TIMEZONE = "Asia/Shanghai"
# How far ahead the next opening is looked for (a year of blackout dates still finds one).
LOOKAHEAD_DAYS = 400

# Every rule a decision can name. Final: the attempt is skipped for good and the customer's series
# for this campaign ends. Deferring: the attempt waits until the rule no longer applies.
FINAL_RULES = {
    "do_not_call": "customer is on the do-not-call list (do-not-call flag, marketing opt-out or an opt-out in a call)",
    "third_party_refused": "a third party answered this number and refused further calls",
    "wrong_number": "this number was reported as a wrong number",
    "not_selected": "the customer no longer matches the campaign's selection (e.g. the bill was paid)",
    "campaign_ended": "the campaign's last day has passed",
    "unknown_timezone": "the customer's time zone is unknown: their local time cannot be checked",
    "unknown_customer": "the risk API does not know the customer any more",
}
DEFERRING_RULES = {
    "campaign_not_started": "the campaign's first day has not come",
    "blackout_date": "a holiday or blackout date in the customer's local calendar",
    "calling_hours": "outside the calling hours in the customer's local time",
    "number_daily_limit": "the number had its maximum of unanswered calls today",
    "campaign_daily_cap": "the campaign called this customer its maximum today",
    "campaign_weekly_cap": "the campaign called this customer its maximum this week",
}
RULES = {**FINAL_RULES, **DEFERRING_RULES}


class PolicyError(ValueError):
    """A policy that would loosen the legal rules."""


def parse_time(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def timezone_of(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@dataclass(frozen=True)
class CompliancePolicy:
    """Deployment-wide rules (`ivr_config/campaigns/policy.yaml`); the defaults are the legal limits."""

    calling_start: time = LEGAL_START
    calling_end: time = LEGAL_END
    max_unanswered_per_number_per_day: int = LEGAL_MAX_UNANSWERED_PER_NUMBER_PER_DAY
    blackout_dates: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        if self.calling_start < LEGAL_START or self.calling_end > LEGAL_END:
            raise PolicyError(f"calling hours {self.calling_start:%H:%M}-{self.calling_end:%H:%M} reach outside the "
                              f"legal {LEGAL_START:%H:%M}-{LEGAL_END:%H:%M}: they can only be narrowed")
        if self.calling_start >= self.calling_end:
            raise PolicyError(f"calling hours start {self.calling_start:%H:%M} is not before their end "
                              f"{self.calling_end:%H:%M}")
        if not 1 <= self.max_unanswered_per_number_per_day <= LEGAL_MAX_UNANSWERED_PER_NUMBER_PER_DAY:
            raise PolicyError(f"max_unanswered_per_number_per_day {self.max_unanswered_per_number_per_day} must be "
                              f"1-{LEGAL_MAX_UNANSWERED_PER_NUMBER_PER_DAY}: it can only be lowered")


@dataclass(frozen=True)
class CallFacts:
    """What the rules look at for one call about to be placed. The contact facts come fresh from
    the risk API just before the call; the counts from the queue, in the transaction that records
    the decision (so two diallers cannot both take the last call a number has left)."""

    timezone: str = DEFAULT_TIMEZONE
    do_not_call: bool = False
    marketing_opt_out: bool = False
    opted_out_in_call: bool = False  # the dialler's own do-not-call list (an opt-out during a call)
    still_selected: bool = True
    number_block: str | None = None  # "third_party_refused" | "wrong_number"
    unanswered_on_number_today: int = 0  # over every campaign, in the customer's local day
    campaign_calls_today: int = 0  # this campaign to this customer, local day
    campaign_calls_this_week: int = 0  # this campaign to this customer, local Monday-Sunday


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str | None  # None when allowed
    detail: str
    retry_at: datetime | None = None  # deferred until then; None when not allowed: skipped for good

    @property
    def final(self) -> bool:
        return not self.allowed and self.retry_at is None


ALLOWED = Decision(True, None, "all rules pass")


@dataclass(frozen=True)
class Window:
    start: time
    end: time


@dataclass
class Compliance:
    policy: CompliancePolicy = field(default_factory=CompliancePolicy)

    # --- time -----------------------------------------------------------------------------------

    def window(self, campaign: Campaign) -> Window:
        """The campaign's hours within the policy's, within the legal ones (never wider, whatever
        the objects say: a Campaign built in code gets the same clamp as one from a file)."""
        start = max(LEGAL_START, self.policy.calling_start, campaign.window.start)
        end = min(LEGAL_END, self.policy.calling_end, campaign.window.end)
        return Window(start, end)

    def blackout(self, campaign: Campaign, day: date) -> bool:
        return day in self.policy.blackout_dates or day in campaign.blackout_dates

    def _callable_day(self, campaign: Campaign, day: date) -> bool:
        if campaign.starts_on is not None and day < campaign.starts_on:
            return False
        return not self.blackout(campaign, day)

    def next_opening(self, campaign: Campaign, zone: ZoneInfo, after: datetime) -> datetime | None:
        """The first moment at or after `after` at which the campaign may call a customer in `zone`
        as far as the calendar and the clock go (caps aside); None when the campaign is over first."""
        window = self.window(campaign)
        if window.start >= window.end:
            return None
        local = after.astimezone(zone)
        day = local.date()
        for _ in range(LOOKAHEAD_DAYS):
            if campaign.ends_on is not None and day > campaign.ends_on:
                return None
            if self._callable_day(campaign, day):
                opening = datetime.combine(day, window.start, tzinfo=zone)
                closing = datetime.combine(day, window.end, tzinfo=zone)
                if local < opening:
                    return opening.astimezone(timezone.utc)
                if local < closing:
                    return after.astimezone(timezone.utc)
            day += timedelta(days=1)
            local = datetime.combine(day, time(0), tzinfo=zone)
        return None

    @staticmethod
    def local_day(now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """The customer's local day around `now`, as UTC bounds [start, end)."""
        day = now.astimezone(zone).date()
        start = datetime.combine(day, time(0), tzinfo=zone)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
        return start.astimezone(timezone.utc), end.astimezone(timezone.utc)

    @staticmethod
    def local_week(now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """The customer's local week (Monday-Sunday) around `now`, as UTC bounds [start, end)."""
        day = now.astimezone(zone).date()
        monday = day - timedelta(days=day.weekday())
        start = datetime.combine(monday, time(0), tzinfo=zone)
        end = datetime.combine(monday + timedelta(days=7), time(0), tzinfo=zone)
        return start.astimezone(timezone.utc), end.astimezone(timezone.utc)

    # --- the decision ---------------------------------------------------------------------------

    def decide(self, campaign: Campaign, facts: CallFacts, now: datetime) -> Decision:
        """Allowed, or the first rule that stops the call (final rules before deferring ones)."""
        if facts.do_not_call or facts.marketing_opt_out or facts.opted_out_in_call:
            source = ("do-not-call flag" if facts.do_not_call else "marketing opt-out" if facts.marketing_opt_out
                      else "opted out during a call")
            return Decision(False, "do_not_call", f"do-not-call: {source}")
        if facts.number_block is not None:
            return Decision(False, facts.number_block, RULES[facts.number_block])
        if not facts.still_selected:
            return Decision(False, "not_selected", RULES["not_selected"])
        zone = timezone_of(facts.timezone)
        if zone is None:
            return Decision(False, "unknown_timezone", f"time zone {facts.timezone!r} is not known")
        local = now.astimezone(zone)
        today = local.date()
        if campaign.ends_on is not None and today > campaign.ends_on:
            return Decision(False, "campaign_ended", f"the campaign ended on {campaign.ends_on.isoformat()}")
        if campaign.starts_on is not None and today < campaign.starts_on:
            return self._defer(campaign, zone, now, "campaign_not_started",
                               f"the campaign starts on {campaign.starts_on.isoformat()}")
        if self.blackout(campaign, today):
            return self._defer(campaign, zone, now, "blackout_date", f"{today.isoformat()} is a blackout date")
        window = self.window(campaign)
        if not window.start <= local.time() < window.end:
            return self._defer(campaign, zone, now, "calling_hours",
                               f"local time {local:%H:%M} ({facts.timezone}) is outside "
                               f"{window.start:%H:%M}-{window.end:%H:%M}")
        tomorrow = self.local_day(now, zone)[1]
        limit = self.policy.max_unanswered_per_number_per_day
        if facts.unanswered_on_number_today >= limit:
            return self._defer(campaign, zone, tomorrow, "number_daily_limit",
                               f"{facts.unanswered_on_number_today} unanswered calls to this number today "
                               f"(at most {limit})")
        if facts.campaign_calls_today >= campaign.caps.per_customer_per_day:
            return self._defer(campaign, zone, tomorrow, "campaign_daily_cap",
                               f"{facts.campaign_calls_today} calls today (cap {campaign.caps.per_customer_per_day})")
        if facts.campaign_calls_this_week >= campaign.caps.per_customer_per_week:
            next_week = self.local_week(now, zone)[1]
            return self._defer(campaign, zone, next_week, "campaign_weekly_cap",
                               f"{facts.campaign_calls_this_week} calls this week "
                               f"(cap {campaign.caps.per_customer_per_week})")
        return ALLOWED

    def _defer(self, campaign: Campaign, zone: ZoneInfo, after: datetime, rule: str, detail: str) -> Decision:
        opening = self.next_opening(campaign, zone, after)
        if opening is None:  # no opening before the campaign ends: skipped for good, by this rule
            return Decision(False, rule, f"{detail}; no calling day is left in the campaign")
        return Decision(False, rule, detail, opening)
