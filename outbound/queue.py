"""The dialler's persistent job queue: SQLAlchemy, SQLite by default, PostgreSQL by URL.

One row per call attempt, with an idempotent id `<campaign>:<customer>:<cycle>:<n>` (the cycle is
the bill the call is about, its due date, or `list` for a CSV campaign; n counts the calls of the
series). An attempt moves

    queued ──claim (lease)──▶ claimed ──decide: allowed──▶ dialling ──result──▶ ended
      ▲                          │ decide: deferred (rule, retry_at) → queued
      └──── lease expired ───────┤ decide: final (rule)               → skipped (the series ends)
    dialling ──lease expired (the dialler died)──▶ ended, result "unknown": never dialled again

Exactly once: `dialling` is committed before the Originate is sent, and only from `claimed` by
the dialler holding a live lease; nothing ever moves an attempt back from `dialling` except the
originator's certain "not sent" (`not_sent`). A dialler that dies after recording `dialling`
leaves the attempt to the lease reaper, which ends it as `unknown` (the call may or may not have
been placed) and schedules the next attempt of the series with its backoff: the customer gets
their next call, never the same attempt twice. Claims are conditional updates (and `FOR UPDATE
SKIP LOCKED` on PostgreSQL), so of two diallers exactly one gets an attempt.

Every compliance decision is stored (`outbound_decisions`) in the transaction that acts on it,
with the counts it was based on taken in that same transaction (PostgreSQL: under an advisory
lock per number and per customer; SQLite: every transaction writes alone). The numbers are never
stored: only a keyed digest (`number_ref`) to count calls per number and block numbers.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (
    DateTime,
    Index,
    Integer,
    String,
    TypeDecorator,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from ivr_config.database import open_engine
from outbound.campaigns import Campaign
from outbound.compliance import CallFacts, Compliance, Decision, timezone_of

SCHEMA_VERSION = 2
# Version 1 lacks only the operators' campaign controls (a new table): upgraded in place.
UPGRADABLE_FROM = ("1",)
DEFAULT_DATABASE_URL = "sqlite:///var/outbound.sqlite3"
RESULTS = ("answered", "no_answer", "busy", "failed", "machine", "unknown")
# What the conversation came to, when the dialogue reports it (record_conversation_outcome).
# `paid`: the risk API shows the bill paid; `claims_paid`: the customer says so, the risk API does
# not (yet); `handed_over`: a person took the call over, the end is theirs.
CONVERSATION_OUTCOMES = ("completed", "paid", "claims_paid", "promise_to_pay", "refused", "callback_requested",
                         "handed_over", "opted_out", "third_party", "third_party_refused", "wrong_number", "hung_up")
NUMBER_BLOCKING_OUTCOMES = ("third_party_refused", "wrong_number")

log = logging.getLogger(__name__)


class QueueSchemaError(RuntimeError):
    """The database holds another schema version (or is not the dialler's)."""


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in code, naive UTC in the database (the same on SQLite and PostgreSQL)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the queue needs aware times")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime}


class Meta(Base):
    __tablename__ = "outbound_meta"
    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(64))


class CampaignRow(Base):
    """A campaign's run state: active | paused | stopped (by an operator) | refused (a CSV with
    unknown ids) | removed."""

    __tablename__ = "outbound_campaigns"
    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    state: Mapped[str] = mapped_column(String(8))
    priority: Mapped[int]
    max_channels: Mapped[int]
    selected_on: Mapped[date | None]  # the day (China time) of the last selection from the risk API
    plan_after: Mapped[datetime | None]  # a failed selection is tried again from then
    error: Mapped[str | None] = mapped_column(String(1000))
    updated_at: Mapped[datetime]


class CampaignControl(Base):
    """An operator's pause or stop from the agent desk (schema version 2): it outlives restarts,
    which otherwise set a campaign's state from its file."""

    __tablename__ = "outbound_campaign_controls"
    campaign_id: Mapped[str] = mapped_column(String(48), primary_key=True)
    state: Mapped[str] = mapped_column(String(8))  # paused | stopped
    by: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]


