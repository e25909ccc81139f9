"""Tables, engine set-up (SQLite or PostgreSQL) and the schema-version check."""
from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    TypeDecorator,
    inspect,
    select,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.schema import CreateColumn

from ivr_config.database import open_engine
from risk_api.clock import CHINA_TZ
from risk_api.masking import GENERATED_ID_HEX

SCHEMA_VERSION = 6
# Older versions are upgraded in place (prepare_schema), step by step; any other version is refused.
UPGRADABLE_FROM = ("1", "2", "3", "4", "5")
# What schema version 2 added to the hand-overs of version 1 (all nullable: old rows keep theirs).
V2_HANDOFF_COLUMNS = ("closed_at", "closed_by", "disposition", "close_note", "customer_note")
# … and version 3 to those of version 2.
V3_HANDOFF_COLUMNS = ("customer_seen_at",)
DEFAULT_CUSTOMER_TIMEZONE = "Asia/Shanghai"

log = logging.getLogger("risk_api.db")


class SchemaVersionError(RuntimeError):
    """The database was made by another version of this service: never read it blindly."""


class LocalDateTime(TypeDecorator[datetime]):
    """Aware datetimes in code, naive China time in the database (same on SQLite and PG)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.astimezone(CHINA_TZ).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=CHINA_TZ)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: LocalDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class SchemaMeta(Base):
    __tablename__ = "schema_meta"
    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(64))


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    persona: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(40))
    gender: Mapped[str] = mapped_column(String(1))  # M | F
    birth_date: Mapped[date]
    id_number: Mapped[str] = mapped_column(String(18))
    phone: Mapped[str] = mapped_column(String(11), unique=True)
    email: Mapped[str] = mapped_column(String(80))
    vip: Mapped[bool]
    hardship: Mapped[bool]
    do_not_call: Mapped[bool]
    marketing_opt_out: Mapped[bool]
    account_status: Mapped[str] = mapped_column(String(8))  # active | frozen | closed
    frozen_reason: Mapped[str | None] = mapped_column(String(24))  # customer_request | fraud
    frozen_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    real_name_status: Mapped[str] = mapped_column(String(12))
    auto_debit: Mapped[bool]
    phone_changed_on: Mapped[date | None]
    device_id: Mapped[str] = mapped_column(String(40), index=True)
    device_changed_on: Mapped[date | None]
    usual_lat: Mapped[float]
    usual_lon: Mapped[float]
    # Where the customer lives (IANA zone): the outbound calling window is their local time.
    # Schema version 5; the customers of older databases are in China's zone.
    timezone: Mapped[str] = mapped_column(String(40), server_default=DEFAULT_CUSTOMER_TIMEZONE)
    other_lender_applications: Mapped[list[Any]]  # ISO dates of applications elsewhere
    credit_limit_fen: Mapped[int]
    temp_limit_fen: Mapped[int]
    temp_limit_expires_on: Mapped[date | None]
    apr_bp: Mapped[int]  # annual rate in basis points: 1800 = 18.00 %
    address: Mapped[str | None] = mapped_column(String(200))
    employer: Mapped[str | None] = mapped_column(String(200))
    emergency_contact: Mapped[str | None] = mapped_column(String(200))


class Card(Base):
    __tablename__ = "cards"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    number: Mapped[str] = mapped_column(String(19))
    bank: Mapped[str] = mapped_column(String(20))
    is_repayment: Mapped[bool]
    removed: Mapped[bool]


class Loan(Base):
    __tablename__ = "loans"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    contract_no: Mapped[str] = mapped_column(String(32))
    principal_fen: Mapped[int]
    periods: Mapped[int]
    signed_on: Mapped[date]
    status: Mapped[str] = mapped_column(String(8))  # active | settled
    settled_on: Mapped[date | None]
    disbursed_at: Mapped[datetime]
    arrived_at: Mapped[datetime | None]
    card_number: Mapped[str] = mapped_column(String(19))
    bank: Mapped[str] = mapped_column(String(20))


class Installment(Base):
    __tablename__ = "installments"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    loan_id: Mapped[str] = mapped_column(ForeignKey("loans.id"), index=True)
    period: Mapped[int]
    due_date: Mapped[date]
    principal_fen: Mapped[int]
    interest_fen: Mapped[int]
    fee_fen: Mapped[int]
    status: Mapped[str] = mapped_column(String(12))  # unpaid | paid | restructured
    paid_on: Mapped[date | None]
    deferred: Mapped[bool]


class Application(Base):
    __tablename__ = "applications"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    status: Mapped[str] = mapped_column(String(12))  # reviewing|approved|rejected|...
    amount_fen: Mapped[int]
    applied_on: Mapped[date]
    decided_on: Mapped[date | None]
    retry_after: Mapped[date | None]


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    loan_id: Mapped[str | None] = mapped_column(String(16))
    entry_date: Mapped[date]
    amount_fen: Mapped[int]
    kind: Mapped[str] = mapped_column(String(24))  # repayment | early_repayment | ...
    status: Mapped[str] = mapped_column(String(8))  # posted | pending | failed
    failure_reason: Mapped[str | None] = mapped_column(String(80))
    expected_post_date: Mapped[date | None]
    receipt_no: Mapped[str | None] = mapped_column(String(32))


class VerificationSubject(Base):
    """Failure counter and lock of one customer (or of an unregistered phone number)."""

    __tablename__ = "verification_subjects"
    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    failures: Mapped[int]
    locked_until: Mapped[datetime | None]


class VerifiedSession(Base):
    __tablename__ = "verified_sessions"
    session_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    level: Mapped[str] = mapped_column(String(2))
    expires_at: Mapped[datetime]
    last_l2_at: Mapped[datetime | None]
    step_up_requested_at: Mapped[datetime | None]


class VouchedLine(Base):
    """Schema version 4. The line a call comes from, as the phone gateway vouched for it (the
    network's caller number, or the number on file an outbound call dialled): with ID digits, a
    keypad-only caller's L1 (rules.yaml `l1_methods.line_id6`)."""

    __tablename__ = "vouched_lines"
    session_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    channel: Mapped[str] = mapped_column(String(8))
    phone: Mapped[str] = mapped_column(String(11))
    expires_at: Mapped[datetime]


class OtpCode(Base):
    __tablename__ = "otp_codes"
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(128))
    salt: Mapped[str] = mapped_column(String(32))
    code_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    attempts_left: Mapped[int]


