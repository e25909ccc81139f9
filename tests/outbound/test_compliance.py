"""The collection rules of outbound/compliance.py, one by one, at fixed times."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from outbound.campaigns import CallingWindow
from outbound.compliance import (
    DEFERRING_RULES,
    FINAL_RULES,
    CallFacts,
    Compliance,
    CompliancePolicy,
    PolicyError,
)
from tests.outbound.helpers import china, make_campaign

TUESDAY = date(2026, 3, 10)
SHANGHAI = ZoneInfo("Asia/Shanghai")
URUMQI = ZoneInfo("Asia/Urumqi")  # UTC+6 in the tz database: 2 hours behind Beijing time
rules = Compliance()
campaign = make_campaign()  # window 09:00-20:00, caps 2 a day / 5 a week


def local(day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=zone)


def test_inside_the_window_with_nothing_against_the_call_it_is_allowed() -> None:
    decision = rules.decide(campaign, CallFacts(), china(TUESDAY, 10))
    assert decision.allowed and decision.rule is None


@pytest.mark.parametrize(("hour", "minute", "retry"), [
    (8, 59, local(TUESDAY, 9, 0, SHANGHAI)),  # before the campaign's 09:00: today at 09:00
    (20, 0, local(date(2026, 3, 11), 9, 0, SHANGHAI)),  # the end is exclusive: tomorrow 09:00
    (23, 30, local(date(2026, 3, 11), 9, 0, SHANGHAI)),
    (3, 0, local(TUESDAY, 9, 0, SHANGHAI)),
])
def test_outside_the_campaign_window_the_call_waits_for_the_next_opening(hour: int, minute: int,
                                                                         retry: datetime) -> None:
    decision = rules.decide(campaign, CallFacts(), china(TUESDAY, hour, minute))
    assert (decision.allowed, decision.rule, decision.final) == (False, "calling_hours", False)
    assert decision.retry_at == retry


def test_the_legal_hours_clamp_a_window_built_in_code_however_wide() -> None:
    """Files cannot say 06:00-23:00 (the loader refuses it); an object built in code still gets
    08:00-21:00: never 22:00-08:00, and the default 21:00 end holds too."""
    wide = replace(campaign, window=CallingWindow(time(6), time(23, 59)))
    for hour, minute in ((7, 59), (21, 0), (22, 30), (0, 0)):
        decision = rules.decide(wide, CallFacts(), china(TUESDAY, hour, minute))
        assert decision.rule == "calling_hours", (hour, minute)
    assert rules.decide(wide, CallFacts(), china(TUESDAY, 8, 0)).allowed
    assert rules.decide(wide, CallFacts(), china(TUESDAY, 20, 59)).allowed
    assert (rules.window(wide).start, rules.window(wide).end) == (time(8), time(21))


def test_the_window_is_the_customers_local_time() -> None:
    facts = CallFacts(timezone="Asia/Urumqi")
    # 10:30 in Beijing is 08:30 in Urumqi: before the campaign's 09:00 there.
    decision = rules.decide(campaign, facts, china(TUESDAY, 10, 30))
    assert decision.rule == "calling_hours" and "08:30" in decision.detail
    assert decision.retry_at == local(TUESDAY, 9, 0, URUMQI)
    assert rules.decide(campaign, facts, china(TUESDAY, 11, 30)).allowed
    # 21:30 in Beijing is 19:30 in Urumqi: still inside.
    assert rules.decide(campaign, facts, china(TUESDAY, 21, 30)).allowed
    abroad = CallFacts(timezone="Europe/London")
    assert rules.decide(campaign, abroad, china(TUESDAY, 10)).rule == "calling_hours"  # 02:00 in London


def test_a_policy_can_only_be_stricter() -> None:
    for looser in ({"calling_start": time(7, 59)}, {"calling_end": time(21, 1)}, {"calling_end": time(22)},
                   {"max_unanswered_per_number_per_day": 7}, {"max_unanswered_per_number_per_day": 0},
                   {"calling_start": time(12), "calling_end": time(12)}):
        with pytest.raises(PolicyError):
            CompliancePolicy(**looser)  # type: ignore[arg-type]
    strict = Compliance(CompliancePolicy(calling_start=time(10), calling_end=time(18),
                                         max_unanswered_per_number_per_day=3))
    assert strict.decide(campaign, CallFacts(), china(TUESDAY, 9, 30)).rule == "calling_hours"
    assert strict.decide(campaign, CallFacts(), china(TUESDAY, 18, 0)).rule == "calling_hours"
    assert strict.decide(campaign, CallFacts(unanswered_on_number_today=3), china(TUESDAY, 11)).rule == \
        "number_daily_limit"


def test_six_unanswered_calls_to_a_number_in_a_day_defer_it_to_the_next_day() -> None:
    assert rules.decide(campaign, CallFacts(unanswered_on_number_today=5), china(TUESDAY, 15)).allowed
    decision = rules.decide(campaign, CallFacts(unanswered_on_number_today=6), china(TUESDAY, 15))
    assert decision.rule == "number_daily_limit" and not decision.final
    assert decision.retry_at == local(date(2026, 3, 11), 9, 0, SHANGHAI)


def test_per_campaign_caps_per_day_and_week() -> None:
    daily = rules.decide(campaign, CallFacts(campaign_calls_today=2), china(TUESDAY, 15))
    assert daily.rule == "campaign_daily_cap" and daily.retry_at == local(date(2026, 3, 11), 9, 0, SHANGHAI)
    weekly = rules.decide(campaign, CallFacts(campaign_calls_today=1, campaign_calls_this_week=5), china(TUESDAY, 15))
    # The next week starts on Monday 16 March.
    assert weekly.rule == "campaign_weekly_cap" and weekly.retry_at == local(date(2026, 3, 16), 9, 0, SHANGHAI)


@pytest.mark.parametrize("facts", [CallFacts(do_not_call=True), CallFacts(marketing_opt_out=True),
                                   CallFacts(opted_out_in_call=True)], ids=["flag", "opt-out", "in-call"])
def test_do_not_call_skips_for_good_even_at_night(facts: CallFacts) -> None:
    for moment in (china(TUESDAY, 10), china(TUESDAY, 23)):
        decision = rules.decide(campaign, facts, moment)
        assert (decision.rule, decision.final) == ("do_not_call", True)


@pytest.mark.parametrize("block", ["third_party_refused", "wrong_number"])
def test_a_blocked_number_is_never_called_again(block: str) -> None:
    decision = rules.decide(campaign, CallFacts(number_block=block), china(TUESDAY, 10))
    assert (decision.rule, decision.final) == (block, True)


def test_blackout_dates_of_the_policy_and_the_campaign_skip_to_the_next_callable_day() -> None:
    policy = Compliance(CompliancePolicy(blackout_dates=frozenset({TUESDAY})))
    decision = policy.decide(campaign, CallFacts(), china(TUESDAY, 10))
    assert decision.rule == "blackout_date" and decision.retry_at == local(date(2026, 3, 11), 9, 0, SHANGHAI)
    own = replace(campaign, blackout_dates=frozenset({date(2026, 3, 11)}))
    decision = policy.decide(own, CallFacts(), china(TUESDAY, 10))
    assert decision.retry_at == local(date(2026, 3, 12), 9, 0, SHANGHAI)


def test_campaign_dates() -> None:
    ended = replace(campaign, ends_on=date(2026, 3, 9))
    assert (rules.decide(ended, CallFacts(), china(TUESDAY, 10)).rule,
            rules.decide(ended, CallFacts(), china(TUESDAY, 10)).final) == ("campaign_ended", True)
    later = replace(campaign, starts_on=date(2026, 3, 12))
    decision = rules.decide(later, CallFacts(), china(TUESDAY, 10))
    assert decision.rule == "campaign_not_started" and decision.retry_at == local(date(2026, 3, 12), 9, 0, SHANGHAI)
    # The last day's window has closed and the next days are blacked out: nothing is left.
    last = replace(campaign, ends_on=TUESDAY)
    decision = rules.decide(last, CallFacts(), china(TUESDAY, 20, 30))
    assert decision.rule == "calling_hours" and decision.final


def test_an_unknown_time_zone_is_never_guessed() -> None:
    decision = rules.decide(campaign, CallFacts(timezone="Mars/Olympus"), china(TUESDAY, 10))
    assert (decision.rule, decision.final) == ("unknown_timezone", True)


def test_final_rules_come_before_deferring_ones_and_every_rule_is_named() -> None:
    everything = CallFacts(do_not_call=True, unanswered_on_number_today=9, campaign_calls_today=9,
                           campaign_calls_this_week=9)
    assert rules.decide(campaign, everything, china(TUESDAY, 23)).rule == "do_not_call"
    assert not set(FINAL_RULES) & set(DEFERRING_RULES)
