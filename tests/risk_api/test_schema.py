"""Schema versions: a version 1 to 5 database is upgraded in place, losing nothing; others are refused."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Column, Engine, ForeignKey, MetaData, String, Table, create_engine, inspect, select, text

from risk_api.app import create_app
from risk_api.clock import ShiftedClock
from risk_api.config import Settings
from risk_api.db import (
    DEFAULT_CUSTOMER_TIMEZONE,
    SCHEMA_VERSION,
    V2_HANDOFF_COLUMNS,
    V3_HANDOFF_COLUMNS,
    Base,
    Database,
    LocalDateTime,
    SchemaVersionError,
)
from risk_api.demo import CUSTOMERS_PER_TAG, PERSONA_TAGS, seed
from tests.risk_api.helpers import DESK_TOKEN, TOKEN, serve

# Schema version 1 as it was released: every table of today but agent_presence and vouched_lines
# (version 4), and hand-overs without the columns version 2 added.
V1 = MetaData()
for _table in Base.metadata.sorted_tables:
    if _table.name not in ("handoffs", "agent_presence", "vouched_lines"):
        _table.to_metadata(V1)
V1_HANDOFFS = Table(
    "handoffs", V1,
    Column("id", String(40), primary_key=True),
    Column("session_id", String(128), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("flow", String(64), nullable=False),
    Column("reason", String(200), nullable=False),
    Column("priority", String(10), nullable=False),
    Column("summary", String(2000), nullable=False),
    Column("customer_id", String(16), ForeignKey("customers.id")),
    Column("verified_level", String(4)),
    Column("status", String(10), nullable=False, index=True),
    Column("agent", String(64)),
    Column("created_at", LocalDateTime, nullable=False),
    Column("accepted_at", LocalDateTime),
)


def never_seed(_: object) -> None:
    raise AssertionError("an existing database is never seeded")


@contextmanager
def engine_of(url: str) -> Iterator[Engine]:
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def make_v1_database(url: str, clock: ShiftedClock, version: str = "1") -> list[dict[str, object]]:
    """Schema version 1 with three hand-overs in it (waiting, accepted, abandoned): their rows."""
    now = clock.now()
    rows: list[dict[str, object]] = [
        {"id": "H-" + "a" * 20, "session_id": "v1-chat-session", "channel": "chat", "flow": "bill_inquiry",
         "reason": "客户要求人工", "priority": "high", "summary": "客户询问账单，电话199****0001",
         "customer_id": None, "verified_level": "none", "status": "waiting", "agent": None,
         "created_at": now - timedelta(seconds=300), "accepted_at": None},
        {"id": "H-" + "b" * 20, "session_id": "v1-voice-session", "channel": "voice", "flow": "repayment",
         "reason": "转人工", "priority": "normal", "summary": "客户要求人工", "customer_id": None,
         "verified_level": "L1", "status": "accepted", "agent": "agent-1",
         "created_at": now - timedelta(seconds=200), "accepted_at": now - timedelta(seconds=100)},
        {"id": "H-" + "c" * 20, "session_id": "v1-gone-session", "channel": "voice", "flow": "repayment",
         "reason": "转人工", "priority": "normal", "summary": "客户挂断", "customer_id": None,
         "verified_level": "none", "status": "abandoned", "agent": None,
         "created_at": now - timedelta(seconds=900), "accepted_at": None},
    ]
    with engine_of(url) as engine, engine.begin() as connection:
        V1.create_all(connection)
        connection.execute(text("ALTER TABLE customers DROP COLUMN timezone"))  # version 5
        connection.execute(V1.tables["schema_meta"].insert().values(key="schema_version", value=version))
        connection.execute(V1_HANDOFFS.insert(), rows)
    return rows


def prepared_again(url: str) -> bool:
    """The service's start on an existing database: True would mean it created (and seeded) one."""
    database = Database(url)
    try:
        return database.prepare_schema(never_seed)
    finally:
        database.engine.dispose()


def handoff_columns(url: str) -> set[str]:
    with engine_of(url) as engine:
        return {column["name"] for column in inspect(engine).get_columns("handoffs")}


def schema_version(url: str) -> str:
    with engine_of(url) as engine, engine.connect() as connection:
        return str(connection.scalar(text("SELECT value FROM schema_meta WHERE key = 'schema_version'")))


