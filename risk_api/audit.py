"""Audit log: every verification, decision, action and record, with masked inputs."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from risk_api.db import AuditEntry
from risk_api.masking import mask_inputs
from trust.logs import session_ref

log = logging.getLogger("risk_api.audit")


def record(session: Session, *, at: datetime, kind: str, inputs: dict[str, Any],
           customer_id: str | None = None, channel: str | None = None,
           session_id: str | None = None, decision: str | None = None,
           rules: list[str] | None = None) -> None:
    masked = mask_inputs(inputs)
    session.add(AuditEntry(at=at, channel=channel, session_id=session_id, kind=kind,
                           customer_id=customer_id, inputs=masked, decision=decision,
                           rules=rules or []))
    # Logs name a conversation by its digest (trust/logs.py), the inputs' copy of its id too.
    logged = {**masked, "session_id": session_ref(masked["session_id"])} if masked.get("session_id") else masked
    log.info("%s customer=%s session=%s decision=%s rules=%s inputs=%s",
             kind, customer_id, session_ref(session_id), decision, rules or [], logged)


def entries(session: Session, customer_id: str | None, limit: int) -> list[dict[str, Any]]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if customer_id:
        query = query.where(AuditEntry.customer_id == customer_id)
    return [{
        "time": entry.at.isoformat(), "channel": entry.channel, "session_id": entry.session_id,
        "kind": entry.kind, "customer_id": entry.customer_id, "inputs": entry.inputs,
        "decision": entry.decision, "rules": entry.rules,
    } for entry in session.scalars(query)]
