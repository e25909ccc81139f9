"""deploy/grafana/ivr-dashboard.json is a Grafana dashboard whose every query reads metrics the
services define (the process registry of every service's metrics module, and the collectors a
service adds to its own endpoint)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import Metric

import bot.metrics
import outbound.metrics
import risk_api.metrics
import telephony.metrics
import trust.metrics
import web.metrics
from quality.figures import metric_families
from stack.services import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "ivr-dashboard.json"
# Imported for the metrics they register.
SERVICE_MODULES = (bot.metrics, outbound.metrics, risk_api.metrics, telephony.metrics, trust.metrics, web.metrics)
# What a series of each type is queried as (prometheus-client's exposition).
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",), "unknown": ("",)}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "inf", "nan"}


def queryable(families: Iterable[Metric]) -> set[str]:
    return {family.name + suffix for family in families for suffix in SUFFIXES[family.type]}


def defined_metrics() -> set[str]:
    own_collectors = [*risk_api.metrics.WaitingHandoffs(lambda work: {}).describe(),
                      *metric_families(None, Counter(), 0, 0, 0)]
    return queryable(REGISTRY.collect()) | queryable(own_collectors)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: its identifiers once strings, label matchers,
    ranges and grouping lists are gone, less functions (followed by a parenthesis) and keywords."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", bare)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", bare)
    return {name for name in re.findall(r"\b[A-Za-z_][A-Za-z0-9_:]*\b(?!\s*\()", bare)
            if name.lower() not in PROMQL_WORDS and not re.fullmatch(r"\d.*", name)}


def queries(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_every_query_reads_metrics_the_code_defines() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["panels"]
    defined = defined_metrics()
    exprs = queries(dashboard)
    assert len(exprs) >= 10
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= defined, f"{expr!r} reads {sorted(names - defined)}, which no service defines"


def test_the_check_would_see_a_metric_no_one_defines() -> None:
    assert metric_names('sum by (rule) (increase(ivr_no_such_thing_total{severity="critical"}[1h])) / 2') \
        == {"ivr_no_such_thing_total"}
    assert "ivr_no_such_thing_total" not in defined_metrics()


def test_panels_have_unique_ids_and_a_prometheus_source() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["type"] == "prometheus" and panel["targets"]