def test_a_version_1_database_is_upgraded_in_place_and_keeps_its_handoffs(
        empty_database: str, tmp_path: Path) -> None:
    clock = ShiftedClock()
    with clock.held():
        waiting, accepted, abandoned = make_v1_database(empty_database, clock)
        assert not set(V2_HANDOFF_COLUMNS) & handoff_columns(empty_database)
        settings = Settings(token=TOKEN, role_tokens={"desk": DESK_TOKEN}, database_url=empty_database,
                            sms_outbox=tmp_path / "outbox.jsonl")
        with serve(create_app(settings, clock=clock)) as base_url, httpx.Client(
                base_url=base_url, headers={"Authorization": f"Bearer {DESK_TOKEN}"}, timeout=30) as desk:
            assert httpx.get(f"{base_url}/health").json()["schema_version"] == SCHEMA_VERSION
            assert schema_version(empty_database) == str(SCHEMA_VERSION)
            assert set(V2_HANDOFF_COLUMNS + V3_HANDOFF_COLUMNS) <= handoff_columns(empty_database)
            with engine_of(empty_database) as engine, engine.connect() as connection:
                kept = [dict(row._mapping) for row in connection.execute(
                    select(V1_HANDOFFS).order_by(V1_HANDOFFS.c.id))]
            assert kept == [waiting, accepted, abandoned], "every version 1 value as it was"

            detail = desk.get(f"/handoffs/{waiting['id']}").json()
            assert {key: detail[key] for key in ("session_id", "channel", "flow", "reason", "priority", "summary",
                                                 "verified_level", "status")} == {
                key: waiting[key] for key in ("session_id", "channel", "flow", "reason", "priority", "summary",
                                              "verified_level", "status")}
            assert {key: detail[key] for key in ("closed_at", "closed_by", "disposition", "close_note",
                                                 "customer_note", "handling_seconds")} == dict.fromkeys(
                ("closed_at", "closed_by", "disposition", "close_note", "customer_note", "handling_seconds"))
            # No agent online and no closed chat hand-over yet: one round of the default 180 s.
            assert (detail["waiting_seconds"], detail["agents_online"], detail["position"],
                    detail["estimated_wait_seconds"]) == (300, 0, 1, 180)
            old_abandoned = desk.get("/handoffs", params={"status": "abandoned"}).json()
            assert [(h["handoff_id"], h["waiting_seconds"]) for h in old_abandoned] == [(abandoned["id"], None)], \
                "version 1 did not record when a caller hung up: no made-up waiting time"

            closed = desk.post(f"/handoffs/{accepted['id']}/close",
                               json={"agent": "agent-1", "disposition": "resolved", "note": "已解答"})
            assert closed.status_code == 200, closed.text
            assert (closed.json()["status"], closed.json()["handling_seconds"]) == ("closed", 100)
            noted = desk.post(f"/handoffs/{waiting['id']}/customer-note",
                              json={"session_id": waiting["session_id"], "text": "我还在等"})
            assert noted.status_code == 200, noted.text
            assert desk.put("/agents/agent-1/presence", json={"state": "online"}).json()["online"] is True
    # Started again on the upgraded database: nothing to upgrade, nothing refused.
    assert prepared_again(empty_database) is False, "nothing created or seeded"
    assert schema_version(empty_database) == str(SCHEMA_VERSION)


def test_a_version_2_database_is_upgraded_in_place_and_keeps_its_handoffs(empty_database: str) -> None:
    clock = ShiftedClock()
    with clock.held():
        rows = make_v1_database(empty_database, clock)
    with engine_of(empty_database) as engine, engine.begin() as connection:
        # Version 2 as released: version 1 plus its hand-over columns and agent_presence.
        for name in V2_HANDOFF_COLUMNS:
            connection.execute(text(f"ALTER TABLE handoffs ADD COLUMN {name} VARCHAR(1000)"))
        Base.metadata.tables["agent_presence"].create(connection)
        connection.execute(text("UPDATE schema_meta SET value = '2' WHERE key = 'schema_version'"))
    assert prepared_again(empty_database) is False, "nothing created or seeded"
    assert schema_version(empty_database) == str(SCHEMA_VERSION)
    assert set(V3_HANDOFF_COLUMNS) <= handoff_columns(empty_database)
    with engine_of(empty_database) as engine, engine.connect() as connection:
        kept = [dict(row._mapping) for row in connection.execute(select(V1_HANDOFFS).order_by(V1_HANDOFFS.c.id))]
        assert kept == rows, "every version 2 value as it was"
        assert connection.scalar(text("SELECT count(*) FROM handoffs WHERE customer_seen_at IS NOT NULL")) == 0


CUSTOMER_ROWS = "SELECT id, name, phone, credit_limit_fen FROM customers ORDER BY id"


