"""The knowledge base on the agent desk: an agent proposes an edit of an entry (or a new one, or
its retirement), a reviewer other than its author approves or rejects it; an approved edit is
published into the entries files (knowledge/edits.py) and indexed, and the action servers serve it
at their next look at the entries (at most a minute, bot/actions/knowledge_answers.py): no restart.

An edit the linter would refuse is refused when it is proposed, with the linter's reasons, and
checked again when it is approved (the knowledge base may have moved on). The person recorded is
always the one logged in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from knowledge.edits import (
    EditConflict,
    EditRefused,
    EntryEdit,
    build_index,
    categories,
    entry_content,
    entry_digest,
    find_entry,
    prepare,
)
from knowledge.edits import publish as publish_edit
from knowledge.lint import has_personal_number
from knowledge.model import Entry, KnowledgeError
from knowledge.proposals import Proposal, ProposalError, ProposalStore
from web import pages
from web.accounts import Agent

log = logging.getLogger("web.knowledge")
ENTRY_ID = r"^[a-z][a-z0-9_]{0,40}\.[a-z][a-z0-9_]{0,60}$"  # knowledge/schema.json's id, bounded
PROPOSAL_ID = r"^K-[0-9a-f]{20}$"
PROPOSALS_PAGE = 20
# A proposal's body: up to 30 phrasings of 80 characters, the two answers and a reason, every
# character JSON-escaped (up to 6 bytes each).
MAX_BODY = 32 * 1024
STATUS_NAMES = {"pending": "待审核", "approved": "已发布", "rejected": "已驳回"}
FIELD_NAMES = {"reason": "修改原因", "note": "审核意见"}
ENTRY_STATUS_NAMES = {"approved": "在用", "proposed": "待审核", "retired": "已停用"}
NOT_WRITABLE = "知识库文件无法写入，提议仍待审核：请运维检查 KNOWLEDGE_ENTRIES_DIR 的权限。"

Phrasing = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=80)]
Answer = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=300)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class ProposedEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entry_id: Annotated[str, StringConstraints(pattern=ENTRY_ID)]
    # The digest of the entry as the agent saw it (GET …/entries/{id}); null for a new entry.
    base_digest: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")] | None
    question: Phrasing
    paraphrases: list[Phrasing] = Field(min_length=3, max_length=30)
    chat: Answer | None = None
    voice: Answer | None = None
    retire: bool = False
    reason: Reason


class ProposalDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    approve: bool
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = ""


@dataclass(frozen=True)
class KnowledgeDesk:
    """Where the served entries are, the flows they may point to, the index (and publishing lock) and
    the proposals."""

    entries_dir: Path
    flows_dir: Path
    index_dir: Path
    store: ProposalStore


def entry_for_desk(entry: Entry) -> dict[str, Any]:
    return {"entry_id": entry.id, "category": entry.category, **entry_content(entry),
            "status_name": ENTRY_STATUS_NAMES.get(entry.status, entry.status), "digest": entry_digest(entry)}


def refused(error: EditRefused) -> HTTPException:
    """The problems in Chinese for the page, and as the linter words them (file and field) for whoever
    edits the files."""
    return HTTPException(422, {"code": "refused", "message": "知识库检查未通过，未保存。", "problems": error.chinese,
                               "details": error.problems})


def without_personal_numbers(field: str, text: str) -> None:
    """A reason or a note is kept as written: no customer's phone, ID or card number in it."""
    if has_personal_number(text):
        raise refused(EditRefused(
            [f"{field}: has a number of seven digits or more (a phone, ID or card number?): no personal data here"],
            [f"{FIELD_NAMES[field]}含七位以上连续数字（手机号、身份证号或卡号？），不能写入客户个人信息"]))