class Member(Base):
    """One customer's call series in a campaign, for one cycle (bill)."""

    __tablename__ = "outbound_members"
    __table_args__ = (Index("ix_outbound_members_campaign_customer", "campaign_id", "customer_id"),)
    id: Mapped[str] = mapped_column(String(100), primary_key=True)  # <campaign>:<customer>:<cycle>
    campaign_id: Mapped[str] = mapped_column(String(48))
    customer_id: Mapped[str] = mapped_column(String(16))
    cycle: Mapped[str] = mapped_column(String(16))
    # active | answered | exhausted (every attempt used) | skipped (a final rule) | removed
    status: Mapped[str] = mapped_column(String(10), index=True)
    attempts: Mapped[int]  # attempts that reached `dialling`
    rule: Mapped[str | None] = mapped_column(String(32))
    result: Mapped[str | None] = mapped_column(String(12))
    conversation_outcome: Mapped[str | None] = mapped_column(String(24))
    created_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class Attempt(Base):
    __tablename__ = "outbound_attempts"
    __table_args__ = (
        Index("ix_outbound_attempts_claim", "campaign_id", "status", "not_before"),
        Index("ix_outbound_attempts_number_day", "number_ref", "dialling_at"),
        Index("ix_outbound_attempts_customer_day", "campaign_id", "customer_id", "dialling_at"),
        Index("ix_outbound_attempts_lease", "status", "lease_until"),
    )
    id: Mapped[str] = mapped_column(String(104), primary_key=True)  # <member id>:<number>
    member_id: Mapped[str] = mapped_column(String(100))
    campaign_id: Mapped[str] = mapped_column(String(48))
    customer_id: Mapped[str] = mapped_column(String(16))
    cycle: Mapped[str] = mapped_column(String(16))
    number: Mapped[int]
    # queued | claimed | dialling | ended | skipped | cancelled (the series ended before it was dialled)
    status: Mapped[str] = mapped_column(String(10))
    not_before: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    number_ref: Mapped[str | None] = mapped_column(String(64))  # keyed digest of the number dialled
    action_id: Mapped[str | None] = mapped_column(String(64))
    uniqueid: Mapped[str | None] = mapped_column(String(64))  # Asterisk's channel Uniqueid
    result: Mapped[str | None] = mapped_column(String(12))  # RESULTS
    reason: Mapped[str | None] = mapped_column(String(200))
    rule: Mapped[str | None] = mapped_column(String(32))  # the final rule that skipped it
    conversation_outcome: Mapped[str | None] = mapped_column(String(24))
    created_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None]
    dialling_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    call_ended_at: Mapped[datetime | None]  # an answered call's hang-up (frees its channel for pacing)


class DecisionRow(Base):
    __tablename__ = "outbound_decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    attempt_id: Mapped[str] = mapped_column(String(104), index=True)
    campaign_id: Mapped[str] = mapped_column(String(48))
    customer_id: Mapped[str] = mapped_column(String(16), index=True)
    allowed: Mapped[bool]
    rule: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(300))
    retry_at: Mapped[datetime | None]
    owner: Mapped[str] = mapped_column(String(64))


class NumberBlock(Base):
    """A number never to be called again (a third party refused, a wrong number)."""

    __tablename__ = "outbound_number_blocks"
    number_ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(24))
    attempt_id: Mapped[str] = mapped_column(String(104))
    at: Mapped[datetime]


class DoNotCall(Base):
    """Customers who opted out during a call: not called again even before the risk API knows."""

    __tablename__ = "outbound_do_not_call"
    customer_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    source: Mapped[str] = mapped_column(String(24))
    attempt_id: Mapped[str | None] = mapped_column(String(104))
    at: Mapped[datetime]
    reported_at: Mapped[datetime | None]  # when the risk API took it (POST /outbound/do-not-call)


@dataclass(frozen=True)
class Claimed:
    attempt_id: str
    member_id: str
    campaign_id: str
    customer_id: str
    cycle: str
    number: int


@dataclass(frozen=True)
class Planned:
    customer_id: str
    cycle: str
    not_before: datetime


@dataclass(frozen=True)
class Contact:
    """What the risk API says about a customer just before a call (the number is not kept)."""

    customer_id: str
    number_ref: str
    timezone: str
    do_not_call: bool
    marketing_opt_out: bool
    still_selected: bool


@dataclass(frozen=True)
class Reaped:
    released: int  # claimed, never dialled: back in the queue
    lost: list[str]  # dialling with an expired lease: ended "unknown", never dialled again


def member_id(campaign_id: str, customer_id: str, cycle: str) -> str:
    return f"{campaign_id}:{customer_id}:{cycle}"


def attempt_id(member: str, number: int) -> str:
    return f"{member}:{number}"


