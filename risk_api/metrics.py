"""The risk API's metrics (trust/metrics.py serves them): decisions, hand-overs, the waiting queue."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from risk_api.db import Handoff

T = TypeVar("T")
PRIORITIES = ("emergency", "high", "normal")

RISK_DECISIONS = Counter("ivr_risk_decisions_total", "Risk decisions, by account action and outcome",
                         ["action", "decision"])
HANDOFFS_CREATED = Counter("ivr_handoffs_created_total", "Hand-overs to an agent, by priority and channel",
                           ["priority", "channel"])


class WaitingHandoffs:
    """`ivr_handoffs_waiting{priority}`: hand-overs no agent has taken yet, read from the database
    at each scrape (every process of the API sees the same queue)."""

    def __init__(self, run: Callable[[Callable[[Session], T]], T]) -> None:
        self.run = run

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rows: dict[str, int] = self.run(lambda session: {priority: count for priority, count in session.execute(
            select(Handoff.priority, func.count()).where(Handoff.status == "waiting").group_by(Handoff.priority))})
        family = self._family()
        for priority in PRIORITIES:
            family.add_metric([priority], rows.get(priority, 0))
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("ivr_handoffs_waiting", "Hand-overs waiting for an agent, by priority",
                                 labels=["priority"])
