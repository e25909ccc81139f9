"""Review and appeal of quality hits from the desk: supervisors confirm or dismiss each hit, the
agent whose conversation it was appeals a confirmed one (anyone who handles conversations when no
agent took part), a supervisor other than the appellant decides. Against the real web app and the
real inspection service (its own SQLite store) on loopback, with a fake risk API and Rasa relay."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from quality.rules import FlowFacts, Inspector, load_rules
from quality.service import Inspection
from quality.service import create_app as quality_app
from quality.store import SqlEventStore
from tests.accounts import AGENT, REVIEWER, SECOND_AGENT, SUPERVISOR
from tests.loopback import JsonPeer, serving, serving_asgi
from tests.quality.scripts import START, stream
from tests.quality.test_reviews import three_hits
from tests.security.test_web_desk_events import logged_in, web_settings
from web.app import create_app

QUALITY_TOKEN = "a-quality-token-for-tests"
HELD = "chat-held-by-the-agent"  # a chat session: never to be seen by a browser
WAITING = "chat-nobody-took"  # handed over, never taken: no agent took part
OWN = "chat-the-supervisor-took"
ALONE = "chat-the-assistant-alone"  # never handed over: only the list of work opens it
HANDOFFS = {"H-00000000000000000001": (HELD, "closed", AGENT), "H-00000000000000000002": (WAITING, "waiting", None),
            "H-00000000000000000003": (OWN, "closed", SUPERVISOR)}
BY_SESSION = {session: (handoff_id, status, agent) for handoff_id, (session, status, agent) in HANDOFFS.items()}
HELD_CASE, WAITING_CASE, OWN_CASE = HANDOFFS


@dataclass
class Fake:
    url: str = ""
    asked: list[str] = field(default_factory=list)  # sessions the risk API was asked about
    quality_url: str = ""  # the inspection service the desk asks


def handoff(handoff_id: str) -> dict[str, Any]:
    session, status, agent = HANDOFFS[handoff_id]
    return {"handoff_id": handoff_id, "session_id": session, "status": status, "agent": agent, "channel": "chat",
            "priority": "normal", "flow": "human_handoff", "summary": "客户要求人工", "verified_level": "L1"}


def _handler(fake: Fake) -> type[JsonPeer]:
    class Handler(JsonPeer):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            wanted = self.path.rsplit("/", 1)[-1]
            if self.path == "/handoffs/stamp":
                self.answer({"stamp": "stamp-1"})
            elif self.path.startswith("/handoffs?"):  # the desk's list, whatever the filters
                self.answer([handoff(each) for each in HANDOFFS], headers={"X-Total-Count": str(len(HANDOFFS))})
            elif wanted in HANDOFFS:
                self.answer(handoff(wanted))
            else:
                self.answer([])

        def do_POST(self) -> None:  # noqa: N802
            body = self.body()
            if self.path == "/handoffs/of-session":
                fake.asked.append(body["session_id"])
                if body["session_id"] in BY_SESSION:
                    self.answer(handoff(BY_SESSION[body["session_id"]][0]))
                else:  # the assistant alone: no hand-over
                    self.answer({"detail": {"code": "not_found", "message": "没有转人工记录。"}}, status=404)
            elif self.path == "/webhooks/webchat/agent":
                self.answer({"next": 2, "channel": "webchat",
                             "messages": [{"index": 1, "from": "customer", "text": "气死我了，查账单", "at": START}]})
            else:
                self.answer({"ok": True})

    return Handler


@contextmanager
def desk_with_inspection(tmp_path: Path, more_alone: int = 0) -> Iterator[tuple[str, Fake]]:
    """The desk, and the inspection having read four conversations with three hits each (and
    `more_alone` more the assistant handled alone)."""
    store = SqlEventStore(f"sqlite:///{tmp_path / 'events.sqlite3'}")
    store.append(stream(three_hits(HELD), three_hits(WAITING), three_hits(OWN), three_hits(ALONE),
                        *(three_hits(f"{ALONE}-{number}") for number in range(more_alone))))
    inspection = Inspection(store, Inspector(load_rules(), FlowFacts.from_repository()), clock=lambda: START + 3600)

    async def read() -> None:  # as its run loop would, before the desk asks
        await inspection.resume()
        await inspection.poll()

    with ThreadPoolExecutor(1) as thread:  # a thread of its own: Playwright's sync API runs a loop in this one
        thread.submit(asyncio.run, read()).result()
    fake = Fake()
    try:
        with serving(_handler(fake)) as peer, serving_asgi(quality_app(inspection, QUALITY_TOKEN)) as quality:
            fake.url, fake.quality_url = peer, quality
            settings = web_settings(peer, quality_url=quality, quality_api_token=QUALITY_TOKEN)
            with serving_asgi(create_app(settings)) as url:
                yield url, fake
    finally:
        store.close()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Fake]]:
    with desk_with_inspection(tmp_path) as served:
        yield served


def opened(desk: httpx.Client, case: str) -> dict[str, Any]:
    answer = desk.get(f"/desk/api/handoffs/{case}/quality")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def step(desk: httpx.Client, ref: str, path: str, **body: Any) -> httpx.Response:
    return desk.post(f"/desk/api/quality/conversations/{ref}/{path}", json=body)


def test_a_supervisor_reviews_the_agent_appeals_and_a_supervisor_decides(web: tuple[str, Fake]) -> None:
    url, _ = web
    with logged_in(url, SUPERVISOR) as board, logged_in(url, AGENT) as desk:
        shown = opened(board, HELD_CASE)
        ref = shown["ref"]
        assert ref.startswith("Q-") and HELD not in json.dumps(shown)
        assert shown["score"] == 5
        assert [(hit["rule_name"], hit["state_name"], hit["may"]) for hit in shown["hits"]] == [
            ("客户情绪激动", "待复核", ["review"]), ("未核身即告知账户信息", "待复核", ["review"]),
            ("出现禁用语", "待复核", ["review"])]
        assert [hit["may"] for hit in opened(desk, HELD_CASE)["hits"]] == [[], [], []]  # nothing to appeal yet
        assert step(desk, ref, "review", hit=0, verdict="dismissed", reason="不是投诉").status_code == 403

        dismissed = step(board, ref, "review", hit=0, verdict="dismissed", reason="客户反问，不是投诉")
        assert dismissed.json() == {"score": 20}
        for hit in (1, 2):
            assert step(board, ref, "review", hit=hit, verdict="confirmed", reason="确认").status_code == 200
        assert [hit["may"] for hit in opened(desk, HELD_CASE)["hits"]] == [[], ["appeal"], ["appeal"]]
        assert step(desk, ref, "appeal", hit=1, reason="客户上一通电话已核身").status_code == 200
        assert step(desk, ref, "appeal/decision", hit=1, outcome="upheld", reason="我说了算").status_code == 403
        assert [hit["may"] for hit in opened(board, HELD_CASE)["hits"]] == [[], ["decide"], []]
        assert step(board, ref, "appeal/decision", hit=1, outcome="upheld", reason="核实属实").json() == {"score": 60}
        again = step(desk, ref, "appeal", hit=1, reason="再申诉一次")
        assert again.status_code == 409 and again.json()["detail"]["code"] == "not_appealable"

        decided = board.get(f"/desk/api/quality/conversations/{ref}").json()["hits"][1]
        assert decided["state_name"] == "申诉成立，已撤销"
        assert [(s["step_name"], s["outcome_name"], s["by_name"], s["reason"]) for s in decided["steps"]] == [
            ("复核", "确认", "测主管", "确认"), ("申诉", "提出申诉", "小测", "客户上一通电话已核身"),
            ("裁定", "成立", "测主管", "核实属实")]


def test_only_the_agent_of_the_conversation_appeals_unless_no_agent_took_part(web: tuple[str, Fake]) -> None:
    url, fake = web
    with logged_in(url, SUPERVISOR) as board, logged_in(url, SECOND_AGENT) as other:
        held, waiting = opened(board, HELD_CASE)["ref"], opened(board, WAITING_CASE)["ref"]
        for ref in (held, waiting):
            assert step(board, ref, "review", hit=2, verdict="confirmed", reason="确认").status_code == 200
        assert other.get(f"/desk/api/handoffs/{HELD_CASE}/quality").status_code == 403
        assert other.get(f"/desk/api/quality/conversations/{held}").status_code == 403
        refused = step(other, held, "appeal", hit=2, reason="不是我接待的")
        assert refused.status_code == 403 and refused.json()["detail"]["code"] == "not_your_conversation"
        # Handed over but never taken: the hits are the assistant's, any agent may appeal them.
        assert opened(other, WAITING_CASE)["hits"][2]["may"] == ["appeal"]
        assert step(other, waiting, "appeal", hit=2, reason="机器人模板话术，非辱骂").status_code == 200
    assert fake.asked.count(HELD) >= 2  # whose conversation it was: the risk API's hand-over, each time


def test_a_supervisor_who_appealed_does_not_decide_the_appeal(web: tuple[str, Fake]) -> None:
    url, _ = web
    with logged_in(url, SUPERVISOR) as board:
        ref = opened(board, OWN_CASE)["ref"]
        assert step(board, ref, "review", hit=1, verdict="confirmed", reason="确认").status_code == 200
        assert opened(board, OWN_CASE)["hits"][1]["may"] == ["appeal"]  # the supervisor took this chat
        assert step(board, ref, "appeal", hit=1, reason="接管前已有此条").status_code == 200
        assert opened(board, OWN_CASE)["hits"][1]["may"] == []
        refused = step(board, ref, "appeal/decision", hit=1, outcome="upheld", reason="自己裁定")
        assert refused.status_code == 403 and refused.json()["detail"]["code"] == "own_appeal"


def test_a_conversation_no_hand_over_opens_is_reviewed_from_the_list_of_work(web: tuple[str, Fake]) -> None:
    url, _ = web
    with logged_in(url, SUPERVISOR) as board, logged_in(url, AGENT) as desk:
        listed = board.get("/desk/api/quality/pending")
        assert listed.status_code == 200, listed.text
        assert listed.json()["total"] == 4
        assert not any(session in listed.text for session in (HELD, WAITING, OWN, ALONE)), "references only"
        item = listed.json()["conversations"][0]
        assert (item["severity_name"], item["channel_name"], item["to_review"], item["appealed"]) == (
            "严重", "在线", 3, 0)
        assert item["rule_names"] == ["客户情绪激动", "未核身即告知账户信息", "出现禁用语"]
        handed_over = {opened(board, case)["ref"] for case in (HELD_CASE, WAITING_CASE, OWN_CASE)}
        (alone,) = {entry["conversation"] for entry in listed.json()["conversations"]} - handed_over
        shown = board.get(f"/desk/api/quality/conversations/{alone}").json()
        assert [hit["may"] for hit in shown["hits"]] == [["review"]] * 3
        for hit in range(3):
            assert step(board, alone, "review", hit=hit, verdict="confirmed", reason="确认").status_code == 200
        assert alone not in [entry["conversation"] for entry in board.get("/desk/api/quality/pending").json()[
            "conversations"]], "reviewed: off the list"
        # The assistant's own hits: any agent may appeal, and the appeal puts it back on the list.
        assert step(desk, alone, "appeal", hit=2, reason="模板话术，非辱骂").status_code == 200
        back = next(entry for entry in board.get("/desk/api/quality/pending").json()["conversations"]
                    if entry["conversation"] == alone)
        assert (back["to_review"], back["appealed"]) == (0, 1)
        assert desk.get("/desk/api/quality/pending").status_code == 403, "the list is the supervisors'"
    assert httpx.get(f"{url}/desk/api/quality/pending").status_code == 401


def test_the_list_of_work_comes_a_page_at_a_time(tmp_path: Path) -> None:
    with desk_with_inspection(tmp_path, more_alone=21) as (url, _), logged_in(url, SUPERVISOR) as board:
        first = board.get("/desk/api/quality/pending").json()
        assert (len(first["conversations"]), first["total"], first["offset"], first["page_size"]) == (20, 25, 0, 20)
        rest = board.get("/desk/api/quality/pending", params={"offset": 20}).json()
        assert (len(rest["conversations"]), rest["total"], rest["offset"]) == (5, 25, 20)
        seen = [item["conversation"] for item in first["conversations"] + rest["conversations"]]
        assert len(set(seen)) == 25, "each conversation on one page only"
        assert board.get("/desk/api/quality/pending", params={"offset": 40}).json()["conversations"] == []
        for bad in ("-1", "x", "100001"):
            assert board.get("/desk/api/quality/pending", params={"offset": bad}).status_code == 422, bad


def test_bad_input_unknown_conversations_and_other_roles_are_refused(web: tuple[str, Fake],
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    url, _ = web
    secret_reason = "这条理由只在复核记录里"
    with caplog.at_level(logging.INFO), logged_in(url, SUPERVISOR) as board, logged_in(url, REVIEWER) as reviewer:
        ref = opened(board, HELD_CASE)["ref"]
        good = {"hit": 0, "verdict": "confirmed", "reason": "确认"}
        for bad in ({**good, "reason": ""}, {**good, "reason": "  "}, {**good, "reason": "长" * 501},
                    {**good, "hit": -1}, {**good, "verdict": "maybe"}, {**good, "by": AGENT},
                    {"hit": 0, "verdict": "confirmed"}):
            assert board.post(f"/desk/api/quality/conversations/{ref}/review", json=bad).status_code == 422, bad
        huge = board.post(f"/desk/api/quality/conversations/{ref}/review", content=b"{" + b" " * 9000 + b"}",
                          headers={"Content-Type": "application/json"})
        assert huge.status_code == 413
        unknown_hit = step(board, ref, "review", hit=9, verdict="confirmed", reason="确认")
        assert unknown_hit.status_code == 404 and unknown_hit.json()["detail"]["code"] == "no_hit"
        nowhere = "Q-" + "A" * 40  # shaped like a reference, sealed by no desk
        assert board.get(f"/desk/api/quality/conversations/{nowhere}").status_code == 404
        assert step(board, nowhere, "review", **good).status_code == 404
        assert board.get(f"/desk/api/quality/conversations/{HELD}").status_code == 422
        for path in (f"/desk/api/quality/conversations/{ref}", f"/desk/api/handoffs/{HELD_CASE}/quality"):
            assert reviewer.get(path).status_code == 403
        for path, body in (("review", good), ("appeal", {"hit": 0, "reason": "x"}),
                           ("appeal/decision", {"hit": 0, "outcome": "upheld", "reason": "x"})):
            assert step(reviewer, ref, path, **body).status_code == 403
            assert httpx.post(f"{url}/desk/api/quality/conversations/{ref}/{path}", json=body).status_code == 401
        assert step(board, ref, "review", hit=0, verdict="dismissed", reason=secret_reason).status_code == 200
    assert httpx.get(f"{url}/desk/api/quality/conversations/{ref}").status_code == 401
    assert not any(secret_reason in record.getMessage() or HELD in record.getMessage() for record in caplog.records
                   if not record.name.startswith("httpx"))


def test_a_reference_opens_on_another_web_process_and_after_a_restart_and_never_elsewhere(
        web: tuple[str, Fake]) -> None:
    """References are sealed, not remembered: any web process with the desk's secret opens one it did
    not give out; a desk with another secret opens none."""
    url, fake = web
    with logged_in(url, SUPERVISOR) as board:
        ref = opened(board, HELD_CASE)["ref"]
    same_secret = web_settings(fake.url, quality_url=fake.quality_url, quality_api_token=QUALITY_TOKEN)
    with serving_asgi(create_app(same_secret)) as restarted, logged_in(restarted, SUPERVISOR) as board:
        shown = board.get(f"/desk/api/quality/conversations/{ref}")
        assert shown.status_code == 200 and shown.json()["score"] == 5
    other_secret = replace(same_secret, session_secret="o" * 32)
    with serving_asgi(create_app(other_secret)) as elsewhere, logged_in(elsewhere, SUPERVISOR) as board:
        refused = board.get(f"/desk/api/quality/conversations/{ref}")
        assert refused.status_code == 404 and refused.json()["detail"]["code"] == "unknown_conversation"