class Queue:
    def __init__(self, url: str = DEFAULT_DATABASE_URL) -> None:
        self.url = url
        self.engine = open_engine(url, serialise_writes=True, pool_size=5, max_overflow=10)
        self.postgres = self.engine.dialect.name == "postgresql"
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # One writer at a time in this process on SQLite: wait on a lock, not in SQLite's busy loop.
        self._local: AbstractContextManager[Any] = threading.Lock() if not self.postgres else nullcontext()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._local, self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # --- schema -------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the tables of an empty database, or check an existing one's schema version. Two
        diallers starting at once on PostgreSQL: one creates, the other waits and checks."""
        where = make_url(self.url).render_as_string(hide_password=True)
        with self.transaction() as session:
            if self.postgres:
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key("schema")})
            connection = session.connection()
            Base.metadata.create_all(connection)  # only the missing tables
            meta = session.get(Meta, "schema_version")
            if meta is None:
                session.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
            elif meta.value in UPGRADABLE_FROM:  # create_all above added what was missing
                log.info("dialler database upgraded from schema version %s to %s", meta.value, SCHEMA_VERSION)
                meta.value = str(SCHEMA_VERSION)
            elif meta.value != str(SCHEMA_VERSION):
                raise QueueSchemaError(f"{where} has dialler schema version {meta.value}, this dialler needs "
                                       f"{SCHEMA_VERSION}: point OUTBOUND_DATABASE_URL at a new database")

    # --- campaigns and planning ---------------------------------------------------------------

    def sync_campaigns(self, campaigns: Mapping[str, Campaign], now: datetime) -> None:
        """The campaign rows as the files say (a refused campaign stays refused until its file
        changes and it is planned again; a campaign whose file is gone is `removed`), and as an
        operator paused or stopped them."""
        with self.transaction() as session:
            rows = {row.id: row for row in session.scalars(select(CampaignRow))}
            controls = {control.campaign_id: control.state for control in session.scalars(select(CampaignControl))}
            for campaign in campaigns.values():
                row = rows.get(campaign.id)
                state = controls.get(campaign.id, "active") if campaign.enabled else "paused"
                if row is None:
                    session.add(CampaignRow(id=campaign.id, state=state, priority=campaign.priority,
                                            max_channels=campaign.max_channels, selected_on=None,
                                            plan_after=None, error=None, updated_at=now))
                    continue
                if row.state == "refused" and state == "active":
                    row.selected_on = None  # plan it again: the file may have been fixed
                    row.error = None
                row.state, row.priority, row.max_channels, row.updated_at = (
                    state, campaign.priority, campaign.max_channels, now)
            for campaign_id, row in rows.items():
                if campaign_id not in campaigns and row.state != "removed":
                    row.state, row.updated_at = "removed", now

    def campaign_states(self) -> dict[str, dict[str, Any]]:
        with self.transaction() as session:
            return {row.id: {"state": row.state, "error": row.error,
                             "selected_on": row.selected_on.isoformat() if row.selected_on else None}
                    for row in session.scalars(select(CampaignRow))}

    def control_campaign(self, campaign: Campaign, state: str, by: str, now: datetime) -> str:
        """An operator's start (`active`), pause or stop; the campaign's state after it. Stopping
        skips its queued attempts for good (rule `campaign_stopped`); calls already placed go on.
        Raises KeyError for a campaign the queue does not run, ValueError for one that cannot be
        started (its file says `enabled: false`, or its CSV was refused: the file must change)."""
        if state not in ("active", "paused", "stopped"):
            raise ValueError(f"unknown campaign state {state!r}")
        with self.transaction() as session:
            row = session.get(CampaignRow, campaign.id, with_for_update=True)
            if row is None or row.state == "removed":
                raise KeyError(campaign.id)
            if state == "active" and (not campaign.enabled or row.state == "refused"):
                raise ValueError("its file says enabled: false" if not campaign.enabled
                                 else "its customer list was refused: fix the file first")
            control = session.get(CampaignControl, campaign.id)
            if state == "active":
                if control is not None:
                    session.delete(control)
            elif control is None:
                session.add(CampaignControl(campaign_id=campaign.id, state=state, by=by, at=now))
            else:
                control.state, control.by, control.at = state, by, now
            row.state, row.updated_at = state, now
            if state == "stopped":
                queued = session.scalars(select(Attempt).where(Attempt.campaign_id == campaign.id,
                                                               Attempt.status == "queued").with_for_update())
                for attempt in queued:
                    session.add(DecisionRow(at=now, attempt_id=attempt.id, campaign_id=campaign.id,
                                            customer_id=attempt.customer_id, allowed=False, rule="campaign_stopped",
                                            detail=f"stopped by {by}"[:300], retry_at=None, owner=by))
                    self._skip(session, attempt, "campaign_stopped", now)
            return state

    def campaign_report(self, campaign_id: str) -> dict[str, Any]:
        """Counts only, for the desk: series by status, calls by result, what the conversations
        came to, attempts skipped by each final rule, and calls deferred by each rule."""
        with self.transaction() as session:
            def grouped(column: Any, *where: Any) -> dict[str, int]:
                rows = session.execute(select(column, func.count()).where(*where).group_by(column))
                return {str(key): int(count) for key, count in rows if key is not None}

            return {
                "series": grouped(Member.status, Member.campaign_id == campaign_id),
                "calls": grouped(Attempt.result, Attempt.campaign_id == campaign_id, Attempt.dialling_at.is_not(None)),
                "outcomes": grouped(Member.conversation_outcome, Member.campaign_id == campaign_id),
                "skipped": grouped(Attempt.rule, Attempt.campaign_id == campaign_id, Attempt.status == "skipped"),
                "deferred": grouped(DecisionRow.rule, DecisionRow.campaign_id == campaign_id,
                                    DecisionRow.allowed.is_(False), DecisionRow.retry_at.is_not(None)),
            }

    def begin_planning(self, campaign_id: str, today: date, now: datetime) -> bool:
        """True for the one dialler that selects the campaign's customers today."""
        with self.transaction() as session:
            changed = session.execute(
                update(CampaignRow)
                .where(CampaignRow.id == campaign_id, CampaignRow.state == "active",
                       or_(CampaignRow.selected_on.is_(None), CampaignRow.selected_on < today),
                       or_(CampaignRow.plan_after.is_(None), CampaignRow.plan_after <= now))
                .values(selected_on=today, updated_at=now))
            return bool(changed.rowcount)  # type: ignore[attr-defined]

    def planning_failed(self, campaign_id: str, retry_at: datetime) -> None:
        with self.transaction() as session:
            row = session.get(CampaignRow, campaign_id)
            if row is not None:
                row.selected_on, row.plan_after = None, retry_at

    def refuse_campaign(self, campaign_id: str, error: str, now: datetime) -> None:
        with self.transaction() as session:
            row = session.get(CampaignRow, campaign_id)
            if row is not None:
                row.state, row.error, row.updated_at = "refused", error[:1000], now

    def enqueue(self, campaign: Campaign, planned: Sequence[Planned], now: datetime) -> int:
        """A series (member and its first attempt) for each planned customer that has none for
        this cycle yet; idempotent. Returns how many were new."""
        new = 0
        for start in range(0, len(planned), 500):
            batch = planned[start:start + 500]
            ids = {member_id(campaign.id, item.customer_id, item.cycle): item for item in batch}
            with self.transaction() as session:
                known = set(session.scalars(select(Member.id).where(Member.id.in_(ids))))
                for mid, item in ids.items():
                    if mid in known:
                        continue
                    session.add(Member(id=mid, campaign_id=campaign.id, customer_id=item.customer_id,
                                       cycle=item.cycle, status="active", attempts=0, rule=None, result=None,
                                       conversation_outcome=None, created_at=now, ended_at=None))
                    session.add(_new_attempt(mid, campaign.id, item.customer_id, item.cycle, 1, item.not_before, now))
                    new += 1
        return new

    # --- claiming -----------------------------------------------------------------------------

    def claim(self, owner: str, now: datetime, lease: timedelta, limit: int,
              max_call: timedelta = timedelta(minutes=20),
              channel_limits: Mapping[str, int] | None = None) -> list[Claimed]:
        """Up to `limit` due attempts for `owner`, most important campaign first, each campaign
        within its `max_channels` (attempts claimed or dialling, and answered calls not yet hung up,
        counted over every dialler) and, for those named in `channel_limits`, within that too
        (a campaign paced to the agents free now)."""
        if limit <= 0:
            return []
        claimed: list[Claimed] = []
        with self.transaction() as session:
            campaigns = list(session.scalars(
                select(CampaignRow).where(CampaignRow.state == "active")
                .order_by(CampaignRow.priority.desc(), CampaignRow.id).with_for_update()))
            for campaign in campaigns:
                channels = min(campaign.max_channels, (channel_limits or {}).get(campaign.id, campaign.max_channels))
                room = min(channels - self._busy(session, campaign.id, now, max_call), limit - len(claimed))
                if room <= 0:
                    continue
                rows = session.scalars(
                    select(Attempt).where(Attempt.campaign_id == campaign.id, Attempt.status == "queued",
                                          Attempt.not_before <= now)
                    .order_by(Attempt.not_before, Attempt.id).limit(room).with_for_update(skip_locked=True))
                for attempt in rows:
                    taken = session.execute(
                        update(Attempt).where(Attempt.id == attempt.id, Attempt.status == "queued")
                        .values(status="claimed", lease_owner=owner, lease_until=now + lease, claimed_at=now))
                    if taken.rowcount:  # type: ignore[attr-defined]
                        claimed.append(Claimed(attempt.id, attempt.member_id, attempt.campaign_id,
                                               attempt.customer_id, attempt.cycle, attempt.number))
                if len(claimed) >= limit:
                    break
        return claimed

    @staticmethod
    def _busy(session: Session, campaign_id: str, now: datetime, max_call: timedelta) -> int:
        return int(session.scalar(select(func.count()).select_from(Attempt).where(
            Attempt.campaign_id == campaign_id,
            or_(Attempt.status.in_(("claimed", "dialling")),
                # A machine's channel stays up while it hears the campaign's message.
                Attempt.result.in_(("answered", "machine")) & Attempt.call_ended_at.is_(None)
                & (Attempt.ended_at > now - max_call)))) or 0)

    def renew(self, owner: str, attempt_ids: Iterable[str], now: datetime, lease: timedelta) -> None:
        ids = list(attempt_ids)
        if not ids:
            return
        with self.transaction() as session:
            session.execute(update(Attempt).where(Attempt.id.in_(ids), Attempt.lease_owner == owner,
                                                  Attempt.status.in_(("claimed", "dialling")))
                            .values(lease_until=now + lease))

    def release(self, claimed: Claimed, owner: str, not_before: datetime) -> bool:
        """A claimed attempt back to the queue, undialled (e.g. the risk API did not answer)."""
        with self.transaction() as session:
            released = session.execute(
                update(Attempt).where(Attempt.id == claimed.attempt_id, Attempt.status == "claimed",
                                      Attempt.lease_owner == owner)
                .values(status="queued", lease_owner=None, lease_until=None, not_before=not_before))
            return bool(released.rowcount)  # type: ignore[attr-defined]

    # --- deciding and dialling ----------------------------------------------------------------

    def decide(self, claimed: Claimed, owner: str, campaign: Campaign, compliance: Compliance, contact: Contact,
               now: datetime) -> Decision | None:
        """Apply the compliance rules to a claimed attempt and act on the decision in one
        transaction: allowed → `dialling` (committed before the caller sends the Originate);
        deferred → back to the queue until `retry_at`; final → skipped, and its series ends.
        None when the attempt is no longer this dialler's (its lease expired): do not dial."""
        with self.transaction() as session:
            if self.postgres:  # the counts below must not change until this decision is recorded
                for key in (f"number:{contact.number_ref}", f"customer:{claimed.customer_id}"):
                    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(key)})
            attempt = session.get(Attempt, claimed.attempt_id, with_for_update=True)
            if (attempt is None or attempt.status != "claimed" or attempt.lease_owner != owner
                    or attempt.lease_until is None or attempt.lease_until <= now):
                return None
            facts = self._facts(session, claimed, contact, now)
            decision = compliance.decide(campaign, facts, now)
            session.add(DecisionRow(at=now, attempt_id=attempt.id, campaign_id=attempt.campaign_id,
                                    customer_id=attempt.customer_id, allowed=decision.allowed, rule=decision.rule,
                                    detail=decision.detail[:300], retry_at=decision.retry_at, owner=owner))
            if decision.allowed:
                attempt.status, attempt.dialling_at, attempt.number_ref = "dialling", now, contact.number_ref
                member = session.get(Member, attempt.member_id, with_for_update=True)
                if member is not None:
                    member.attempts = max(member.attempts, attempt.number)
            elif decision.final:
                self._skip(session, attempt, decision.rule or "skipped", now)
            else:
                assert decision.retry_at is not None
                attempt.status, attempt.not_before = "queued", decision.retry_at
                attempt.lease_owner = attempt.lease_until = None
        log.info("attempt %s: %s%s", claimed.attempt_id, "dial" if decision.allowed else f"not now: {decision.rule}",
                 "" if decision.allowed or decision.final else f" until {decision.retry_at:%Y-%m-%d %H:%M}Z")
        return decision

    def _facts(self, session: Session, claimed: Claimed, contact: Contact, now: datetime) -> CallFacts:
        zone = timezone_of(contact.timezone)
        counts = {"unanswered_on_number_today": 0, "campaign_calls_today": 0, "campaign_calls_this_week": 0}
        if zone is not None:
            day_start, day_end = Compliance.local_day(now, zone)
            week_start, week_end = Compliance.local_week(now, zone)
            counts["unanswered_on_number_today"] = int(session.scalar(
                select(func.count()).select_from(Attempt).where(
                    Attempt.number_ref == contact.number_ref, Attempt.dialling_at >= day_start,
                    Attempt.dialling_at < day_end,
                    or_(Attempt.result.is_(None), Attempt.result != "answered"))) or 0)

            def campaign_calls(start: datetime, end: datetime) -> int:
                return int(session.scalar(select(func.count()).select_from(Attempt).where(
                    Attempt.campaign_id == claimed.campaign_id, Attempt.customer_id == claimed.customer_id,
                    Attempt.dialling_at >= start, Attempt.dialling_at < end)) or 0)

            counts["campaign_calls_today"] = campaign_calls(day_start, day_end)
            counts["campaign_calls_this_week"] = campaign_calls(week_start, week_end)
        block = session.get(NumberBlock, contact.number_ref)
        return CallFacts(timezone=contact.timezone, do_not_call=contact.do_not_call,
                         marketing_opt_out=contact.marketing_opt_out,
                         opted_out_in_call=session.get(DoNotCall, claimed.customer_id) is not None,
                         still_selected=contact.still_selected,
                         number_block=block.reason if block else None, **counts)

    def skip(self, claimed: Claimed, owner: str, rule: str, detail: str, now: datetime) -> None:
        """A claimed attempt skipped for good outside the compliance rules' facts (e.g. the risk API
        no longer knows the customer); recorded as a decision like the others."""
        with self.transaction() as session:
            attempt = session.get(Attempt, claimed.attempt_id, with_for_update=True)
            if attempt is None or attempt.status != "claimed" or attempt.lease_owner != owner:
                return
            session.add(DecisionRow(at=now, attempt_id=attempt.id, campaign_id=attempt.campaign_id,
                                    customer_id=attempt.customer_id, allowed=False, rule=rule, detail=detail[:300],
                                    retry_at=None, owner=owner))
            self._skip(session, attempt, rule, now)

    @staticmethod
    def _skip(session: Session, attempt: Attempt, rule: str, now: datetime) -> None:
        attempt.status, attempt.rule, attempt.ended_at = "skipped", rule, now
        attempt.lease_owner = attempt.lease_until = None
        member = session.get(Member, attempt.member_id, with_for_update=True)
        if member is not None and member.status == "active":
            member.status, member.rule, member.ended_at = "skipped", rule, now

    def not_sent(self, claimed: Claimed, owner: str, not_before: datetime) -> bool:
        """The originator is certain nothing reached Asterisk (it was not connected): the attempt
        goes back to the queue as if never claimed. The one way back from `dialling`."""
        with self.transaction() as session:
            attempt = session.get(Attempt, claimed.attempt_id, with_for_update=True)
            if attempt is None or attempt.status != "dialling" or attempt.lease_owner != owner:
                return False
            attempt.status, attempt.not_before, attempt.dialling_at, attempt.number_ref = (
                "queued", not_before, None, None)
            attempt.lease_owner = attempt.lease_until = None
            member = session.get(Member, attempt.member_id, with_for_update=True)
            if member is not None:
                member.attempts = attempt.number - 1
            return True

    def complete(self, attempt_id: str, campaign: Campaign | None, result: str, now: datetime, *,
                 reason: str | None = None, action_id: str | None = None, uniqueid: str | None = None) -> bool:
        """The dial's result. From `dialling` as a rule; a result arriving after the reaper ended
        the attempt as `unknown` corrects it (an answer then also cancels the retry it scheduled).
        Then the series goes on: answered ends it, anything else schedules the next attempt after
        the campaign's backoff, or ends it when every attempt is used."""
        if result not in RESULTS:
            raise ValueError(f"unknown result {result!r}")
        with self.transaction() as session:
            attempt = session.get(Attempt, attempt_id, with_for_update=True)
            if attempt is None:
                return False
            late = attempt.status == "ended" and attempt.result == "unknown" and result != "unknown"
            if attempt.status == "ended" and attempt.result == "machine" and result == "answered":
                # The dialplan's machine event came before the OriginateResponse: keep the ids only.
                attempt.action_id = action_id or attempt.action_id
                attempt.uniqueid = uniqueid or attempt.uniqueid
                return False
            if attempt.status != "dialling" and not late:
                log.warning("attempt %s: result %s ignored (attempt is %s)", attempt_id, result, attempt.status)
                return False
            attempt.status, attempt.result, attempt.ended_at = "ended", result, now
            attempt.reason = (reason or "")[:200] or None
            attempt.action_id = action_id or attempt.action_id
            attempt.uniqueid = uniqueid or attempt.uniqueid
            attempt.lease_owner = attempt.lease_until = None
            self._follow_up(session, attempt, campaign, now)
            return True

    def _follow_up(self, session: Session, attempt: Attempt, campaign: Campaign | None, now: datetime) -> None:
        member = session.get(Member, attempt.member_id, with_for_update=True)
        if member is None:
            return
        if attempt.result == "answered":
            member.status, member.result, member.ended_at = "answered", "answered", now
            for later in session.scalars(select(Attempt).where(
                    Attempt.member_id == member.id, Attempt.number > attempt.number,
                    Attempt.status.in_(("queued", "claimed")))):
                later.status, later.ended_at, later.lease_owner, later.lease_until = "cancelled", now, None, None
            return
        member.result = attempt.result
        if member.status != "active":
            return
        if campaign is None:
            member.status, member.rule, member.ended_at = "removed", "campaign_removed", now
            return
        if attempt.number >= campaign.attempts.max_attempts:
            member.status, member.ended_at = "exhausted", now
            return
        following = attempt_id(member.id, attempt.number + 1)
        if session.get(Attempt, following) is None:
            wait = campaign.attempts.backoff(attempt.result or "failed", attempt.number)
            session.add(_new_attempt(member.id, attempt.campaign_id, attempt.customer_id, attempt.cycle,
                                     attempt.number + 1, now + wait, now))

    def machine(self, attempt_id: str, campaigns: Mapping[str, Campaign], detail: str, now: datetime) -> str | None:
        """Asterisk's AMD() found an answering machine on the attempt's call (the dialplan's
        UserEvent, correlated by OriginateId). It may come before the OriginateResponse (the attempt
        is still `dialling`) or after it (`answered`, or `unknown` if the wait ran out): the attempt
        ends as `machine` either way, an "answered" series is reopened, and the series goes on with
        the campaign's retry rules. The attempt's campaign when it changed; None when nothing did
        (a repeat, an unknown id)."""
        with self.transaction() as session:
            attempt = session.get(Attempt, attempt_id, with_for_update=True)
            if attempt is None or attempt.result == "machine":
                return None
            ended = attempt.status == "ended" and attempt.result in ("answered", "unknown")
            if attempt.status != "dialling" and not ended:
                log.warning("attempt %s: machine ignored (attempt is %s)", attempt_id, attempt.status)
                return None
            reopen = attempt.result == "answered"
            attempt.status, attempt.result, attempt.reason = "ended", "machine", detail[:200]
            attempt.ended_at = attempt.ended_at or now
            attempt.lease_owner = attempt.lease_until = None
            member = session.get(Member, attempt.member_id, with_for_update=True)
            if reopen and member is not None and member.status == "answered":
                member.status, member.ended_at = "active", None
            self._follow_up(session, attempt, campaigns.get(attempt.campaign_id), now)
            return attempt.campaign_id

    def reap(self, now: datetime, campaigns: Mapping[str, Campaign]) -> Reaped:
        """Expired leases: a claimed attempt goes back to the queue (nothing was sent); a dialling
        one ends as `unknown` and is never dialled again (its Originate may have been sent)."""
        with self.transaction() as session:
            released = session.execute(
                update(Attempt).where(Attempt.status == "claimed", Attempt.lease_until < now)
                .values(status="queued", lease_owner=None, lease_until=None))
            lost = list(session.scalars(select(Attempt).where(Attempt.status == "dialling", Attempt.lease_until < now)
                                        .with_for_update(skip_locked=True)))
            for attempt in lost:
                attempt.status, attempt.result, attempt.ended_at = "ended", "unknown", now
                attempt.reason = "the dialler holding it stopped after recording the dial: not dialled again"
                attempt.lease_owner = attempt.lease_until = None
                self._follow_up(session, attempt, campaigns.get(attempt.campaign_id), now)
        for attempt in lost:
            log.warning("attempt %s: its dialler's lease expired while dialling: ended as unknown", attempt.id)
        return Reaped(int(released.rowcount or 0), [attempt.id for attempt in lost])  # type: ignore[attr-defined]

    def call_ended(self, attempt_id: str, now: datetime) -> None:
        """An answered call hung up: its channel counts no more against the campaign's pacing."""
        with self.transaction() as session:
            session.execute(update(Attempt).where(Attempt.id == attempt_id, Attempt.call_ended_at.is_(None))
                            .values(call_ended_at=now))

    # --- after the call -----------------------------------------------------------------------

    def record_conversation_outcome(self, attempt_id: str, outcome: str, now: datetime) -> Attempt | None:
        """What the conversation came to. `opted_out` puts the customer on the dialler's own
        do-not-call list at once (the caller also tells the risk API); `third_party_refused` and
        `wrong_number` block the number dialled. Returns the attempt (None: unknown id)."""
        if outcome not in CONVERSATION_OUTCOMES:
            raise ValueError(f"unknown conversation outcome {outcome!r}; known: {', '.join(CONVERSATION_OUTCOMES)}")
        with self.transaction() as session:
            attempt = session.get(Attempt, attempt_id, with_for_update=True)
            if attempt is None:
                return None
            attempt.conversation_outcome = outcome
            member = session.get(Member, attempt.member_id, with_for_update=True)
            if member is not None:
                member.conversation_outcome = outcome
            if outcome == "opted_out" and session.get(DoNotCall, attempt.customer_id) is None:
                session.add(DoNotCall(customer_id=attempt.customer_id, source="conversation", attempt_id=attempt.id,
                                      at=now, reported_at=None))
            if outcome in NUMBER_BLOCKING_OUTCOMES and attempt.number_ref \
                    and session.get(NumberBlock, attempt.number_ref) is None:
                session.add(NumberBlock(number_ref=attempt.number_ref, reason=outcome, attempt_id=attempt.id, at=now))
            return attempt

    def unreported_opt_outs(self) -> list[DoNotCall]:
        with self.transaction() as session:
            return list(session.scalars(select(DoNotCall).where(DoNotCall.reported_at.is_(None))))

    def opt_out_reported(self, customer_id: str, now: datetime) -> None:
        with self.transaction() as session:
            row = session.get(DoNotCall, customer_id)
            if row is not None:
                row.reported_at = now

    # --- reading (tests, health, the desk's campaigns page and its CSV export) ---------------------

    def attempts(self, campaign_id: str | None = None) -> list[Attempt]:
        with self.transaction() as session:
            query = select(Attempt).order_by(Attempt.created_at, Attempt.id)
            if campaign_id:
                query = query.where(Attempt.campaign_id == campaign_id)
            return list(session.scalars(query))

    def members(self, campaign_id: str | None = None) -> list[Member]:
        with self.transaction() as session:
            query = select(Member).order_by(Member.id)
            if campaign_id:
                query = query.where(Member.campaign_id == campaign_id)
            return list(session.scalars(query))

    def decisions(self, customer_id: str | None = None) -> list[DecisionRow]:
        with self.transaction() as session:
            query = select(DecisionRow).order_by(DecisionRow.id)
            if customer_id:
                query = query.where(DecisionRow.customer_id == customer_id)
            return list(session.scalars(query))

    def counts(self) -> dict[str, int]:
        """Attempts by status (health endpoint: counts only, no customer)."""
        with self.transaction() as session:
            return {status: int(count) for status, count in
                    session.execute(select(Attempt.status, func.count()).group_by(Attempt.status))}


def _new_attempt(member: str, campaign_id: str, customer_id: str, cycle: str, number: int, not_before: datetime,
                 now: datetime) -> Attempt:
    return Attempt(id=attempt_id(member, number), member_id=member, campaign_id=campaign_id,
                   customer_id=customer_id, cycle=cycle, number=number, status="queued", not_before=not_before,
                   lease_owner=None, lease_until=None, number_ref=None, action_id=None, uniqueid=None, result=None,
                   reason=None, rule=None, conversation_outcome=None, created_at=now, claimed_at=None,
                   dialling_at=None, ended_at=None, call_ended_at=None)


def _lock_key(name: str) -> int:
    """A stable 32-bit key for PostgreSQL's advisory locks."""
    return zlib.crc32(f"outbound:{name}".encode())
