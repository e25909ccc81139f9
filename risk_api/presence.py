"""Agent presence: the desk's heartbeat per agent; an agent is online while the heartbeats say so."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from risk_api import audit
from risk_api.db import AgentPresence
from risk_api.schemas import AgentSessionEvent, PresenceUpdate

# The desk sends a heartbeat every few seconds; an agent whose last one is older is not online.
PRESENCE_TTL_SECONDS = 60


def _view(agent: str, state: str, last_seen: datetime, now: datetime) -> dict[str, Any]:
    online = state == "online" and now - last_seen <= timedelta(seconds=PRESENCE_TTL_SECONDS)
    return {"agent": agent, "state": state, "last_seen": last_seen.isoformat(), "online": online}


def set_presence(session: Session, agent: str, request: PresenceUpdate, now: datetime) -> dict[str, Any]:
    """Insert or update in one statement: two heartbeats of a new agent at once never collide.
    A change of state is audited; a heartbeat repeating it is not."""
    before = session.scalar(select(AgentPresence.state).where(AgentPresence.agent == agent))
    if before != request.state:
        audit.record(session, at=now, kind="agent_presence", channel="agent",
                     inputs={"agent": agent, "state": request.state, "was": before})
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(AgentPresence).values(agent=agent, state=request.state, last_seen=now)
    session.execute(statement.on_conflict_do_update(
        index_elements=[AgentPresence.agent],
        set_={"state": statement.excluded.state, "last_seen": statement.excluded.last_seen}))
    return _view(agent, request.state, now, now)


def list_presence(session: Session, now: datetime) -> list[dict[str, Any]]:
    return [_view(row.agent, row.state, row.last_seen, now)
            for row in session.scalars(select(AgentPresence).order_by(AgentPresence.agent))]


def agents_online(session: Session, now: datetime) -> int:
    since = now - timedelta(seconds=PRESENCE_TTL_SECONDS)
    return session.scalar(select(func.count()).select_from(AgentPresence).where(
        AgentPresence.state == "online", AgentPresence.last_seen >= since)) or 0


def record_session(session: Session, agent: str, event: AgentSessionEvent, now: datetime) -> dict[str, Any]:
    """An agent logging in to or out of the desk (the web server checked the password)."""
    audit.record(session, at=now, kind=f"agent_{event.event}", channel="agent", inputs={"agent": agent})
    return {"agent": agent, "event": event.event}
