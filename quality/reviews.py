"""Review and appeal of a conversation's hits, after the conversation (issue 17).

A supervisor reviews each hit: `confirmed` (it stands) or `dismissed` (a false hit). A confirmed
hit may be appealed once; a supervisor other than the appellant decides the appeal: `upheld`
(the hit is dismissed after all) or `rejected` (it stands for good). A dismissed hit no longer
costs the conversation its points: the score here and at /conversations/{id}/score counts only
the hits that stand. Every step is kept with who took it, when and why in the quality database
(quality/store.py `quality_reviews`), so it survives a restart and goes with the conversation at
retention.

Roles and whose conversation it was are the desk's to check (web/app.py: it holds the accounts and
reads the hand-overs): supervisors review and decide; the agent who held the conversation's latest
hand-over appeals, and when no agent took part (the assistant alone, or a hand-over nobody took)
anyone who handles conversations may, since the hits are then the assistant's and someone must be
able to challenge a false one. `by` is the desk's login of the person acting. Here: the order of
the steps, each step once per hit, and nobody deciding their own appeal.

Reasons are free text (1-500 characters), kept masked (a phone, card or ID number typed in is
not kept in clear), shown on the desk, never logged.

GET /reviews/pending?limit=&offset=: the conversations with a hit awaiting a supervisor (to review,
or an appeal to decide), the worst first, then the latest (the desk's list of work: a conversation the assistant
handled alone has no hand-over to open it by). GET /conversations/{id}/review; POST
/conversations/{id}/review {hit, verdict, reason, by},
/conversations/{id}/appeal {hit, reason, by}, /conversations/{id}/appeal/decision
{hit, outcome, reason, by} (each answers the conversation's review as GET does). A bad body is a
400, one over REVIEW_MAX_BODY a 413, an unknown conversation or hit a 404, a step out of order a 409.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import sqlalchemy as sa
from fastapi import FastAPI, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from quality.rules import SEVERITIES, Conversation, Hit
from quality.store import SqlEventStore
from risk_api.masking import mask_text

if TYPE_CHECKING:
    from quality.service import Inspection

log = logging.getLogger("quality.reviews")

REASON_MAX = 500
# A reason of REASON_MAX characters JSON-escaped (up to 6 bytes each) and the other fields.
REVIEW_MAX_BODY = 4 * 1024
LOGIN = r"^[a-z0-9][a-z0-9._-]{1,31}$"  # ivr_config/agents.schema.json
OPEN, CONFIRMED, DISMISSED, APPEALED, UPHELD, REJECTED = (
    "open", "confirmed", "dismissed", "appealed", "upheld", "rejected")
STANDING = frozenset({OPEN, CONFIRMED, APPEALED, REJECTED})  # the states whose hit costs points
AWAITING_SUPERVISOR = (OPEN, APPEALED)  # a review to make, an appeal to decide
PENDING_LIMIT = 500  # the longest list one request answers

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=REASON_MAX)]


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    hit: int = Field(ge=0)  # the hit's number in its conversation (the review's `hits[].hit`)
    reason: Reason
    by: str = Field(pattern=LOGIN)


class Review(Step):
    verdict: Literal["confirmed", "dismissed"]


class Appeal(Step):
    pass


class Decision(Step):
    outcome: Literal["upheld", "rejected"]


Parsed = TypeVar("Parsed", bound=Step)


def body_limit(path: str, otherwise: int) -> int:
    """The review routes take a reason; every other route of the service, `otherwise`."""
    return REVIEW_MAX_BODY if path.startswith("/conversations/") else otherwise


def refused(status: int, code: str, message: str) -> HTTPException:
    return HTTPException(status, {"code": code, "message": message})


@contextmanager
def steps_readable() -> Iterator[None]:
    """503 while the database is down (the hits are in memory, but a score or a list of work
    without the reviews would be wrong)."""
    try:
        yield
    except sa.exc.SQLAlchemyError as error:
        log.error("review steps unreadable: %s", type(error).__name__)
        raise refused(503, "store_unavailable", "质检数据库暂时不可用，请稍后再试。") from None


def steps_of(store: SqlEventStore, conversation_id: str) -> list[dict[str, Any]]:
    """The conversation's review steps (503 while the database is down)."""
    with steps_readable():
        return store.review_steps(conversation_id)


def state_of(steps: list[dict[str, Any]]) -> str:
    """A hit's state from its steps (review, then appeal, then decision)."""
    done = {step["step"]: step["outcome"] for step in steps}
    if "decision" in done:
        return str(done["decision"])
    if "appeal" in done:
        return APPEALED
    return str(done.get("review", OPEN))