def upgraded_from_today_less(url: str, version: str, *undone: str) -> list[tuple[Any, ...]]:
    """Today's schema, seeded, with what later versions added undone (`undone` statements) and
    labelled `version`, then started on: the customers before the upgrade."""
    database = Database(url)
    try:
        assert database.prepare_schema(lambda session: seed(session, ShiftedClock().now())) is True
        with engine_of(url) as engine, engine.begin() as connection:
            before = [tuple(row) for row in connection.execute(text(CUSTOMER_ROWS))]
            for statement in undone:
                connection.execute(text(statement))
            connection.execute(text("UPDATE schema_meta SET value = :v WHERE key = 'schema_version'"), {"v": version})
        assert database.prepare_schema(never_seed) is False
    finally:
        database.engine.dispose()
    assert schema_version(url) == str(SCHEMA_VERSION)
    return before


def test_a_version_3_database_is_upgraded_with_the_table_of_vouched_lines(empty_database: str) -> None:
    # Version 3: today's but the lines the phone gateway vouched for (4) and the customers' time zones (5).
    upgraded_from_today_less(empty_database, "3", "DROP TABLE vouched_lines",
                             "ALTER TABLE customers DROP COLUMN timezone")
    with engine_of(empty_database) as engine:
        assert "vouched_lines" in inspect(engine).get_table_names()


def test_a_version_4_database_gives_its_customers_chinas_time_zone_and_keeps_them(empty_database: str) -> None:
    before = upgraded_from_today_less(empty_database, "4", "ALTER TABLE customers DROP COLUMN timezone")
    with engine_of(empty_database) as engine, engine.connect() as connection:
        after = [tuple(row) for row in connection.execute(text(CUSTOMER_ROWS))]
        zones = connection.execute(text("SELECT DISTINCT timezone FROM customers")).scalars().all()
    assert len(before) == CUSTOMERS_PER_TAG * len(PERSONA_TAGS) and after == before, "every customer as they were"
    assert zones == [DEFAULT_CUSTOMER_TIMEZONE]


def test_a_version_5_database_gets_the_index_the_contacted_selection_reads_and_keeps_its_customers(
        empty_database: str) -> None:
    before = upgraded_from_today_less(empty_database, "5", "DROP INDEX ix_audit_entries_kind_at")
    with engine_of(empty_database) as engine, engine.connect() as connection:
        indexes = {index["name"]: index["column_names"] for index in inspect(engine).get_indexes("audit_entries")}
        after = [tuple(row) for row in connection.execute(text(CUSTOMER_ROWS))]
    assert indexes["ix_audit_entries_kind_at"] == ["kind", "at"]
    assert after == before


def test_a_database_of_an_unknown_schema_version_is_refused_untouched(empty_database: str) -> None:
    make_v1_database(empty_database, ShiftedClock(), version="7")
    database = Database(empty_database)
    try:
        with pytest.raises(SchemaVersionError, match="schema version 7"):
            database.prepare_schema(never_seed)
    finally:
        database.engine.dispose()
    assert schema_version(empty_database) == "7"
    assert not set(V2_HANDOFF_COLUMNS) & handoff_columns(empty_database)


def test_a_version_2_label_on_version_1_tables_is_refused_as_damaged(empty_database: str) -> None:
    make_v1_database(empty_database, ShiftedClock(), version="2")
    with engine_of(empty_database) as engine, engine.begin() as connection:
        Base.metadata.tables["agent_presence"].create(connection)
    database = Database(empty_database)
    try:
        with pytest.raises(SchemaVersionError, match=r"damaged") as refused:
            database.prepare_schema(never_seed)
    finally:
        database.engine.dispose()
    assert "handoffs.closed_at" in str(refused.value)


def test_an_upgrade_that_fails_half_way_leaves_the_version_1_database_as_it_was(empty_database: str) -> None:
    rows = make_v1_database(empty_database, ShiftedClock())
    with engine_of(empty_database) as engine, engine.begin() as connection:
        # In the way of the upgrade's last step, after the new hand-over columns are added.
        connection.execute(text("CREATE TABLE agent_presence (agent VARCHAR(64) PRIMARY KEY)"))
    database = Database(empty_database)
    try:
        with pytest.raises(SchemaVersionError, match="changed nothing"):
            database.prepare_schema(never_seed)
    finally:
        database.engine.dispose()
    assert schema_version(empty_database) == "1"
    assert not set(V2_HANDOFF_COLUMNS) & handoff_columns(empty_database), "all of the upgrade or none of it"
    with engine_of(empty_database) as engine, engine.connect() as connection:
        assert [dict(row._mapping) for row in connection.execute(
            select(V1_HANDOFFS).order_by(V1_HANDOFFS.c.id))] == rows
