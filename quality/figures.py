"""The day's service figures from the inspected conversations (docs/quality.md): containment,
hand-over rate and reasons, identity pass rate, average handling time, barge-in and silence
rates, the top low-confidence utterances (as stored: masked), the knowledge-base entries that
answered most (entry ids: what customers ask, to review the answers) and the entries nearest the
questions it could not answer (where it falls short). As CSV and Prometheus metrics.

A conversation counts on the day (in the figures' time zone) of its first event, once the
customer said or keyed something (a chat opened and left empty is not a conversation). Outbound
calls the dialler placed count apart (`outbound_dials`, `outbound_answered`), answered or not, and
the attempts it skipped for good by the compliance rule that skipped each (`outbound_skipped`).

First-contact resolution: of the conversations whose customer the risk API verified, the share
after which the same customer (by digest, on any channel) did not come back within
`repeat_within_hours`. A day's figure settles once that window has passed.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from quality.rules import SILENCE_RULES, Conversation

CSV_FIELDS = ("date", "conversations", "contained", "containment_rate", "handovers", "handover_rate",
              "handover_reasons", "identity_checks", "identity_passed", "identity_pass_rate",
              "average_handling_seconds", "voice_calls", "barge_in_rate", "silence_rate", "low_confidence",
              "identified_conversations", "first_contact_resolution", "knowledge_answers", "unanswered_by_entry",
              "outbound_dials", "outbound_answered", "outbound_skipped")
DEFAULT_REPEAT_HOURS = 48.0


@dataclass(frozen=True)
class DailyFigures:
    day: date
    conversations: int
    contained: int
    handovers: int
    handover_reasons: list[tuple[str, int]]
    identity_checks: int
    identity_passed: int
    average_handling_seconds: float
    voice_calls: int
    calls_with_barge_in: int
    calls_with_silence: int
    low_confidence: list[tuple[str, int]]
    identified: int = 0  # conversations with a verified customer
    resolved_first_contact: int = 0  # … not followed by the same customer's next one within the window
    knowledge_answers: list[tuple[str, int]] = field(default_factory=list)  # the entries that answered most
    # Questions the knowledge base did not answer, by the entry nearest each: where it falls short.
    unanswered_by_entry: list[tuple[str, int]] = field(default_factory=list)
    outbound_dials: int = 0  # calls the dialler placed (its `dial_placed`), answered or not
    outbound_answered: int = 0
    outbound_skipped: list[tuple[str, int]] = field(default_factory=list)  # attempts skipped for good, by rule

    @property
    def first_contact_resolution(self) -> float:
        return _rate(self.resolved_first_contact, self.identified)

    @property
    def containment_rate(self) -> float:
        return _rate(self.contained, self.conversations)

    @property
    def handover_rate(self) -> float:
        return _rate(self.handovers, self.conversations)

    @property
    def identity_pass_rate(self) -> float:
        return _rate(self.identity_passed, self.identity_checks)

    @property
    def barge_in_rate(self) -> float:
        return _rate(self.calls_with_barge_in, self.voice_calls)

    @property
    def silence_rate(self) -> float:
        return _rate(self.calls_with_silence, self.voice_calls)


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def daily_figures(conversations: Iterable[Conversation], timezone: str, top: int,
                  repeat_within_hours: float = DEFAULT_REPEAT_HOURS) -> list[DailyFigures]:
    """One entry per day with conversations, oldest first."""
    zone = ZoneInfo(timezone)
    by_day: dict[date, list[Conversation]] = {}
    dials_by_day: dict[date, list[Conversation]] = {}
    starts: dict[str, list[float]] = {}
    for conversation in conversations:
        day = datetime.fromtimestamp(conversation.first_at, zone).date()
        if conversation.dial_result is not None or conversation.dial_skipped is not None:
            dials_by_day.setdefault(day, []).append(conversation)
        if conversation.customer_spoke:
            by_day.setdefault(day, []).append(conversation)
            if conversation.customer:
                starts.setdefault(conversation.customer, []).append(conversation.first_at)
    window = repeat_within_hours * 3600

    def came_back(conversation: Conversation) -> bool:
        return any(conversation.first_at < start <= conversation.first_at + window
                   for start in starts[conversation.customer or ""])

    return [_day(day, by_day.get(day, []), dials_by_day.get(day, []), top, came_back)
            for day in sorted(by_day.keys() | dials_by_day.keys())]


def _day(day: date, conversations: list[Conversation], dials: list[Conversation], top: int,
         came_back: Callable[[Conversation], bool]) -> DailyFigures:
    identified = [c for c in conversations if c.customer]
    handed_over = [c for c in conversations if c.handoff_reasons]
    reasons = Counter(reason for c in handed_over for reason in set(c.handoff_reasons))
    checked = [c for c in conversations if c.identity_asked or c.identity_passed]
    calls = [c for c in conversations if c.voice]
    low = Counter(text for c in conversations for text in c.low_confidence)
    answered = Counter(entry for c in conversations for entry in c.knowledge)
    unanswered = Counter(entry for c in conversations for entry in c.unanswered_near)
    return DailyFigures(
        day=day, conversations=len(conversations), contained=len(conversations) - len(handed_over),
        handovers=len(handed_over), handover_reasons=reasons.most_common(top),
        identity_checks=len(checked), identity_passed=sum(c.identity_passed for c in checked),
        average_handling_seconds=round(sum(c.last_at - c.first_at for c in conversations) / len(conversations), 1)
        if conversations else 0.0,
        voice_calls=len(calls), calls_with_barge_in=sum(c.barge_ins > 0 for c in calls),
        calls_with_silence=sum(any(hit.rule in SILENCE_RULES for hit in c.hits) for c in calls),
        low_confidence=low.most_common(top), identified=len(identified),
        resolved_first_contact=sum(not came_back(c) for c in identified), knowledge_answers=answered.most_common(top),
        unanswered_by_entry=unanswered.most_common(top), outbound_dials=sum(c.dial_result is not None for c in dials),
        outbound_answered=sum(c.dial_result == "answered" for c in dials),
        outbound_skipped=Counter(c.dial_skipped for c in dials if c.dial_skipped).most_common())


def _pairs(pairs: list[tuple[str, int]]) -> str:
    return "; ".join(f"{text}={count}" for text, count in pairs)


def figures_row(figures: DailyFigures) -> dict[str, Any]:
    """One day's figures by the CSV's column names (reasons and utterances as [text, count] pairs):
    the CSV's row and the desk's charts (GET /figures/daily.json)."""
    return {"date": figures.day.isoformat(), "conversations": figures.conversations, "contained": figures.contained,
            "containment_rate": figures.containment_rate, "handovers": figures.handovers,
            "handover_rate": figures.handover_rate, "handover_reasons": figures.handover_reasons,
            "identity_checks": figures.identity_checks, "identity_passed": figures.identity_passed,
            "identity_pass_rate": figures.identity_pass_rate,
            "average_handling_seconds": figures.average_handling_seconds, "voice_calls": figures.voice_calls,
            "barge_in_rate": figures.barge_in_rate, "silence_rate": figures.silence_rate,
            "low_confidence": figures.low_confidence, "identified_conversations": figures.identified,
            "first_contact_resolution": figures.first_contact_resolution,
            "knowledge_answers": figures.knowledge_answers, "unanswered_by_entry": figures.unanswered_by_entry,
            "outbound_dials": figures.outbound_dials, "outbound_answered": figures.outbound_answered,
            "outbound_skipped": figures.outbound_skipped}


def figures_csv(days: list[DailyFigures]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for figures in days:
        row = figures_row(figures)
        writer.writerow([_pairs(row[name]) if isinstance(row[name], list) else row[name] for name in CSV_FIELDS])
    return out.getvalue()


_GAUGES = {"conversations": "Conversations today", "containment_rate": "Share resolved without an agent",
           "handover_rate": "Share handed over to an agent", "identity_pass_rate": "Share of identity checks passed",
           "average_handling_seconds": "Average conversation length (s)", "voice_calls": "Phone calls today",
           "barge_in_rate": "Share of calls with a barge-in", "silence_rate": "Share of calls with a long silence",
           "first_contact_resolution": "Share of verified customers' conversations not followed by another soon",
           "outbound_dials": "Outbound calls placed today", "outbound_answered": "Outbound calls answered today"}


def metric_families(today: DailyFigures | None, hits: Counter[tuple[str, str]], alerts: int, consumed: int,
                    conversations: int) -> list[Metric]:
    """Today's figures as gauges, and the inspection's own counters (served by trust/metrics.py)."""
    consumed_family = CounterMetricFamily("quality_events_consumed", "Stream events inspected since start",
                                          value=consumed)
    alerts_family = CounterMetricFamily("quality_alerts", "Live alerts raised since start", value=alerts)
    tracked = GaugeMetricFamily("quality_conversations_tracked", "Conversations in the inspection's memory",
                                value=conversations)
    hits_family = CounterMetricFamily("quality_rule_hits", "Rule hits since start", labels=["rule", "severity"])
    for (rule, severity), count in sorted(hits.items()):
        hits_family.add_metric([rule, severity], count)
    families: list[Metric] = [consumed_family, alerts_family, tracked, hits_family]
    families += [GaugeMetricFamily(f"quality_today_{name}", help_text, value=getattr(today, name) if today else 0)
                 for name, help_text in _GAUGES.items()]
    reasons = GaugeMetricFamily("quality_today_handovers_by_reason", "Hand-overs today by reason", labels=["reason"])
    for reason, count in today.handover_reasons if today else ():
        reasons.add_metric([reason], count)
    skipped = GaugeMetricFamily("quality_today_outbound_skipped", "Outbound attempts skipped for good today by rule",
                                labels=["rule"])
    for rule, count in today.outbound_skipped if today else ():
        skipped.add_metric([rule], count)
    return [*families, reasons, skipped]