class DecisionRecord(Base):
    __tablename__ = "decisions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    action: Mapped[str] = mapped_column(String(24))
    params: Mapped[dict[str, Any]]
    decision: Mapped[str] = mapped_column(String(8))
    reasons: Mapped[list[Any]]
    explanation: Mapped[str] = mapped_column(String(400))
    session_id: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    review_id: Mapped[str | None] = mapped_column(String(40))


class Review(Base):
    __tablename__ = "reviews"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    decision_id: Mapped[str] = mapped_column(ForeignKey("decisions.id"))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    action: Mapped[str] = mapped_column(String(24))
    params: Mapped[dict[str, Any]]
    reasons: Mapped[list[Any]]
    status: Mapped[str] = mapped_column(String(10), index=True)  # pending|approved|rejected
    agent: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(String(500))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class Ticket(Base):
    __tablename__ = "tickets"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"), index=True)
    summary: Mapped[str] = mapped_column(String(1000))
    details: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(8))
    session_id: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime]


class Promise(Base):
    __tablename__ = "promises"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    promise_date: Mapped[date]
    amount_fen: Mapped[int]
    session_id: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime]


class Callback(Base):
    __tablename__ = "callbacks"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"))
    phone: Mapped[str] = mapped_column(String(11))
    scheduled_for: Mapped[datetime]
    session_id: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime]


class Handoff(Base):
    __tablename__ = "handoffs"
    __table_args__ = (
        # The mean handling time of a channel reads its latest closed hand-overs.
        Index("ix_handoffs_channel_closed_at", "channel", "closed_at"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(128), index=True)
    channel: Mapped[str] = mapped_column(String(8))
    flow: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(200))
    priority: Mapped[str] = mapped_column(String(10))
    summary: Mapped[str] = mapped_column(String(2000))
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"))
    verified_level: Mapped[str | None] = mapped_column(String(4))
    # waiting → accepted → closed; waiting → abandoned (the caller hung up in the queue);
    # waiting → unknown (the call left the queue unseen) → accepted → closed
    status: Mapped[str] = mapped_column(String(10), index=True)
    agent: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    # Schema version 2 (V2_HANDOFF_COLUMNS). closed_at: when it ended (closed, or abandoned).
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(64))
    disposition: Mapped[str | None] = mapped_column(String(16))  # resolved|callback_booked|ticket|escalated
    # At most 500 characters in, stored masked: masking may lengthen a number (16 digits → 19).
    close_note: Mapped[str | None] = mapped_column(String(1000))
    customer_note: Mapped[str | None] = mapped_column(String(1000))
    # Schema version 3. When the chat customer's widget last asked where it stands (every few
    # seconds while waiting): a waiting customer gone quiet has left (records.sweep_abandoned_chats).
    customer_seen_at: Mapped[datetime | None]


class AgentPresence(Base):
    """An agent's last heartbeat from the desk (schema version 2)."""

    __tablename__ = "agent_presence"
    agent: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(8))  # online | away | offline
    last_seen: Mapped[datetime]