def hit_steps(hit: Hit, number: int, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [step for step in steps
            if step["hit"] == number and step["rule"] == hit.rule and step["event_id"] == hit.event_id]


def reviewed_score(inspection: Inspection, conversation: Conversation, steps: list[dict[str, Any]]
                   ) -> dict[str, Any]:
    """The conversation's score counting only the hits that stand, with those dismissed apart."""
    standing, dismissed = [], []
    for number, hit in enumerate(conversation.hits):
        (standing if state_of(hit_steps(hit, number, steps)) in STANDING else dismissed).append(hit)
    scored = inspection.inspector.score(dataclasses.replace(conversation, hits=standing))
    return {**scored, "dismissed": [hit.as_dict() for hit in dismissed]}


def review_view(inspection: Inspection, conversation: Conversation, steps: list[dict[str, Any]]) -> dict[str, Any]:
    hits = []
    for number, hit in enumerate(conversation.hits):
        own = hit_steps(hit, number, steps)
        hits.append({"hit": number, **hit.as_dict(), "state": state_of(own),
                     "steps": [{"step": step["step"], "outcome": step["outcome"], "by": step["actor"],
                                "at": step["at"], "reason": step["reason"]} for step in own]})
    return {"conversation_id": conversation.id, "score": reviewed_score(inspection, conversation, steps)["score"],
            "hits": hits}


def pending_reviews(inspection: Inspection, steps: dict[str, list[dict[str, Any]]], limit: int,
                    offset: int = 0) -> dict[str, Any]:
    """The conversations with hits awaiting a supervisor: per conversation how many wait for a
    review and for a decision, their worst severity and rules; worst first, then the latest (the
    conversation id keeps the order of equals, hence pages, stable); `limit` from `offset` on."""
    pending = []
    for conversation in inspection.inspector.conversations.values():
        own = steps.get(conversation.id, [])
        waiting = [(hit, state) for number, hit in enumerate(conversation.hits)
                   if (state := state_of(hit_steps(hit, number, own))) in AWAITING_SUPERVISOR]
        if not waiting:
            continue
        pending.append({
            "conversation_id": conversation.id, "last_at": conversation.last_at,
            "channel": "outbound" if conversation.outbound else "voice" if conversation.voice else "chat",
            "to_review": sum(state == OPEN for _, state in waiting),
            "appealed": sum(state == APPEALED for _, state in waiting),
            "worst": max((hit.severity for hit, _ in waiting), key=SEVERITIES.index),
            "rules": list(dict.fromkeys(hit.rule for hit, _ in waiting))})
    pending.sort(key=lambda item: (-SEVERITIES.index(item["worst"]), -item["last_at"], item["conversation_id"]))
    return {"conversations": pending[offset:offset + limit], "total": len(pending), "offset": offset}


def parsed(model: type[Parsed], body: bytes) -> Parsed:
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        fields = sorted({str(problem["loc"][0]) for problem in error.errors() if problem["loc"]})
        raise refused(400, "bad_request", "请求内容不正确：" + ("、".join(fields) or "请求体")) from None


def inspected(inspection: Inspection, conversation_id: str) -> Conversation:
    """The conversation the inspection holds; 404 when it holds none (never inspected, or gone at retention)."""
    conversation = inspection.inspector.conversations.get(conversation_id)
    if conversation is None:
        raise refused(404, "not_found", "没有这个会话的质检记录。")
    return conversation


def add_review_routes(app: FastAPI, inspection: Inspection) -> None:
    store = inspection.store

    async def take(conversation_id: str, step: Step, name: str, outcome: str) -> dict[str, Any]:
        conversation = inspected(inspection, conversation_id)
        if step.hit >= len(conversation.hits):
            raise refused(404, "no_hit", "这个会话没有这条质检结果。")
        hit = conversation.hits[step.hit]
        steps = await asyncio.to_thread(steps_of, store, conversation_id)
        own = hit_steps(hit, step.hit, steps)
        state = state_of(own)
        if name == "review" and state != OPEN:
            raise refused(409, "already_reviewed", "这条质检结果已经复核过。")
        if name == "appeal" and state != CONFIRMED:
            raise refused(409, "not_appealable", "只能对复核确认、尚未申诉过的质检结果申诉一次。")
        if name == "decision":
            if state != APPEALED:
                raise refused(409, "no_appeal", "这条质检结果没有待裁定的申诉。")
            if next(s["actor"] for s in own if s["step"] == "appeal") == step.by:
                raise refused(403, "own_appeal", "申诉须由申诉人以外的主管裁定。")
        # A reason is a person's free text: a customer's phone, card or ID number typed into it is
        # masked before it is kept, as every other text of the stream is.
        row = {"conversation_id": conversation_id, "hit": step.hit, "rule": hit.rule, "event_id": hit.event_id,
               "step": name, "outcome": outcome, "actor": step.by, "at": inspection.clock(),
               "reason": mask_text(step.reason)}
        try:
            kept = await asyncio.to_thread(store.add_review_step, row)
        except sa.exc.SQLAlchemyError as error:
            log.error("review step not kept: %s", type(error).__name__)
            raise refused(503, "store_unavailable", "质检数据库暂时不可用，复核未保存，请稍后再试。") from None
        if not kept:
            raise refused(409, "already_decided", "这一步刚由他人完成，请刷新后查看。")
        log.info("quality hit %s: %s (%s)", name, outcome, hit.rule)  # never the reason, nor the conversation
        return review_view(inspection, conversation, [*steps, row])

    @app.get("/reviews/pending")
    async def pending(limit: int = Query(100, ge=1, le=PENDING_LIMIT),
                      offset: int = Query(0, ge=0, le=1_000_000)) -> dict[str, Any]:
        with steps_readable():
            steps = await asyncio.to_thread(store.review_steps_by_conversation)
        return pending_reviews(inspection, steps, limit, offset)

    @app.get("/conversations/{conversation_id}/review")
    async def review(conversation_id: str) -> dict[str, Any]:
        conversation = inspected(inspection, conversation_id)
        return review_view(inspection, conversation, await asyncio.to_thread(steps_of, store, conversation_id))

    @app.post("/conversations/{conversation_id}/review")
    async def review_hit(conversation_id: str, request: Request) -> dict[str, Any]:
        step = parsed(Review, await request.body())
        return await take(conversation_id, step, "review", step.verdict)

    @app.post("/conversations/{conversation_id}/appeal")
    async def appeal(conversation_id: str, request: Request) -> dict[str, Any]:
        return await take(conversation_id, parsed(Appeal, await request.body()), "appeal", APPEALED)

    @app.post("/conversations/{conversation_id}/appeal/decision")
    async def decide(conversation_id: str, request: Request) -> dict[str, Any]:
        step = parsed(Decision, await request.body())
        return await take(conversation_id, step, "decision", step.outcome)