def knowledge_routes(knowledge: KnowledgeDesk, logged_in_agent: Callable[[Request], Agent | None],
                     require_agent: Callable[[Request, str], Agent], name_of: Callable[[str], str]) -> APIRouter:
    router = APIRouter()

    def reader(request: Request) -> Agent:
        """Anyone logged in to the desk reads the entries and proposals they may see."""
        agent = logged_in_agent(request)
        if agent is None:
            raise HTTPException(401, "login required")
        return agent

    def for_desk(proposal: Proposal, viewer: Agent) -> dict[str, Any]:
        current = find_entry(knowledge.entries_dir, proposal.edit.entry_id)
        return {"proposal_id": proposal.id, "entry_id": proposal.edit.entry_id, "edit": proposal.edit.as_dict(),
                "before": proposal.before,  # what the proposer changed (None: a new entry)
                # The entry changed since it was proposed: approving it is refused.
                "stale": proposal.status == "pending" and entry_digest(current) != proposal.base_digest,
                "reason": proposal.reason, "proposed_by": name_of(proposal.proposed_by),
                "proposed_at": proposal.proposed_at, "status": proposal.status,
                "status_name": STATUS_NAMES[proposal.status],
                "decided_by": name_of(proposal.decided_by) if proposal.decided_by else None,
                "decided_at": proposal.decided_at, "note": proposal.note,
                "may_decide": (proposal.status == "pending" and viewer.may("review")
                               and viewer.login != proposal.proposed_by)}

    @router.get("/desk/knowledge", response_class=HTMLResponse)
    def knowledge_page(request: Request) -> Response:
        agent = logged_in_agent(request)
        if agent is None:
            return RedirectResponse("/desk", status_code=303)
        return HTMLResponse(pages.knowledge_page(agent))

    @router.get("/desk/api/knowledge/categories")
    async def knowledge_categories(request: Request) -> list[dict[str, str]]:
        reader(request)
        listed = await asyncio.to_thread(categories, knowledge.entries_dir)
        return [{"category": category, "name": name} for category, name in listed]

    @router.get("/desk/api/knowledge/entries/{entry_id}")
    async def knowledge_entry(entry_id: Annotated[str, PathParam(pattern=ENTRY_ID)],
                              request: Request) -> dict[str, Any]:
        reader(request)
        entry = await asyncio.to_thread(find_entry, knowledge.entries_dir, entry_id)
        if entry is None:
            raise HTTPException(404, {"code": "not_found", "message": "知识库没有这个条目，提交即为新增。"})
        return entry_for_desk(entry)

    @router.post("/desk/api/knowledge/proposals")
    async def propose(proposed: ProposedEdit, request: Request) -> JSONResponse:
        """Checked now, against the entries as they are; kept pending for a reviewer."""
        agent = require_agent(request, "handle")
        without_personal_numbers("reason", proposed.reason)
        edit = EntryEdit(entry_id=proposed.entry_id, question=proposed.question,
                         paraphrases=tuple(proposed.paraphrases), chat=proposed.chat, voice=proposed.voice,
                         retire=proposed.retire)
        try:
            _, _, before = await asyncio.to_thread(prepare, knowledge.entries_dir, knowledge.flows_dir, edit,
                                                   proposed.base_digest)
        except EditConflict as error:
            raise HTTPException(409, {"code": "entry_changed",
                                      "message": "条目已被修改，请重新载入后再提议。"}) from error
        except EditRefused as error:
            raise refused(error) from error
        proposal = await asyncio.to_thread(knowledge.store.propose, edit, before, proposed.reason, agent.login)
        log.info("knowledge proposal %s for %s by %s", proposal.id, edit.entry_id, agent.login)
        return JSONResponse(for_desk(proposal, agent), status_code=201)

    @router.get("/desk/api/knowledge/proposals")
    async def proposals(request: Request, status: Literal["pending", "approved", "rejected"] | None = "pending",
                        offset: Annotated[int, Query(ge=0, le=100_000)] = 0) -> dict[str, Any]:
        """Reviewers see everyone's proposals; an agent sees their own."""
        agent = reader(request)
        mine = None if agent.may("review") else agent.login
        page, total = await asyncio.to_thread(knowledge.store.listed, status, mine, PROPOSALS_PAGE, offset)
        shown = await asyncio.to_thread(lambda: [for_desk(proposal, agent) for proposal in page])
        return {"proposals": shown, "total": total, "offset": offset, "page_size": PROPOSALS_PAGE}

    @router.post("/desk/api/knowledge/proposals/{proposal_id}/decision")
    async def decide(proposal_id: Annotated[str, PathParam(pattern=PROPOSAL_ID)], decision: ProposalDecision,
                     request: Request) -> dict[str, Any]:
        """Approval publishes the edit (checked again) and indexes the entries; rejection only records."""
        reviewer = require_agent(request, "review")
        without_personal_numbers("note", decision.note)

        def publish(proposal: Proposal) -> None:
            publish_edit(knowledge.entries_dir, knowledge.flows_dir, proposal.edit, proposal.base_digest,
                         knowledge.index_dir)

        try:
            decided = await asyncio.to_thread(knowledge.store.decide, proposal_id, decision.approve, reviewer.login,
                                              decision.note, publish)
        except ProposalError as error:
            status, message = {"not_found": (404, "没有这个提议。"), "own_proposal": (403, "不能审核自己的提议。"),
                               "decided": (409, "这个提议已经处理过了。")}[error.code]
            raise HTTPException(status, {"code": error.code, "message": message}) from error
        except EditConflict as error:
            raise HTTPException(409, {"code": "entry_changed",
                                      "message": "条目在提议之后已被修改，不能发布：请驳回并重新提议。"}) from error
        except EditRefused as error:
            raise refused(error) from error
        except OSError as error:  # the entries folder not writable (a read-only image, a volume's owner)
            log.error("knowledge proposal %s not published: %s", proposal_id, error)
            raise HTTPException(503, {"code": "not_writable", "message": NOT_WRITABLE}) from error
        log.info("knowledge proposal %s %s by %s", decided.id, decided.status, reviewer.login)
        shown = await asyncio.to_thread(for_desk, decided, reviewer)
        if decided.status != "approved":
            return {**shown, "indexed": None}
        try:
            report = await asyncio.to_thread(build_index, knowledge.entries_dir, knowledge.index_dir)
        except KnowledgeError as error:
            # Published, but the assistant goes on with the last index until one is built.
            log.error("knowledge index not built after %s: %s", decided.id, error)
            return {**shown, "indexed": False,
                    "message": "已发布，但索引未能生成，智能客服仍用旧的答案：请运维运行 python -m knowledge index。"}
        log.info("%s", report)
        return {**shown, "indexed": True}

    return router
