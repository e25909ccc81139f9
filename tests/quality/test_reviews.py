"""Review and appeal of a conversation's hits, through the inspection service's routes over a real
event store (SQLite, and PostgreSQL when configured): a supervisor confirms or dismisses each hit,
a confirmed one is appealed once and decided by another person; the score counts only the hits
that stand; every step is kept with who, when and why, and is there again after a restart."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient

from quality.reviews import REASON_MAX, REVIEW_MAX_BODY
from quality.rules import FlowFacts, Inspector, load_rules
from quality.service import Inspection, create_app
from quality.store import SqlEventStore
from tests.quality.scripts import START, Script, stream

TOKEN = "test-quality-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHAT = "chat-reviewed"
NOW = START + 3600
REASON = "录音核实：客户原话为反问，不是投诉"


def three_hits(conversation_id: str = CHAT) -> Script:
    """Anger (major, 15 points), account detail before identity (critical, 40), an insult (critical, 40)."""
    return (Script(conversation_id).session_starts().user("气死我了，查账单").wait(1)
            .bot("应还1200元").bot(flow="bill_inquiry", outcome="answer").listen()
            .wait(5).user("你说什么").wait(1).bot("你这个老赖").listen())


async def served(store: SqlEventStore) -> TestClient:
    inspection = Inspection(store, Inspector(load_rules(), FlowFacts.from_repository()), clock=lambda: NOW)
    await inspection.resume()
    await inspection.poll()
    return TestClient(create_app(inspection, TOKEN))


def step(client: TestClient, path: str, **body: Any) -> Any:
    return client.post(f"/conversations/{CHAT}/{path}", headers=AUTH, json=body)


def states(client: TestClient) -> list[tuple[str, str]]:
    review = client.get(f"/conversations/{CHAT}/review", headers=AUTH).json()
    return [(hit["rule"], hit["state"]) for hit in review["hits"]]


async def test_dismissed_hits_and_upheld_appeals_no_longer_cost_the_score(any_store: SqlEventStore) -> None:
    any_store.append(stream(three_hits()))
    client = await served(any_store)
    review = client.get(f"/conversations/{CHAT}/review", headers=AUTH).json()
    assert [(hit["hit"], hit["rule"], hit["state"]) for hit in review["hits"]] == [
        (0, "anger", "open"), (1, "identity_before_detail", "open"), (2, "forbidden_phrase", "open")]
    assert review["score"] == 5

    answer = step(client, "review", hit=0, verdict="dismissed", reason=REASON, by="supervisor")
    assert answer.status_code == 200, answer.text
    assert answer.json()["score"] == 20
    assert step(client, "review", hit=1, verdict="confirmed", reason="确认", by="supervisor").status_code == 200
    assert step(client, "review", hit=2, verdict="confirmed", reason="确认", by="supervisor").status_code == 200
    assert step(client, "appeal", hit=1, reason="客户已在前一通电话核身", by="agent").status_code == 200
    assert step(client, "appeal", hit=2, reason="系统误识别", by="agent").status_code == 200
    assert states(client) == [("anger", "dismissed"), ("identity_before_detail", "appealed"),
                              ("forbidden_phrase", "appealed")]
    upheld = step(client, "appeal/decision", hit=1, outcome="upheld", reason="核实属实", by="supervisor")
    assert upheld.status_code == 200 and upheld.json()["score"] == 60
    assert step(client, "appeal/decision", hit=2, outcome="rejected", reason="原文确有此语",
                by="supervisor").json()["score"] == 60
    assert states(client) == [("anger", "dismissed"), ("identity_before_detail", "upheld"),
                              ("forbidden_phrase", "rejected")]

    scored = client.get(f"/conversations/{CHAT}/score", headers=AUTH).json()
    assert scored["score"] == 60 and scored["broken"] == ["forbidden_phrase"]
    assert [hit["rule"] for hit in scored["dismissed"]] == ["anger", "identity_before_detail"]
    steps = client.get(f"/conversations/{CHAT}/review", headers=AUTH).json()["hits"][1]["steps"]
    assert [(s["step"], s["outcome"], s["by"], s["at"], s["reason"]) for s in steps] == [
        ("review", "confirmed", "supervisor", NOW, "确认"),
        ("appeal", "appealed", "agent", NOW, "客户已在前一通电话核身"),
        ("decision", "upheld", "supervisor", NOW, "核实属实")]


async def test_each_step_in_its_order_once_and_nobody_decides_their_own_appeal(any_store: SqlEventStore) -> None:
    any_store.append(stream(three_hits()))
    client = await served(any_store)

    def refusal(path: str, **body: Any) -> tuple[int, str]:
        answer = step(client, path, **{"reason": "理由", **body})
        return answer.status_code, answer.json()["detail"]["code"]

    assert refusal("appeal", hit=0, by="agent") == (409, "not_appealable")  # not reviewed yet
    assert refusal("appeal/decision", hit=0, outcome="upheld", by="supervisor") == (409, "no_appeal")
    assert step(client, "review", hit=0, verdict="dismissed", reason="误报", by="supervisor").status_code == 200
    assert refusal("review", hit=0, verdict="confirmed", by="supervisor2") == (409, "already_reviewed")
    assert refusal("appeal", hit=0, by="agent") == (409, "not_appealable")  # dismissed: nothing to appeal

    assert step(client, "review", hit=1, verdict="confirmed", reason="确认", by="supervisor").status_code == 200
    assert refusal("appeal/decision", hit=1, outcome="upheld", by="supervisor") == (409, "no_appeal")
    assert step(client, "appeal", hit=1, reason="申诉", by="supervisor").status_code == 200
    assert refusal("appeal", hit=1, by="agent") == (409, "not_appealable")  # once
    assert refusal("appeal/decision", hit=1, outcome="upheld", by="supervisor") == (403, "own_appeal")
    rejected = step(client, "appeal/decision", hit=1, outcome="rejected", reason="维持", by="supervisor2")
    assert rejected.status_code == 200
    assert refusal("appeal/decision", hit=1, outcome="upheld", by="supervisor3") == (409, "no_appeal")
    assert states(client)[:2] == [("anger", "dismissed"), ("identity_before_detail", "rejected")]


def test_of_two_supervisors_at_once_the_database_lets_one_win(any_store: SqlEventStore) -> None:
    row = {"conversation_id": CHAT, "hit": 0, "rule": "anger", "event_id": 3, "step": "review",
           "outcome": "confirmed", "actor": "supervisor", "at": NOW, "reason": "确认"}
    assert any_store.add_review_step(row) is True
    assert any_store.add_review_step({**row, "outcome": "dismissed", "actor": "supervisor2"}) is False
    assert [step["outcome"] for step in any_store.review_steps(CHAT)] == ["confirmed"]


async def test_the_reviews_are_there_again_after_a_restart_and_go_with_the_conversation(
        any_store: SqlEventStore) -> None:
    any_store.append(stream(three_hits()))
    client = await served(any_store)
    assert step(client, "review", hit=2, verdict="confirmed", reason="确认", by="supervisor").status_code == 200
    assert step(client, "appeal", hit=2, reason=REASON, by="agent").status_code == 200
    before = client.get(f"/conversations/{CHAT}/review", headers=AUTH).json()

    restarted = SqlEventStore(any_store.engine.url.render_as_string(hide_password=False))
    try:
        again = await served(restarted)
        assert again.get(f"/conversations/{CHAT}/review", headers=AUTH).json() == before
        decided = again.post(f"/conversations/{CHAT}/appeal/decision", headers=AUTH,
                             json={"hit": 2, "outcome": "upheld", "reason": "属实", "by": "supervisor"})
        assert decided.status_code == 200 and decided.json()["score"] == 45
        restarted.forget([CHAT], through=10_000)  # retention: the reviews go with the hits
        assert restarted.review_steps(CHAT) == []
    finally:
        restarted.close()


async def test_bad_or_huge_input_is_refused_with_a_clear_status(any_store: SqlEventStore,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    any_store.append(stream(three_hits()))
    client = await served(any_store)
    good = {"hit": 0, "verdict": "confirmed", "reason": "确认", "by": "supervisor"}
    for bad in ({**good, "reason": ""}, {**good, "reason": "   "}, {**good, "reason": "长" * (REASON_MAX + 1)},
                {**good, "verdict": "maybe"}, {**good, "hit": "0"}, {**good, "hit": -1}, {**good, "hit": True},
                {**good, "by": "Robert'); DROP TABLE"}, {**good, "agent": "someone"},
                {key: value for key, value in good.items() if key != "reason"}):
        answer = client.post(f"/conversations/{CHAT}/review", headers=AUTH, json=bad)
        assert answer.status_code == 400 and answer.json()["detail"]["code"] == "bad_request", bad
    not_json = client.post(f"/conversations/{CHAT}/review", headers=AUTH, content=b"{hit: 0")
    assert not_json.status_code == 400
    huge = client.post(f"/conversations/{CHAT}/review", headers=AUTH, content=b"x" * (REVIEW_MAX_BODY + 1))
    assert huge.status_code == 413
    assert client.post("/conversations/nobody/review", headers=AUTH, json=good).status_code == 404
    assert client.get("/conversations/nobody/review", headers=AUTH).status_code == 404
    assert client.post(f"/conversations/{CHAT}/review", headers=AUTH, json={**good, "hit": 3}).json()["detail"][
        "code"] == "no_hit"
    assert client.post(f"/conversations/{CHAT}/review", json=good).status_code == 401
    assert client.get(f"/conversations/{CHAT}/review").status_code == 401
    # The longest reason is kept whole, and no reason reaches the logs.
    with caplog.at_level(logging.DEBUG):
        longest = {**good, "reason": "长" * REASON_MAX}
        assert client.post(f"/conversations/{CHAT}/review", headers=AUTH, json=longest).status_code == 200
    assert client.get(f"/conversations/{CHAT}/review", headers=AUTH).json()["hits"][0]["steps"][0]["reason"] == (
        "长" * REASON_MAX)
    service_lines = [record.getMessage() for record in caplog.records if record.name.startswith("quality")]
    assert "quality hit review: confirmed (anger)" in service_lines
    assert not any("长长" in line or CHAT in line for line in service_lines)


async def test_a_phone_number_typed_into_a_reason_is_kept_masked(any_store: SqlEventStore) -> None:
    any_store.append(stream(three_hits()))
    client = await served(any_store)
    answer = step(client, "review", hit=0, verdict="dismissed", reason="客户手机13812345678已核实", by="supervisor")
    assert answer.status_code == 200
    kept = any_store.review_steps(CHAT)[0]["reason"]
    assert "13812345678" not in kept and kept.startswith("客户手机"), kept


async def test_the_list_of_work_holds_what_awaits_a_supervisor_worst_first(any_store: SqlEventStore) -> None:
    """Conversations the assistant handled alone have no hand-over to be opened by: the list is
    how a supervisor finds them. A conversation leaves it once each hit is reviewed, and comes
    back while an appeal awaits a decision."""
    angry_only = Script("chat-angry", START + 600).session_starts().user("气死我了，怎么还没到账").listen()
    clean = Script("chat-clean", START + 900).session_starts().user("查账单").bot("好的").listen()
    any_store.append(stream(three_hits(), angry_only, clean))
    client = await served(any_store)

    def pending(**params: Any) -> Any:
        answer = client.get("/reviews/pending", headers=AUTH, params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    listed = pending()
    assert [(item["conversation_id"], item["worst"], item["to_review"], item["appealed"], item["rules"])
            for item in listed["conversations"]] == [
        (CHAT, "critical", 3, 0, ["anger", "identity_before_detail", "forbidden_phrase"]),
        ("chat-angry", "major", 1, 0, ["anger"])], "the critical first, though the other is later"
    assert listed["total"] == 2 and listed["conversations"][0]["channel"] == "chat"
    one = pending(limit=1)
    assert (len(one["conversations"]), one["total"]) == (1, 2)
    second = pending(limit=1, offset=1)
    assert ([item["conversation_id"] for item in second["conversations"]], second["offset"]) == (["chat-angry"], 1)
    assert pending(offset=2)["conversations"] == [] and pending(offset=2)["total"] == 2

    for hit, verdict in ((0, "dismissed"), (1, "confirmed"), (2, "confirmed")):
        assert step(client, "review", hit=hit, verdict=verdict, reason="确认", by="supervisor").status_code == 200
    assert [item["conversation_id"] for item in pending()["conversations"]] == ["chat-angry"]
    assert step(client, "appeal", hit=1, reason="已核身", by="agent").status_code == 200
    back = pending()["conversations"][0]
    assert (back["conversation_id"], back["to_review"], back["appealed"], back["rules"]) == (
        CHAT, 0, 1, ["identity_before_detail"])

    for bad in ({"limit": 0}, {"limit": 501}, {"limit": "x"}, {"offset": -1}, {"offset": "x"}):
        assert client.get("/reviews/pending", headers=AUTH, params=bad).status_code == 422, bad
    assert client.get("/reviews/pending").status_code == 401
