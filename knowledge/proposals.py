"""Agents' proposed edits to the knowledge base and the reviewers' decisions: one table, SQLite by
default (next to the index), any SQLAlchemy URL (PostgreSQL) by KNOWLEDGE_PROPOSALS_URL.

A proposal is pending until someone other than its author approves or rejects it; it keeps who
proposed it and why, who decided and why (both free texts with a stated name or a cued code
masked, as everywhere at rest; the desk refuses long digit runs), and when. It names the entry it
was made from by its digest (knowledge/edits.py), so an approval never overwrites a change
approved in between.
Nothing is connected before the first use, so a database that is down never fails a start.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ivr_config import environment
from ivr_config.database import open_engine
from knowledge.edits import EntryEdit, entry_content, entry_digest
from knowledge.model import Entry, served_index_dir
from risk_api.masking import mask_text

URL_ENV = "KNOWLEDGE_PROPOSALS_URL"
DECIDING_LOCK_KEY = 0x6B6E_6F77_6C65_6467  # PostgreSQL advisory lock of knowledge decisions ("knowledg")

_METADATA = sa.MetaData()
PROPOSALS = sa.Table(
    "knowledge_proposals", _METADATA,
    sa.Column("id", sa.String(24), primary_key=True),  # K-<20 hex>
    sa.Column("entry_id", sa.String(120), nullable=False),
    sa.Column("base_digest", sa.String(16), nullable=True),  # None: a new entry
    sa.Column("edit", sa.Text, nullable=False),  # EntryEdit as JSON
    sa.Column("before", sa.Text, nullable=True),  # the entry it was made from, as JSON; None: a new entry
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("proposed_by", sa.String(64), nullable=False),
    sa.Column("proposed_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("decided_by", sa.String(64), nullable=True),
    sa.Column("decided_at", sa.Float, nullable=True),
    sa.Column("note", sa.Text, nullable=False),
    sa.Index("knowledge_proposals_by_status", "status", "proposed_at"),
)


class ProposalError(Exception):
    """A decision that cannot be taken: `code` says why (not_found, decided, own_proposal)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Proposal:
    id: str
    edit: EntryEdit
    base_digest: str | None
    before: dict[str, Any] | None
    reason: str
    proposed_by: str
    proposed_at: float
    status: str
    decided_by: str | None
    decided_at: float | None
    note: str


def proposals_url(env: Mapping[str, str] = os.environ) -> str:
    return environment.text(env, URL_ENV) or f"sqlite:///{served_index_dir(env) / 'proposals.sqlite3'}"


def _proposal(row: Any) -> Proposal:
    return Proposal(id=row.id, edit=EntryEdit.from_dict(json.loads(row.edit)), base_digest=row.base_digest,
                    before=json.loads(row.before) if row.before else None, reason=row.reason,
                    proposed_by=row.proposed_by, proposed_at=row.proposed_at, status=row.status,
                    decided_by=row.decided_by, decided_at=row.decided_at, note=row.note)


class ProposalStore:
    def __init__(self, url: str, clock: Callable[[], float] = time.time) -> None:
        self.engine = open_engine(url)
        self.clock = clock
        self._ready = False
        self._ready_lock = threading.Lock()
        # One decision at a time: a rejection cannot land between an approval's publishing and its
        # record, and two approvals cannot both publish (see `_one_decider`).
        self._deciding = threading.Lock()

    def close(self) -> None:
        self.engine.dispose()

    def _prepare(self) -> None:
        with self._ready_lock:
            if not self._ready:
                _METADATA.create_all(self.engine)
                self._ready = True

    def propose(self, edit: EntryEdit, before: Entry | None, reason: str, by: str) -> Proposal:
        """`before`: the entry as the edit was made from it (None for a new one)."""
        self._prepare()
        row = {"id": f"K-{secrets.token_hex(10)}", "entry_id": edit.entry_id, "base_digest": entry_digest(before),
               "edit": json.dumps(edit.as_dict(), ensure_ascii=False),
               "before": json.dumps(entry_content(before), ensure_ascii=False) if before else None,
               "reason": mask_text(reason), "proposed_by": by, "proposed_at": self.clock(), "status": "pending",
               "decided_by": None, "decided_at": None, "note": ""}
        with self.engine.begin() as connection:
            connection.execute(PROPOSALS.insert().values(**row))
        found = self.get(row["id"])
        assert found is not None
        return found

    def get(self, proposal_id: str) -> Proposal | None:
        self._prepare()
        with self.engine.connect() as connection:
            row = connection.execute(PROPOSALS.select().where(PROPOSALS.c.id == proposal_id)).first()
        return _proposal(row) if row else None

    def listed(self, status: str | None = None, proposed_by: str | None = None, limit: int = 20,
               offset: int = 0) -> tuple[list[Proposal], int]:
        """A page of proposals, the oldest first (the first to decide), and how many there are in all."""
        self._prepare()
        where = [column == value for column, value in ((PROPOSALS.c.status, status),
                                                       (PROPOSALS.c.proposed_by, proposed_by)) if value is not None]
        query = PROPOSALS.select().where(*where).order_by(PROPOSALS.c.proposed_at, PROPOSALS.c.id)
        with self.engine.connect() as connection:
            rows = connection.execute(query.limit(limit).offset(offset)).all()
            total = connection.execute(sa.select(sa.func.count()).select_from(PROPOSALS).where(*where)).scalar_one()
        return [_proposal(row) for row in rows], int(total)

    def decide(self, proposal_id: str, approve: bool, by: str, note: str,
               publish: Callable[[Proposal], None] = lambda proposal: None) -> Proposal:
        """Approve (after `publish` succeeded: what it raises leaves the proposal pending) or reject.
        Only a pending proposal, only by someone other than its author; of two deciding at once, one wins."""
        with self._one_decider():
            return self._decide(proposal_id, approve, by, note, publish)

    @contextmanager
    def _one_decider(self) -> Iterator[None]:
        """This process's lock, and on PostgreSQL a session advisory lock held on a connection of its
        own for the whole decision: desks on several hosts share the proposals database, and their
        entries folder may be a network file system whose flock is not shared between hosts (NFS
        mounted with local_lock, or nolock). SQLite's database is one machine's; there the
        publisher's flock on the index folder serialises processes."""
        with self._deciding:
            if self.engine.dialect.name != "postgresql":
                yield
                return
            # Autocommit: the lock is the session's, and no transaction stays open while publishing.
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": DECIDING_LOCK_KEY})
                try:
                    yield
                finally:
                    connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": DECIDING_LOCK_KEY})

    def _decide(self, proposal_id: str, approve: bool, by: str, note: str,
                publish: Callable[[Proposal], None]) -> Proposal:
        proposal = self.get(proposal_id)
        if proposal is None:
            raise ProposalError("not_found", f"no proposal {proposal_id}")
        if proposal.status != "pending":
            raise ProposalError("decided", f"{proposal_id} was {proposal.status} by {proposal.decided_by}")
        if proposal.proposed_by == by:
            raise ProposalError("own_proposal", "a proposal is decided by someone other than its author")
        if approve:
            publish(proposal)
        with self.engine.begin() as connection:
            done = connection.execute(
                PROPOSALS.update().where(PROPOSALS.c.id == proposal_id, PROPOSALS.c.status == "pending")
                .values(status="approved" if approve else "rejected", decided_by=by, decided_at=self.clock(),
                        note=mask_text(note)))
        if done.rowcount != 1:
            raise ProposalError("decided", f"{proposal_id} was decided by someone else meanwhile")
        decided = self.get(proposal_id)
        assert decided is not None
        return decided