class AuditEntry(Base):
    __tablename__ = "audit_entries"
    # Schema version 6: the dialler's "contacted N days ago" selection reads one day's
    # verifications without reading the whole audit.
    __table_args__ = (Index("ix_audit_entries_kind_at", "kind", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    channel: Mapped[str | None] = mapped_column(String(8))
    session_id: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str | None] = mapped_column(String(16), index=True)
    inputs: Mapped[dict[str, Any]]
    decision: Mapped[str | None] = mapped_column(String(24))
    rules: Mapped[list[Any]]


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = open_engine(url, serialise_writes=True, pool_size=10, max_overflow=20)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time: queue this process's transactions on a lock rather
        # than in SQLite's busy-wait back-off (which sleeps up to 100 ms per retry).
        self._queue: AbstractContextManager[Any] = (
            threading.Lock() if self.engine.dialect.name == "sqlite" else nullcontext())

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._queue, self._sessions.begin() as session:
            yield session

    def prepare_schema(self, seed: Callable[[Session], None]) -> bool:
        """Create and seed the schema of an empty database in one transaction (True: created),
        or check that an existing database has this code's schema version, upgrading an older
        one (version 1 to 5) in place first (one transaction: all of the upgrade or none of it)."""
        tables = set(inspect(self.engine).get_table_names())
        if not tables:
            with self.transaction() as session:
                Base.metadata.create_all(session.connection())
                session.add(SchemaMeta(key="schema_version", value=str(SCHEMA_VERSION)))
                seed(session)
            return True
        where = make_url(self.url).render_as_string(hide_password=True)
        if "schema_meta" not in tables:
            raise SchemaVersionError(
                f"{where} holds tables but no schema_meta: it is not a risk_api database of "
                f"schema version {SCHEMA_VERSION}. Point RISK_API_DATABASE_URL at an empty "
                "database (or remove the SQLite file to re-create the demo data)."
            )
        with self.transaction() as session:
            # Locked: of two services starting on one old database, one upgrades it and the
            # other then reads the new version (SQLite: the transaction writes alone anyway).
            meta = session.scalar(select(SchemaMeta).where(SchemaMeta.key == "schema_version")
                                  .with_for_update())
            found = meta.value if meta else None
            if meta is not None and found in UPGRADABLE_FROM:
                try:
                    if found == "1":
                        _upgrade_1_to_2(session.connection())
                    if found in ("1", "2"):
                        _add_handoff_columns(session.connection(), V3_HANDOFF_COLUMNS)
                    if found in ("1", "2", "3"):
                        Base.metadata.tables[VouchedLine.__tablename__].create(session.connection())  # version 4
                    if found in ("1", "2", "3", "4"):
                        _add_columns(session.connection(), Customer.__tablename__, ("timezone",))  # version 5
                    _create_missing_indexes(session.connection(), AuditEntry.__tablename__)  # version 6
                except DBAPIError as error:  # rolled back as the exception leaves the transaction
                    raise SchemaVersionError(
                        f"{where}: the upgrade from schema version {found} to {SCHEMA_VERSION} failed and "
                        f"changed nothing: {error.orig}") from error
                meta.value = str(SCHEMA_VERSION)
                log.info("upgraded %s from schema version %s to %s", where, found, SCHEMA_VERSION)
            elif found != str(SCHEMA_VERSION):
                raise SchemaVersionError(
                    f"{where} has schema version {found}, this service needs {SCHEMA_VERSION} "
                    f"(and upgrades only version {', '.join(UPGRADABLE_FROM)}). "
                    "Migrate it or point RISK_API_DATABASE_URL at a new database."
                )
        missing = _missing_tables_and_columns(self.engine)
        if missing:
            raise SchemaVersionError(f"{where} lacks {missing}: schema is damaged")
        return False


def _missing_tables_and_columns(engine: Engine) -> list[str]:
    inspector = inspect(engine)
    tables = set(inspector.get_table_names())
    missing = sorted(set(Base.metadata.tables) - tables)
    for table in Base.metadata.sorted_tables:
        if table.name in tables:
            present = {column["name"] for column in inspector.get_columns(table.name)}
            missing += [f"{table.name}.{column.name}" for column in table.columns if column.name not in present]
    return missing


def _upgrade_1_to_2(connection: Connection) -> None:
    """Version 1 → 2: the hand-over's end (closed_at, closed_by, disposition, close_note) and the
    waiting customer's note as new nullable columns, two indexes, the agent_presence table.
    Nothing is rewritten: every row keeps its values, the new columns start empty."""
    _add_handoff_columns(connection, V2_HANDOFF_COLUMNS)
    _create_missing_indexes(connection, Handoff.__tablename__)
    Base.metadata.tables[AgentPresence.__tablename__].create(connection)


def _create_missing_indexes(connection: Connection, table_name: str) -> None:
    table = Base.metadata.tables[table_name]
    existing = {index["name"] for index in inspect(connection).get_indexes(table.name)}
    for index in table.indexes:
        if index.name not in existing:
            index.create(connection)


def _add_handoff_columns(connection: Connection, names: tuple[str, ...]) -> None:
    """New nullable hand-over columns (version 3: customer_seen_at); old rows keep their values."""
    _add_columns(connection, Handoff.__tablename__, names)


def _add_columns(connection: Connection, table_name: str, names: tuple[str, ...]) -> None:
    """New columns, nullable or with a server default (old rows take it), as the model declares them."""
    table = Base.metadata.tables[table_name]
    for name in names:
        column = CreateColumn(table.columns[name]).compile(dialect=connection.dialect)
        connection.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column}")


def lock_customer(session: Session, customer_id: str) -> Customer | None:
    """Load a customer with a row lock (PG: FOR UPDATE; SQLite: already write-locked)."""
    return session.scalar(select(Customer).where(Customer.id == customer_id).with_for_update())


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:GENERATED_ID_HEX]}"
