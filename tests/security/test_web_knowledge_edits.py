"""Knowledge base edits from the desk: an agent proposes, a reviewer other than the author approves,
the edit is published into the entries files and indexed, and an action server's retriever made
before it serves the new answer at its next refresh, without a restart. Who may do what, what is
refused (and kept out of the files), huge and malformed bodies. Against the real web app, the real
linter, the real indexer (`python -m knowledge index`, the real embedding model) and a fake risk API."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from knowledge.model import ENTRIES_DIR
from knowledge.retrieval import Retriever
from tests.accounts import AGENT, REVIEWER, SECOND_AGENT, SUPERVISOR
from tests.security.test_web_desk import Clock, FakeRiskApi, client, fake_risk_api, log_in, settings_for
from web.app import create_app

NEW_VOICE = "只能绑定本人名下的储蓄卡，信用卡不能绑定，也不能用信用卡还款。"
NEW_PHRASING = "拿信用卡来绑定行吗"


@dataclass
class Desk:
    app: Any
    entries: Path
    index: Path
    proposals: Path


@pytest.fixture
def risk_api() -> Iterator[FakeRiskApi]:
    with fake_risk_api() as record:
        yield record


@pytest.fixture
def desk(risk_api: FakeRiskApi, tmp_path: Path) -> Desk:
    """The desk on two categories of the real entries (in a folder of this test's own)."""
    entries, index = tmp_path / "entries", tmp_path / "index"
    entries.mkdir()
    for category in ("card", "anti_fraud"):
        shutil.copy(ENTRIES_DIR / f"{category}.yaml", entries)
    settings = replace(settings_for(risk_api), knowledge_entries_dir=entries, knowledge_index_dir=index,
                       knowledge_proposals_url=f"sqlite:///{tmp_path / 'proposals.sqlite3'}")
    return Desk(create_app(settings, Clock()), entries, index, tmp_path / "proposals.sqlite3")


@asynccontextmanager
async def logged_in(desk: Desk, user: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client(desk.app) as browser:
        assert (await log_in(browser, user)).status_code == 303
        yield browser


async def proposal_of(browser: httpx.AsyncClient, entry_id: str = "card.credit_card", **change: Any) -> httpx.Response:
    entry = (await browser.get(f"/desk/api/knowledge/entries/{entry_id}")).json()
    body = {"entry_id": entry_id, "base_digest": entry["digest"], "question": entry["question"],
            "paraphrases": [*entry["paraphrases"], NEW_PHRASING], "chat": entry["chat"], "voice": NEW_VOICE,
            "reason": "客户听不懂原来的说法", **change}
    return await browser.post("/desk/api/knowledge/proposals", json=body)


async def test_an_approved_edit_is_served_by_a_running_assistant_without_a_restart(desk: Desk) -> None:
    Retriever(entries_dir=desk.entries, index_dir=desk.index)  # `make train`'s index of the entries as shipped
    serving = Retriever(entries_dir=desk.entries, index_dir=desk.index, build=False)  # an action server's
    before = (desk.entries / "card.yaml").read_text(encoding="utf-8")
    async with logged_in(desk, AGENT) as agent, logged_in(desk, REVIEWER) as reviewer:
        proposed = await proposal_of(agent)
        assert proposed.status_code == 201, proposed.text
        assert proposed.json()["status"] == "pending" and proposed.json()["may_decide"] is False
        proposal_id = proposed.json()["proposal_id"]
        # Proposed is not published: the files and the answers are as they were.
        assert (desk.entries / "card.yaml").read_text(encoding="utf-8") == before
        assert serving.refresh() is False

        forbidden = await agent.post(f"/desk/api/knowledge/proposals/{proposal_id}/decision", json={"approve": True})
        assert forbidden.status_code == 403  # an agent does not review
        listed = (await reviewer.get("/desk/api/knowledge/proposals")).json()
        assert listed["total"] == 1 and listed["proposals"][0]["may_decide"] is True
        card = listed["proposals"][0]
        assert card["before"]["voice"] != NEW_VOICE and card["edit"]["voice"] == NEW_VOICE
        assert card["proposed_by"] == "小测" and card["stale"] is False

        approved = await reviewer.post(f"/desk/api/knowledge/proposals/{proposal_id}/decision",
                                       json={"approve": True, "note": "好"})
        assert approved.status_code == 200, approved.text
        assert (approved.json()["status"], approved.json()["indexed"], approved.json()["decided_by"]) == (
            "approved", True, "测审核")
        again = await reviewer.post(f"/desk/api/knowledge/proposals/{proposal_id}/decision", json={"approve": True})
        assert again.status_code == 409 and again.json()["detail"]["code"] == "decided"

    after = (desk.entries / "card.yaml").read_text(encoding="utf-8")
    assert [new for old, new in zip(before.splitlines(), after.splitlines(), strict=True) if old != new] == [
        "    paraphrases: [信用卡能用吗, 可以用信用卡还款吗, 放款能打到信用卡吗, 拿信用卡来绑定行吗]",
        f"    voice: {NEW_VOICE}"]
    assert serving.refresh() is True  # the index the desk built is on disk: nothing to embed here
    assert serving.passage_engine._embed is None
    answer = serving.answer(NEW_PHRASING, "voice")
    assert answer is not None and (answer.entry_id, answer.text) == ("card.credit_card", NEW_VOICE)


async def test_an_edit_the_knowledge_base_would_refuse_is_refused_when_proposed(desk: Desk) -> None:
    before = (desk.entries / "card.yaml").read_bytes()
    async with logged_in(desk, AGENT) as agent:
        refused = await proposal_of(agent, voice="请拨打四零零，或者发短信到一三八零零一三八零零零。",
                                    paraphrases=["我的手机号13800138000绑定不了", "拿信用卡绑定", "用信用卡行不行"])
        assert refused.status_code == 422
        detail = refused.json()["detail"]
        assert detail["code"] == "refused" and detail["message"] == "知识库检查未通过，未保存。"
        # In Chinese for the page, by entry and field; as the linter words them for whoever edits the files.
        assert detail["problems"] == ["条目 card.credit_card 的第1个其他问法：含七位以上连续数字"
                                      "（手机号、身份证号或卡号？），不能写入客户个人信息"]
        assert [line.split(": ", 1)[0] for line in detail["details"]] == ["card.yaml"]
        assert "paraphrases[0]: has a number of seven digits or more" in detail["details"][0]
        assert (await agent.get("/desk/api/knowledge/proposals")).json()["total"] == 0
        in_the_reason = await proposal_of(agent, reason="客户 138 0013 8000 说听不懂")
        assert in_the_reason.status_code == 422
        assert in_the_reason.json()["detail"]["problems"] == [
            "修改原因含七位以上连续数字（手机号、身份证号或卡号？），不能写入客户个人信息"]
        assert in_the_reason.json()["detail"]["details"][0].startswith("reason: ")
        assert b"0013" not in desk.proposals.read_bytes()  # nothing of either kept
        new_category = await proposal_of(agent, entry_id="card.credit_card", base_digest=None)
        assert new_category.status_code == 409 and new_category.json()["detail"]["code"] == "entry_changed"
        unknown = await agent.post("/desk/api/knowledge/proposals", json={
            "entry_id": "loans.what", "base_digest": None, "question": "什么是贷款",
            "paraphrases": ["贷款是啥", "啥叫贷款", "贷款什么意思"],
            "chat": "一段答复。", "voice": "一段答复。", "reason": "新问题"})
        assert unknown.status_code == 422 and unknown.json()["detail"]["problems"] == ["知识库里没有“loans”这个分类"]
    assert (desk.entries / "card.yaml").read_bytes() == before


async def test_an_approval_over_a_change_approved_since_is_refused_and_stays_pending(desk: Desk) -> None:
    Retriever(entries_dir=desk.entries, index_dir=desk.index)
    async with logged_in(desk, AGENT) as agent, logged_in(desk, SECOND_AGENT) as second, \
            logged_in(desk, SUPERVISOR) as supervisor:
        first = (await proposal_of(agent)).json()["proposal_id"]
        other = (await proposal_of(second, voice="信用卡不能绑定，请用本人的储蓄卡。")).json()["proposal_id"]
        own = (await proposal_of(supervisor, voice="信用卡不能绑定。")).json()["proposal_id"]
        assert [p["proposed_by"] for p in (await agent.get("/desk/api/knowledge/proposals")).json()["proposals"]] == [
            "小测"]  # an agent sees their own proposals only

        refused = await supervisor.post(f"/desk/api/knowledge/proposals/{own}/decision", json={"approve": True})
        assert refused.status_code == 403 and refused.json()["detail"]["code"] == "own_proposal"
        assert (await supervisor.post(f"/desk/api/knowledge/proposals/{first}/decision",
                                      json={"approve": True})).status_code == 200
        stale = await supervisor.post(f"/desk/api/knowledge/proposals/{other}/decision", json={"approve": True})
        assert stale.status_code == 409 and stale.json()["detail"]["code"] == "entry_changed"
        pending = {p["proposal_id"]: p for p in
                   (await supervisor.get("/desk/api/knowledge/proposals?status=pending")).json()["proposals"]}
        assert set(pending) == {other, own} and pending[other]["stale"] is True
        rejected = await supervisor.post(f"/desk/api/knowledge/proposals/{other}/decision",
                                         json={"approve": False, "note": "已有更新"})
        assert rejected.status_code == 200 and rejected.json()["status_name"] == "已驳回"
        assert rejected.json()["indexed"] is None


async def test_who_may_propose_and_decide_and_bodies_that_are_refused(desk: Desk) -> None:
    async with client(desk.app) as nobody:
        for method, path in (("GET", "/desk/api/knowledge/categories"), ("GET", "/desk/api/knowledge/proposals"),
                             ("GET", "/desk/api/knowledge/entries/card.credit_card")):
            assert (await nobody.request(method, path)).status_code == 401
        assert (await nobody.post("/desk/api/knowledge/proposals/K-00000000000000000000/decision",
                                  json={"approve": True})).status_code == 401
        page = await nobody.get("/desk/knowledge")
        assert page.status_code == 303 and page.headers["location"] == "/desk"
    async with logged_in(desk, REVIEWER) as reviewer, logged_in(desk, AGENT) as agent:
        assert (await proposal_of(reviewer)).status_code == 403  # a reviewer decides, does not propose
        assert (await reviewer.get("/desk/knowledge")).status_code == 200
        categories = (await agent.get("/desk/api/knowledge/categories")).json()
        assert {"category": "card", "name": "银行卡"} in categories and len(categories) == 2
        assert (await agent.get("/desk/api/knowledge/entries/card.nothing")).status_code == 404
        assert (await agent.get("/desk/api/knowledge/entries/..%2Fsecrets.x")).status_code in (404, 422)
        assert (await proposal_of(agent, proposed_by=SUPERVISOR)).status_code == 422  # nobody names the author
        assert (await proposal_of(agent, paraphrases=["只有一个"])).status_code == 422
        huge = await proposal_of(agent, reason="长" * 20_000)
        assert huge.status_code == 413
        broken = await agent.post("/desk/api/knowledge/proposals", content=b"{not json",
                                  headers={"Content-Type": "application/json"})
        assert broken.status_code == 422
        bad_id = await reviewer.post("/desk/api/knowledge/proposals/K-1/decision", json={"approve": True})
        assert bad_id.status_code == 422
        missing = await reviewer.post("/desk/api/knowledge/proposals/K-00000000000000000000/decision",
                                      json={"approve": False})
        assert missing.status_code == 404


async def test_an_entries_folder_that_cannot_be_written_keeps_the_proposal_pending(
        desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    before = (desk.entries / "card.yaml").read_bytes()

    def read_only(*_: object) -> None:
        raise PermissionError(13, "Permission denied")

    async with logged_in(desk, AGENT) as agent, logged_in(desk, REVIEWER) as reviewer:
        proposal_id = (await proposal_of(agent)).json()["proposal_id"]
        monkeypatch.setattr("knowledge.edits.os.replace", read_only)  # a volume owned by someone else
        refused = await reviewer.post(f"/desk/api/knowledge/proposals/{proposal_id}/decision", json={"approve": True})
        assert refused.status_code == 503 and refused.json()["detail"]["code"] == "not_writable"
        pending = (await reviewer.get("/desk/api/knowledge/proposals")).json()["proposals"]
        assert [item["proposal_id"] for item in pending] == [proposal_id]
    assert (desk.entries / "card.yaml").read_bytes() == before
    assert not [path.name for path in desk.entries.iterdir() if path.name.startswith(".")]  # no temporary left
