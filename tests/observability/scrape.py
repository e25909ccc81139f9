"""Reading a service's /metrics as the monitoring system does."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

METRICS_TOKEN = "test-metrics-token-0123456789abcdef"
METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def scrape(base_url: str, token: str = METRICS_TOKEN) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the service's /metrics (with the monitoring token): (name, labels) → value."""
    answer = httpx.get(f"{base_url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(answer.text) for sample in family.samples}


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist yet (a counter never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: dict[tuple[str, frozenset[tuple[str, str]]], float],
          after: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """How far one series moved between two scrapes."""
    return value(after, name, **labels) - value(before, name, **labels)


def refusals(base_url: str, wrong_token: str) -> list[int]:
    """The status of /metrics without a token, with another credential, and with a malformed header."""
    return [httpx.get(f"{base_url}/metrics", headers=headers, timeout=10).status_code
            for headers in ({}, {"Authorization": f"Bearer {wrong_token}"},
                            {"Authorization": METRICS_TOKEN})]
