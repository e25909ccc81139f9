"""The inspection service over a real (temporary SQLite) event store: it reads from its cursor,
raises alerts for critical hits, scores conversations, serves figures (with its bearer token) and
metrics (with the monitoring token), and refuses a development token outside development."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ivr_config.environment import SettingsError
from quality.rules import FlowFacts, Inspector, load_rules
from quality.service import Inspection, QualitySettings, create_app
from quality.store import SqlEventStore
from tests.quality.scripts import START, Script, stream, verified_bill_chat

TOKEN = "test-quality-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
METRICS_TOKEN = "test-metrics-token-0123456789"
METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture
def store(tmp_path: Path) -> SqlEventStore:
    return SqlEventStore(f"sqlite:///{tmp_path / 'events.sqlite3'}")


def inspection_of(store: SqlEventStore) -> Inspection:
    return Inspection(store, Inspector(load_rules(), FlowFacts.from_repository()), clock=lambda: START + 3600)


async def test_the_service_reads_the_stream_incrementally_and_alerts_on_critical_hits(store: SqlEventStore) -> None:
    inspection = inspection_of(store)
    store.append(stream(verified_bill_chat("chat-ok")))
    assert await inspection.poll() > 0 and inspection.alerts_raised == 0
    leak = Script("chat-leak").user("查账单").bot("应还1200元").bot(flow="bill_inquiry", outcome="answer").listen()
    store.append(stream(leak))
    assert await inspection.poll() == 4  # only what came after the cursor
    assert await inspection.poll() == 0
    client = TestClient(create_app(inspection, TOKEN))
    alerts = client.get("/alerts", headers=AUTH).json()
    assert [(a["seq"], a["rule"], a["conversation_id"]) for a in alerts["alerts"]] == [
        (1, "identity_before_detail", "chat-leak")]
    assert client.get("/alerts?after=1", headers=AUTH).json() == {"alerts": [], "last": 1}
    assert client.get("/conversations/chat-leak/score", headers=AUTH).json()["score"] == 60
    assert client.get("/conversations/chat-ok/score", headers=AUTH).json()["broken"] == []
    assert client.get("/conversations/nobody/score", headers=AUTH).status_code == 404
    daily = client.get("/figures/daily.csv", headers=AUTH)
    assert daily.headers["content-type"].startswith("text/csv") and "2026-01-01,2," in daily.text
    assert client.get("/metrics", headers=AUTH).status_code == 401  # the desk's token is not the monitoring one
    metrics = TestClient(create_app(inspection, TOKEN, METRICS_TOKEN)).get("/metrics", headers=METRICS_AUTH).text
    assert "quality_today_conversations 2.0\n" in metrics and "quality_alerts_total 1.0\n" in metrics


def test_every_route_but_health_needs_the_token(store: SqlEventStore) -> None:
    client = TestClient(create_app(inspection_of(store), TOKEN))
    assert client.get("/health").status_code == 200
    for path in ("/alerts", "/conversations/x/score", "/figures/daily.csv", "/figures/daily.json", "/metrics"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    refused = client.request("GET", "/alerts", headers=AUTH, content=b"x" * 5000)
    assert refused.status_code == 413


def test_settings_refuse_a_development_token_outside_development() -> None:
    with pytest.raises(SettingsError, match="QUALITY_API_TOKEN"):
        QualitySettings.from_env({"QUALITY_API_TOKEN": "dev-only-quality-api-token"})
    with pytest.raises(SettingsError, match="QUALITY_API_TOKEN is not set"):
        QualitySettings.from_env({})
    settings = QualitySettings.from_env({"QUALITY_API_TOKEN": "dev-only-quality-api-token", "IVR_ENV": "development",
                                         "QUALITY_EVENTS_URL": "sqlite:///x.sqlite3"})
    assert settings.events_url == "sqlite:///x.sqlite3" and settings.host == "127.0.0.1"


async def test_the_daily_figures_as_json_for_the_desks_charts(store: SqlEventStore) -> None:
    inspection = inspection_of(store)
    store.append(stream(verified_bill_chat("day-one"), verified_bill_chat("day-two", START + 86400),
                        verified_bill_chat("day-three", START + 2 * 86400)))
    await inspection.poll()
    client = TestClient(create_app(inspection, TOKEN))
    days = client.get("/figures/daily.json", headers=AUTH).json()["days"]
    assert [day["date"] for day in days] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert days[0]["conversations"] == 1 and days[0]["containment_rate"] == 1.0
    assert days[0]["identity_pass_rate"] == 1.0 and days[0]["first_contact_resolution"] == 1.0
    assert isinstance(days[0]["handover_reasons"], list)  # [reason, count] pairs, not the CSV's text
    last_two = client.get("/figures/daily.json?days=2", headers=AUTH).json()["days"]
    assert [day["date"] for day in last_two] == ["2026-01-02", "2026-01-03"]
    for bad in ("0", "91", "many"):
        assert client.get(f"/figures/daily.json?days={bad}", headers=AUTH).status_code == 422

