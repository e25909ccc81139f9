"""The hand-over lifecycle (waiting → accepted → closed, or abandoned), queue facts and agent presence."""
from __future__ import annotations

import json
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from risk_api.presence import PRESENCE_TTL_SECONDS
from risk_api.records import CHAT_CUSTOMER_GONE_SECONDS, HANDLING_SECONDS_DEFAULT
from tests.risk_api.helpers import Api, new_session

VIEW_FIELDS = {"handoff_id", "channel", "flow", "reason", "priority", "summary", "customer_id", "masked_phone",
               "verified_level",
               "status", "agent", "created_at", "accepted_at", "closed_at", "closed_by", "disposition",
               "close_note", "customer_note", "waiting_seconds", "handling_seconds"}
QUEUE_FIELDS = {"agents_online", "position", "estimated_wait_seconds"}


def new_handoff(api: Api, channel: str = "chat", priority: str = "normal",
                session_id: str | None = None) -> tuple[str, str]:
    """A waiting hand-over: (handoff_id, session_id)."""
    session_id = session_id or new_session()
    created = api.http.post("/handoffs", json={
        "session_id": session_id, "channel": channel, "flow": "bill_inquiry", "reason": "转人工",
        "priority": priority, "summary": "客户要求人工"})
    assert created.status_code == 200, created.text
    return str(created.json()["handoff_id"]), session_id


def accepted_handoff(api: Api, agent: str, channel: str = "chat") -> str:
    handoff_id, _ = new_handoff(api, channel)
    assert api.desk.post(f"/handoffs/{handoff_id}/accept", json={"agent": agent}).status_code == 200
    return handoff_id


def close(api: Api, handoff_id: str, agent: str, **fields: Any) -> httpx.Response:
    return api.desk.post(f"/handoffs/{handoff_id}/close",
                         json={"agent": agent, "disposition": "resolved", **fields})


def audit_of(api: Api, session_id: str, kind: str) -> list[str]:
    """The inputs of this conversation's audit entries of a kind, as JSON text."""
    rows = api.sql("SELECT inputs FROM audit_entries WHERE session_id = :s AND kind = :k", s=session_id, k=kind)
    return [row.inputs if isinstance(row.inputs, str) else json.dumps(row.inputs, ensure_ascii=False)
            for row in rows]


def forget_presence(api: Api) -> None:
    """Every heartbeat so far goes stale: no agent counts as online."""
    api.clock.advance(PRESENCE_TTL_SECONDS + 1)


def test_the_agent_holding_a_handoff_closes_it_with_a_disposition(api: Api) -> None:
    handoff_id = accepted_handoff(api, "agent-close-1")
    closed = close(api, handoff_id, "agent-close-1", disposition="callback_booked", note="  已约明天回电  ")
    assert closed.status_code == 200, closed.text
    view = closed.json()
    assert set(view) == VIEW_FIELDS, "the list's view, without the session id"
    assert (view["status"], view["closed_by"], view["disposition"], view["close_note"]) == (
        "closed", "agent-close-1", "callback_booked", "已约明天回电")
    assert view["closed_at"] is not None and view["agent"] == "agent-close-1"
    listed = api.desk.get("/handoffs", params={"status": "closed", "handoff_id": handoff_id}).json()
    assert listed == [view]


def test_only_the_holder_or_a_supervisor_override_closes_a_handoff(api: Api) -> None:
    handoff_id = accepted_handoff(api, "agent-holder")
    refused = close(api, handoff_id, "agent-other")
    assert refused.status_code == 409
    assert refused.json()["detail"]["code"] == "handoff_not_yours"
    assert "主管" in refused.json()["detail"]["message"]
    assert api.sql("SELECT status FROM handoffs WHERE id = :i", i=handoff_id)[0].status == "accepted"
    overridden = close(api, handoff_id, "supervisor-1", disposition="escalated", override=True)
    assert overridden.status_code == 200, overridden.text
    assert (overridden.json()["closed_by"], overridden.json()["agent"]) == ("supervisor-1", "agent-holder")


def test_only_an_accepted_handoff_can_be_closed(api: Api) -> None:
    waiting, _ = new_handoff(api)
    not_yet = close(api, waiting, "agent-x")
    assert (not_yet.status_code, not_yet.json()["detail"]["code"]) == (409, "handoff_not_accepted")
    assert "接起" in not_yet.json()["detail"]["message"]
    done = accepted_handoff(api, "agent-x")
    assert close(api, done, "agent-x").status_code == 200
    again = close(api, done, "agent-x", override=True)
    assert (again.status_code, again.json()["detail"]["code"]) == (409, "handoff_closed")
    late_accept = api.desk.post(f"/handoffs/{done}/accept", json={"agent": "agent-y"})
    assert (late_accept.status_code, late_accept.json()["detail"]["code"]) == (409, "handoff_closed")
    hung_up, _ = new_handoff(api, "voice")
    assert api.gateway.post(f"/handoffs/{hung_up}/call-state", json={"state": "abandoned"}).status_code == 200
    gone = close(api, hung_up, "agent-x", override=True)
    assert (gone.status_code, gone.json()["detail"]["code"]) == (409, "handoff_closed")
    unknown = close(api, "H-" + "0" * 20, "agent-x")
    assert (unknown.status_code, unknown.json()["detail"]["code"]) == (404, "unknown_handoff")
    assert "没有找到" in unknown.json()["detail"]["message"]


def test_closing_is_audited_without_the_note_and_the_note_is_stored_masked(api: Api) -> None:
    handoff_id, session_id = new_handoff(api)
    assert api.desk.post(f"/handoffs/{handoff_id}/accept", json={"agent": "agent-audit"}).status_code == 200
    note = "客户手机13912345678，卡号6222000012345678，已解决"
    closed = close(api, handoff_id, "agent-audit", disposition="ticket", note=note).json()
    assert "13912345678" not in closed["close_note"] and "139****5678" in closed["close_note"]
    (stored,) = api.sql("SELECT close_note FROM handoffs WHERE id = :i", i=handoff_id)
    assert stored.close_note == "客户手机139****5678，卡号6222 **** **** 5678，已解决", "masked at rest"
    (entry,) = audit_of(api, session_id, "handoff_close")
    assert json.loads(entry) == {"handoff_id": handoff_id, "agent": "agent-audit", "holder": "agent-audit",
                                 "disposition": "ticket", "override": False}


def test_a_500_character_note_is_stored_even_when_masking_lengthens_it(api: Api) -> None:
    handoff_id = accepted_handoff(api, "agent-long")
    note = ("6222000012345678," * 30)[:500]
    closed = close(api, handoff_id, "agent-long", note=note)
    assert closed.status_code == 200, closed.text
    (stored,) = api.sql("SELECT close_note FROM handoffs WHERE id = :i", i=handoff_id)
    assert len(stored.close_note) > 500 and "6222000012345678" not in stored.close_note


def test_close_bodies_outside_the_contract_are_422(api: Api) -> None:
    handoff_id = accepted_handoff(api, "agent-422")
    good = {"agent": "agent-422", "disposition": "resolved", "note": "", "override": False}
    for body in ({**good, "disposition": "done"}, {**good, "note": "字" * 501}, {**good, "override": "yes"},
                 {**good, "agent": "  "}, {**good, "agent": "a" * 65}, {**good, "extra": 1},
                 {key: value for key, value in good.items() if key != "disposition"},
                 {key: value for key, value in good.items() if key != "agent"}, {**good, "note": "a\x00b"}):
        refused = api.desk.post(f"/handoffs/{handoff_id}/close", json=body)
        assert refused.status_code == 422, (body, refused.text)
    nan = api.desk.post(f"/handoffs/{handoff_id}/close", headers={"Content-Type": "application/json"},
                        content='{"agent": "agent-422", "disposition": "resolved", "note": NaN}')
    assert nan.status_code == 422 and "finite" in nan.text
    assert api.sql("SELECT status FROM handoffs WHERE id = :i", i=handoff_id)[0].status == "accepted"


def test_the_list_view_times_waiting_and_handling_and_never_shows_the_session(api: Api) -> None:
    with api.clock.held():
        handoff_id, session_id = new_handoff(api)
        api.clock.advance(30)

        def view() -> dict[str, Any]:
            (item,) = api.desk.get("/handoffs", params={"handoff_id": handoff_id}).json()
            assert set(item) == VIEW_FIELDS and session_id not in json.dumps(item)
            return dict(item)

        assert (view()["waiting_seconds"], view()["handling_seconds"]) == (30, None)
        api.desk.post(f"/handoffs/{handoff_id}/accept", json={"agent": "agent-timer"})
        api.clock.advance(100)
        assert (view()["waiting_seconds"], view()["handling_seconds"]) == (30, None), "accepted: no more waiting"
        close(api, handoff_id, "agent-timer")
        api.clock.advance(1000)
        assert (view()["waiting_seconds"], view()["handling_seconds"]) == (30, 100)


def test_a_caller_hanging_up_in_the_queue_stops_the_waiting_time(api: Api) -> None:
    with api.clock.held():
        handoff_id, _ = new_handoff(api, "voice")
        api.clock.advance(20)
        gone = api.gateway.post(f"/handoffs/{handoff_id}/call-state", json={"state": "abandoned"}).json()
        api.clock.advance(50)
        detail = api.desk.get(f"/handoffs/{handoff_id}").json()
    assert (gone["status"], gone["closed_at"], gone["waiting_seconds"]) == ("abandoned", detail["closed_at"], 20)
    assert (detail["waiting_seconds"], detail["handling_seconds"], detail["closed_by"]) == (20, None, None)
    assert (detail["position"], detail["estimated_wait_seconds"]) == (None, None)


def test_a_call_that_left_the_queue_unseen_is_off_the_waiting_list_until_an_agent_takes_and_closes_it(
        api: Api) -> None:
    handoff_id, session_id = new_handoff(api, "voice")
    unseen = api.gateway.post(f"/handoffs/{handoff_id}/call-state", json={"state": "unknown"})
    assert unseen.status_code == 200, unseen.text
    assert (unseen.json()["status"], unseen.json()["closed_at"], unseen.json()["agent"]) == ("unknown", None, None)
    waiting = api.desk.get("/handoffs", params={"status": "waiting"}).json()
    assert handoff_id not in [item["handoff_id"] for item in waiting], "no agent waits for a call no longer queued"
    assert [item["handoff_id"] for item in api.desk.get("/handoffs", params={"status": "unknown"}).json()] == [
        handoff_id]
    again = api.gateway.post(f"/handoffs/{handoff_id}/call-state", json={"state": "abandoned"})
    assert (again.status_code, again.json()["detail"]["code"]) == (409, "handoff_closed"), "only from waiting"
    early = close(api, handoff_id, "agent-x", override=True)
    assert (early.status_code, early.json()["detail"]["code"]) == (409, "handoff_not_accepted")
    taken = api.desk.post(f"/handoffs/{handoff_id}/accept", json={"agent": "agent-x"})
    assert (taken.status_code, taken.json()["status"]) == (200, "accepted")
    assert close(api, handoff_id, "agent-x").json()["status"] == "closed"
    (accepted,) = audit_of(api, session_id, "handoff_accept")
    assert json.loads(accepted) == {"handoff_id": handoff_id, "agent": "agent-x", "was": "unknown"}
    assert len(audit_of(api, session_id, "handoff_unknown")) == 1
    chat, _ = new_handoff(api)
    refused = api.gateway.post(f"/handoffs/{chat}/call-state", json={"state": "unknown"})
    assert (refused.status_code, refused.json()["detail"]["code"]) == (404, "unknown_handoff"), "phone only"


def test_the_web_server_gets_one_handoff_with_its_session_and_queue_facts(api: Api) -> None:
    handoff_id, session_id = new_handoff(api)
    detail = api.desk.get(f"/handoffs/{handoff_id}")
    assert detail.status_code == 200, detail.text
    assert set(detail.json()) == VIEW_FIELDS | QUEUE_FIELDS | {"session_id"}
    assert (detail.json()["handoff_id"], detail.json()["session_id"]) == (handoff_id, session_id)
    unknown = api.desk.get("/handoffs/H-" + "0" * 20)
    assert (unknown.status_code, unknown.json()["detail"]["code"]) == (404, "unknown_handoff")


def test_a_conversations_latest_handoff_is_found_by_its_session(api: Api) -> None:
    session_id = new_session()
    first, _ = new_handoff(api, session_id=session_id)
    api.clock.advance(1)
    second, _ = new_handoff(api, session_id=session_id)
    new_handoff(api)  # another conversation's

    def of_session(session: str) -> httpx.Response:
        return api.desk.post("/handoffs/of-session", json={"session_id": session})

    latest = of_session(session_id).json()
    assert (latest["handoff_id"], latest["session_id"], latest["status"]) == (second, session_id, "waiting")
    assert set(latest) == VIEW_FIELDS | QUEUE_FIELDS | {"session_id"}
    api.desk.post(f"/handoffs/{second}/accept", json={"agent": "agent-s"})
    close(api, second, "agent-s")
    assert (of_session(session_id).json()["handoff_id"], of_session(session_id).json()["status"]) == (
        second, "closed"), "the latest, whatever its state"
    none = of_session(new_session())
    assert (none.status_code, none.json()["detail"]["code"]) == (404, "no_handoff")
    for body in ({}, {"session_id": ""}, {"session_id": "a b"}, {"session_id": session_id, "x": 1}):
        assert api.desk.post("/handoffs/of-session", json=body).status_code == 422, body
    assert first != second


def test_a_waiting_chat_customer_leaves_a_masked_note_on_their_own_handoff_only(api: Api) -> None:
    handoff_id, session_id = new_handoff(api)
    path = f"/handoffs/{handoff_id}/customer-note"
    stranger = api.desk.post(path, json={"session_id": new_session(), "text": "我是别人"})
    assert (stranger.status_code, stranger.json()["detail"]["code"]) == (404, "unknown_handoff")
    left = api.desk.post(path, json={"session_id": session_id, "text": " 我的手机是13912345678，请尽快 "})
    assert left.status_code == 200, left.text
    assert left.json()["customer_note"] == "我的手机是139****5678，请尽快"
    assert left.json()["session_id"] == session_id and left.json()["position"] >= 1
    (stored,) = api.sql("SELECT customer_note FROM handoffs WHERE id = :i", i=handoff_id)
    assert stored.customer_note == "我的手机是139****5678，请尽快", "masked at rest"
    (entry,) = audit_of(api, session_id, "handoff_customer_note")
    assert "139" not in entry and "尽快" not in entry, "the audit says that a note came, not what it says"
    listed = api.desk.get("/handoffs", params={"handoff_id": handoff_id}).json()
    assert listed[0]["customer_note"] == "我的手机是139****5678，请尽快"
    for body in ({"session_id": session_id, "text": "  "}, {"session_id": session_id, "text": "字" * 501},
                 {"session_id": session_id}, {"session_id": session_id, "text": "x", "agent": "a"}):
        assert api.desk.post(path, json=body).status_code == 422, body
    api.desk.post(f"/handoffs/{handoff_id}/accept", json={"agent": "agent-n"})
    late = api.desk.post(path, json={"session_id": session_id, "text": "还在吗"})
    assert (late.status_code, late.json()["detail"]["code"]) == (409, "handoff_not_waiting")
    unknown = api.desk.post("/handoffs/H-" + "0" * 20 + "/customer-note", json={"session_id": session_id, "text": "x"})
    assert unknown.status_code == 404


def test_a_waiting_chat_customer_withdraws_their_own_handoff_only(api: Api) -> None:
    handoff_id, session_id = new_handoff(api)
    path = f"/handoffs/{handoff_id}/withdraw"
    stranger = api.desk.post(path, json={"session_id": new_session()})
    assert (stranger.status_code, stranger.json()["detail"]["code"]) == (404, "unknown_handoff")
    assert api.http.post(path, json={"session_id": session_id}).status_code == 403  # the engine's token
    api.clock.advance(30)
    gone = api.desk.post(path, json={"session_id": session_id})
    assert gone.status_code == 200, gone.text
    assert (gone.json()["status"], gone.json()["position"], gone.json()["waiting_seconds"]) == ("abandoned", None, 30)
    assert len(audit_of(api, session_id, "handoff_withdrawn")) == 1
    again = api.desk.post(path, json={"session_id": session_id})
    assert (again.status_code, again.json()["detail"]["code"]) == (409, "handoff_not_waiting")
    assert api.desk.post(f"/handoffs/{handoff_id}/accept", json={"agent": "agent-w"}).status_code == 409


def test_an_agent_is_online_while_the_heartbeats_are_fresh(api: Api) -> None:
    with api.clock.held():
        forget_presence(api)

        def presence(agent: str) -> dict[str, Any]:
            (row,) = [row for row in api.desk.get("/agents/presence").json() if row["agent"] == agent]
            return dict(row)

        beat = api.desk.put("/agents/agent-p1/presence", json={"state": "online"})
        assert beat.status_code == 200, beat.text
        assert beat.json() == {"agent": "agent-p1", "state": "online", "last_seen": api.clock.now().isoformat(),
                               "online": True}
        api.desk.put("/agents/agent-p2/presence", json={"state": "away"})
        assert presence("agent-p1")["online"] is True and presence("agent-p2")["online"] is False
        handoff_id, _ = new_handoff(api)
        assert api.desk.get(f"/handoffs/{handoff_id}").json()["agents_online"] == 1
        api.clock.advance(PRESENCE_TTL_SECONDS)
        assert presence("agent-p1")["online"] is True, "a heartbeat is good for PRESENCE_TTL_SECONDS"
        api.clock.advance(1)
        assert presence("agent-p1") == {**beat.json(), "online": False}
        assert api.desk.get(f"/handoffs/{handoff_id}").json()["agents_online"] == 0
        api.desk.put("/agents/agent-p1/presence", json={"state": "online"})
        api.desk.put("/agents/agent-p2/presence", json={"state": "online"})
        assert api.desk.get(f"/handoffs/{handoff_id}").json()["agents_online"] == 2
        assert api.desk.put("/agents/agent-p2/presence", json={"state": "offline"}).json()["online"] is False
        assert api.desk.get(f"/handoffs/{handoff_id}").json()["agents_online"] == 1
    agents = [row["agent"] for row in api.desk.get("/agents/presence").json()]
    assert agents == sorted(agents) and len(agents) == len(set(agents)), "one row per agent"


def test_presence_refuses_what_is_no_agent_login_or_state(api: Api) -> None:
    for path, body in (("/agents/agent-q/presence", {"state": "busy"}), ("/agents/agent-q/presence", {}),
                       ("/agents/agent-q/presence", {"state": "online", "x": 1}),
                       ("/agents/%20agent-q/presence", {"state": "online"}),
                       ("/agents/agent-q%00/presence", {"state": "online"}),
                       ("/agents/" + "a" * 65 + "/presence", {"state": "online"})):
        refused = api.desk.put(path, json=body)
        assert refused.status_code == 422, (path, body, refused.text)
    assert api.desk.put("/agents/坐席 小王/presence", json={"state": "online"}).json()["agent"] == "坐席 小王"


def test_the_queue_position_is_the_place_in_the_desks_waiting_list(api: Api) -> None:
    mine = []
    for priority in ("normal", "emergency", "high", "normal", "emergency"):
        created = api.http.post("/handoffs", json={
            "session_id": new_session(), "channel": "chat", "flow": "bill_inquiry", "reason": "转人工",
            "priority": priority, "summary": "客户要求人工"}).json()
        assert set(created) == {"handoff_id"} | QUEUE_FIELDS
        mine.append(created["handoff_id"])
        api.clock.advance(1)

    def places() -> dict[str, int]:
        listed = api.desk.get("/handoffs", params={"status": "waiting", "limit": 500})
        assert int(listed.headers["x-total-count"]) <= 500
        order = [item["handoff_id"] for item in listed.json()]
        return {handoff_id: order.index(handoff_id) + 1 for handoff_id in order}

    before = places()
    for handoff_id in mine:
        assert api.desk.get(f"/handoffs/{handoff_id}").json()["position"] == before[handoff_id]
    assert before[mine[1]] < before[mine[4]] < before[mine[2]] < before[mine[0]] < before[mine[3]]
    assert api.desk.post(f"/handoffs/{mine[4]}/accept", json={"agent": "agent-pos"}).status_code == 200
    taken = api.desk.get(f"/handoffs/{mine[4]}").json()
    assert (taken["position"], taken["estimated_wait_seconds"]) == (None, None)
    for handoff_id in (mine[2], mine[0], mine[3]):
        assert api.desk.get(f"/handoffs/{handoff_id}").json()["position"] == before[handoff_id] - 1
    assert api.desk.get(f"/handoffs/{mine[1]}").json()["position"] == before[mine[1]], "ahead of it: unmoved"


def test_the_estimated_wait_is_rounds_of_the_channels_recent_mean_handling_time(api: Api) -> None:
    """ceil(position / max(1, agents online)) x the mean handling time of the channel's last 50
    closed hand-overs (outbound here: no other test closes one)."""
    with api.clock.held():
        older = [accepted_handoff(api, "agent-w", "outbound") for _ in range(5)]
        api.clock.advance(300)
        for handoff_id in older:  # 300 s each: left out once 50 newer ones are closed
            assert close(api, handoff_id, "agent-w").status_code == 200
        newer = [accepted_handoff(api, "agent-w", "outbound") for _ in range(50)]
        api.clock.advance(60)
        for handoff_id in newer[:25]:
            close(api, handoff_id, "agent-w")
        api.clock.advance(120)
        for handoff_id in newer[25:]:
            close(api, handoff_id, "agent-w")  # 60 s and 180 s: a mean of 120 s
        forget_presence(api)
        waiting, _ = new_handoff(api, "outbound")
        alone = api.desk.get(f"/handoffs/{waiting}").json()
        position = alone["position"]
        assert (alone["agents_online"], alone["estimated_wait_seconds"]) == (0, position * 120)
        for number, agent in enumerate(("agent-w1", "agent-w2", "agent-w3"), start=1):
            api.desk.put(f"/agents/{agent}/presence", json={"state": "online"})
            facts = api.desk.get(f"/handoffs/{waiting}").json()
            assert (facts["agents_online"], facts["position"], facts["estimated_wait_seconds"]) == (
                number, position, math.ceil(position / number) * 120)
        # A channel without any closed hand-over yet: the default handling time.
        other, _ = new_handoff(api, "agent")
        facts = api.desk.get(f"/handoffs/{other}").json()
        assert facts["estimated_wait_seconds"] == math.ceil(facts["position"] / 3) * HANDLING_SECONDS_DEFAULT
        created = api.http.post("/handoffs", json={
            "session_id": new_session(), "channel": "outbound", "flow": "bill_inquiry", "reason": "转人工",
            "priority": "normal", "summary": "客户要求人工"}).json()
        assert created["estimated_wait_seconds"] == math.ceil(created["position"] / 3) * 120
        assert created["agents_online"] == 3


def test_many_agents_claiming_one_handoff_at_once_exactly_one_wins(api: Api) -> None:
    agents = [f"agent-rush-{number}" for number in range(8)]
    for _ in range(3):
        handoff_id, session_id = new_handoff(api)
        together = threading.Barrier(len(agents))

        def claim(agent: str, handoff_id: str = handoff_id, together: threading.Barrier = together
                  ) -> httpx.Response:
            with httpx.Client(base_url=api.base_url, headers=api.desk.headers, timeout=30) as desk:
                together.wait()
                return desk.post(f"/handoffs/{handoff_id}/accept", json={"agent": agent})

        with ThreadPoolExecutor(len(agents)) as pool:
            answers = list(pool.map(claim, agents))
        assert sorted(answer.status_code for answer in answers) == [200] + [409] * (len(agents) - 1), \
            [answer.text for answer in answers]
        assert {answer.json()["detail"]["code"] for answer in answers if answer.status_code == 409} == {
            "handoff_taken"}
        (winner,) = [answer.json()["agent"] for answer in answers if answer.status_code == 200]
        (row,) = api.sql("SELECT status, agent FROM handoffs WHERE id = :i", i=handoff_id)
        assert (row.status, row.agent) == ("accepted", winner)
        assert len(audit_of(api, session_id, "handoff_accept")) == 1


def test_two_supervisors_closing_one_handoff_at_once_close_it_once(api: Api) -> None:
    handoff_id = accepted_handoff(api, "agent-busy")
    together = threading.Barrier(2)

    def close_now(supervisor: str) -> httpx.Response:
        with httpx.Client(base_url=api.base_url, headers=api.desk.headers, timeout=30) as desk:
            together.wait()
            return desk.post(f"/handoffs/{handoff_id}/close",
                             json={"agent": supervisor, "disposition": "escalated", "override": True})

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(close_now, ("supervisor-a", "supervisor-b")))
    assert sorted(answer.status_code for answer in answers) == [200, 409]
    (winner,) = [answer.json()["closed_by"] for answer in answers if answer.status_code == 200]
    assert api.sql("SELECT closed_by FROM handoffs WHERE id = :i", i=handoff_id)[0].closed_by == winner


def test_agents_find_a_customers_handoffs_by_the_whole_masked_or_last_four_digits_of_the_number(api: Api) -> None:
    person = api.take_clean()
    phone = person["phone"]
    handoff_id, _ = new_handoff(api, session_id=api.verified(person, "L1"))
    new_handoff(api)  # a caller not identified: no number, never found by one
    masked = f"{phone[:3]}****{phone[-4:]}"
    for searched in (phone, masked, phone[-4:]):
        found = api.desk.get("/handoffs", params={"phone": searched, "status": "waiting"})
        assert found.status_code == 200, found.text
        assert handoff_id in [h["handoff_id"] for h in found.json()], searched
        assert all(h["masked_phone"].endswith(phone[-4:]) for h in found.json())
        assert int(found.headers["x-total-count"]) == len(found.json())
    other = "1" + ("0" if phone[1] != "0" else "9") + phone[2:]  # another number, same last digits
    assert handoff_id not in [h["handoff_id"] for h in api.desk.get("/handoffs", params={"phone": other}).json()]
    view = api.desk.get("/handoffs", params={"handoff_id": handoff_id}).json()[0]
    assert view["masked_phone"] == masked and phone not in json.dumps(view), "the number only masked"


def test_a_phone_search_that_is_no_number_form_is_refused(api: Api) -> None:
    for searched in ("138%", "1381234567", "138****567", "12345", "%%%%", "138_1234_5678"):
        assert api.desk.get("/handoffs", params={"phone": searched}).status_code == 422, searched


def test_a_waiting_chat_customer_whose_widget_stops_asking_has_abandoned(api: Api) -> None:
    gone_id, gone_session = new_handoff(api)
    staying_id, staying_session = new_handoff(api)
    never_asked_id, _ = new_handoff(api)  # a REST client never asks: left to the agents
    for session_id in (gone_session, staying_session):
        assert api.desk.post("/handoffs/of-session", json={"session_id": session_id, "seen": True}).status_code == 200
    api.clock.advance(CHAT_CUSTOMER_GONE_SECONDS - 10)
    assert api.desk.post("/handoffs/of-session", json={"session_id": staying_session, "seen": True}).status_code == 200
    api.clock.advance(20)  # the first widget silent for longer than allowed, the second not
    waiting = [h["handoff_id"] for h in api.desk.get("/handoffs", params={"status": "waiting"}).json()]
    assert staying_id in waiting and never_asked_id in waiting and gone_id not in waiting
    gone = api.desk.get(f"/handoffs/{gone_id}").json()
    assert gone["status"] == "abandoned"
    assert gone["waiting_seconds"] == 0, "the wait ended when the customer was last seen"
    assert audit_of(api, gone_session, "handoff_abandoned")
    taken = api.desk.post(f"/handoffs/{gone_id}/accept", json={"agent": "agent-late"})
    assert taken.status_code == 409 and taken.json()["detail"]["code"] == "handoff_closed"


def test_asking_without_seen_does_not_keep_a_customer_in_the_queue(api: Api) -> None:
    handoff_id, session_id = new_handoff(api)
    assert api.desk.post("/handoffs/of-session", json={"session_id": session_id, "seen": True}).status_code == 200
    api.clock.advance(CHAT_CUSTOMER_GONE_SECONDS - 1)
    # The desk's own look-ups (the web server reading the hand-over) are not the customer.
    assert api.desk.post("/handoffs/of-session", json={"session_id": session_id}).status_code == 200
    api.clock.advance(2)
    assert api.desk.get(f"/handoffs/{handoff_id}").json()["status"] == "waiting", "not swept by a single read"
    assert api.desk.get("/handoffs", params={"handoff_id": handoff_id}).json()[0]["status"] == "abandoned"


def test_presence_changes_and_desk_logins_are_audited_heartbeats_are_not(api: Api) -> None:
    agent = "agent-audited"
    for state in ("online", "online", "online", "away", "away", "online"):
        assert api.desk.put(f"/agents/{agent}/presence", json={"state": state}).status_code == 200
    for event in ("login", "logout"):
        assert api.desk.post(f"/agents/{agent}/sessions", json={"event": event}).status_code == 200
    rows = api.sql("SELECT kind, inputs FROM audit_entries WHERE kind IN ('agent_presence', 'agent_login', "
                   "'agent_logout') ORDER BY id")
    mine = [(row.kind, row.inputs if isinstance(row.inputs, dict) else json.loads(row.inputs)) for row in rows]
    mine = [(kind, inputs.get("state")) for kind, inputs in mine if inputs.get("agent") == agent]
    assert mine == [("agent_presence", "online"), ("agent_presence", "away"), ("agent_presence", "online"),
                    ("agent_login", None), ("agent_logout", None)]
    assert api.desk.post(f"/agents/{agent}/sessions", json={"event": "sudo"}).status_code == 422
    assert api.http.post(f"/agents/{agent}/sessions", json={"event": "login"}).status_code in (401, 403), \
        "the engine's token is not the desk's"


def test_the_desk_stamp_changes_with_what_a_desk_shows_and_only_then(api: Api) -> None:
    def stamp() -> str:
        answer = api.desk.get("/handoffs/stamp")
        assert answer.status_code == 200, answer.text
        return str(answer.json()["stamp"])

    first = stamp()
    assert stamp() == first
    handoff_id, session_id = new_handoff(api)
    made = stamp()
    assert made != first, "a new hand-over"
    api.desk.post("/handoffs/of-session", json={"session_id": session_id, "seen": True})
    api.desk.put("/agents/agent-stamp/presence", json={"state": "online"})
    api.clock.advance(5)
    assert stamp() == made, "a widget asking or a heartbeat changes nothing an agent sees"
    api.desk.post(f"/handoffs/{handoff_id}/customer-note", json={"session_id": session_id, "text": "请回电"})
    noted = stamp()
    assert noted != made, "a customer's note"
    assert api.desk.post(f"/handoffs/{handoff_id}/accept", json={"agent": "agent-stamp"}).status_code == 200
    taken = stamp()
    assert taken != noted, "taken by an agent"
    assert close(api, handoff_id, "agent-stamp").status_code == 200
    assert stamp() != taken, "closed"
    assert api.http.get("/handoffs/stamp").status_code in (401, 403), "the desk's, not the engine's"


def test_the_agent_holding_a_customers_handoff_puts_them_on_the_do_not_call_list(api: Api) -> None:
    person = api.take_clean()
    handoff_id, session_id = new_handoff(api, session_id=api.verified(person, "L1"))
    assert api.desk.post(f"/handoffs/{handoff_id}/accept", json={"agent": "agent-dnc"}).status_code == 200
    other = api.desk.post(f"/handoffs/{handoff_id}/do-not-call", json={"agent": "agent-other"})
    assert other.status_code == 409 and other.json()["detail"]["code"] == "handoff_not_yours"
    flag = "SELECT do_not_call FROM customers WHERE id = :c"
    assert not api.sql(flag, c=person["customer_id"])[0].do_not_call
    done = api.desk.post(f"/handoffs/{handoff_id}/do-not-call", json={"agent": "agent-dnc"})
    assert done.status_code == 200, done.text
    assert done.json() == {"customer_id": person["customer_id"], "do_not_call": True}
    assert api.sql(flag, c=person["customer_id"])[0].do_not_call
    rows = api.sql("SELECT channel, inputs FROM audit_entries WHERE kind = 'do_not_call' AND customer_id = :c",
                   c=person["customer_id"])
    assert [(row.channel, json.loads(row.inputs) if isinstance(row.inputs, str) else row.inputs) for row in rows] == [
        ("agent", {"source": "agent", "agent": "agent-dnc", "handoff_id": handoff_id})]
    assert session_id not in json.dumps(done.json())


def test_do_not_call_needs_an_identified_customer_and_the_desks_token(api: Api) -> None:
    handoff_id, _ = new_handoff(api)  # nobody verified: no customer on it
    answer = api.desk.post(f"/handoffs/{handoff_id}/do-not-call", json={"agent": "supervisor-1", "override": True})
    assert answer.status_code == 409 and answer.json()["detail"]["code"] == "customer_not_identified"
    assert api.desk.post("/handoffs/H-00000000000000000000/do-not-call",
                         json={"agent": "a"}).status_code == 404
    assert api.http.post(f"/handoffs/{handoff_id}/do-not-call", json={"agent": "a"}).status_code in (401, 403)
    assert api.desk.post(f"/handoffs/{handoff_id}/do-not-call", json={"agent": "a", "extra": 1}).status_code == 422


def take_over(api: Api, session_id: str, agent: str, channel: str = "chat") -> httpx.Response:
    return api.desk.post("/handoffs/takeover", json={"session_id": session_id, "channel": channel, "agent": agent,
                                                     "alert": "客户情绪异常"})


def test_a_supervisor_takes_over_a_conversation_without_a_handoff_at_emergency_priority(api: Api) -> None:
    session_id = new_session()
    taken = take_over(api, session_id, "supervisor-takeover-1")
    assert taken.status_code == 200, taken.text
    detail = taken.json()
    assert (detail["status"], detail["agent"], detail["priority"], detail["flow"], detail["session_id"]) == (
        "accepted", "supervisor-takeover-1", "emergency", "quality_takeover", session_id)
    assert "客户情绪异常" in detail["summary"] and detail["verified_level"] == "none"
    again = take_over(api, session_id, "supervisor-takeover-1")  # a second click: the same case back
    assert again.status_code == 200 and again.json()["handoff_id"] == detail["handoff_id"]
    assert len(api.sql("SELECT id FROM handoffs WHERE session_id = :s", s=session_id)) == 1
    assert [json.loads(inputs)["agent"] for inputs in audit_of(api, session_id, "handoff_takeover")] == [
        "supervisor-takeover-1"], "audited when it happened, once"
    assert close(api, detail["handoff_id"], "supervisor-takeover-1").status_code == 200, "an ordinary case to close"


def test_a_takeover_claims_the_waiting_handoff_and_leaves_one_another_agent_holds(api: Api) -> None:
    handoff_id, session_id = new_handoff(api, priority="normal")
    taken = take_over(api, session_id, "supervisor-takeover-2")
    assert taken.status_code == 200, taken.text
    assert (taken.json()["handoff_id"], taken.json()["priority"], taken.json()["agent"]) == (
        handoff_id, "emergency", "supervisor-takeover-2")
    held = accepted_handoff(api, "agent-holding-3")
    held_session = api.sql("SELECT session_id FROM handoffs WHERE id = :i", i=held)[0].session_id
    refused = take_over(api, held_session, "supervisor-takeover-2")
    assert refused.status_code == 409 and refused.json()["detail"]["code"] == "handoff_taken"
    assert api.sql("SELECT agent FROM handoffs WHERE id = :i", i=held)[0].agent == "agent-holding-3"
    for bad in ({"session_id": session_id, "channel": "fax", "agent": "s", "alert": "x"},
                {"session_id": session_id, "channel": "chat", "agent": "", "alert": "x"},
                {"session_id": session_id, "channel": "chat", "agent": "s"}):
        assert api.desk.post("/handoffs/takeover", json=bad).status_code == 422, bad
    assert api.http.post("/handoffs/takeover", json={"session_id": session_id, "channel": "chat", "agent": "s",
                                                     "alert": "x"}).status_code in (401, 403, 404), "desk only"


def raise_priority(api: Api, session_id: str, agent: str = "supervisor-raise") -> httpx.Response:
    return api.desk.post("/handoffs/raise-priority", json={"session_id": session_id, "agent": agent,
                                                           "alert": "客户情绪异常"})


def test_a_supervisor_raises_a_waiting_call_to_emergency_without_taking_it_once_in_the_audit(api: Api) -> None:
    handoff_id, session_id = new_handoff(api, channel="voice", priority="normal")
    ahead, _ = new_handoff(api, channel="voice", priority="high")  # later, but more urgent: ahead
    before = api.desk.get(f"/handoffs/{handoff_id}").json()
    raised = raise_priority(api, session_id)
    assert raised.status_code == 200, raised.text
    detail = raised.json()
    assert (detail["handoff_id"], detail["status"], detail["agent"], detail["priority"]) == (
        handoff_id, "waiting", None, "emergency")
    assert detail["position"] < before["position"], "moved ahead of the high one"
    assert api.desk.get(f"/handoffs/{ahead}").json()["position"] > detail["position"]
    again = raise_priority(api, session_id, "supervisor-other")  # a second click, or a second supervisor
    assert again.status_code == 200 and again.json()["priority"] == "emergency"
    audited = [json.loads(inputs) for inputs in audit_of(api, session_id, "handoff_priority_raised")]
    assert audited == [{"handoff_id": handoff_id, "agent": "supervisor-raise", "alert": "客户情绪异常",
                        "previous_priority": "normal"}], "audited when it changed, once"
    accepted = api.desk.post(f"/handoffs/{handoff_id}/accept", json={"agent": "agent-raise"})
    assert accepted.status_code == 200, "still waiting for any agent to take"


def test_a_check_only_raise_answers_as_a_raise_would_and_changes_nothing(api: Api) -> None:
    handoff_id, session_id = new_handoff(api, channel="voice", priority="normal")
    body = {"session_id": session_id, "agent": "supervisor-check", "alert": "客户情绪异常", "check_only": True}
    checked = api.desk.post("/handoffs/raise-priority", json=body)
    assert checked.status_code == 200 and checked.json()["priority"] == "normal"
    assert api.sql("SELECT priority FROM handoffs WHERE id = :i", i=handoff_id)[0].priority == "normal"
    assert audit_of(api, session_id, "handoff_priority_raised") == []
    nothing = api.desk.post("/handoffs/raise-priority", json={**body, "session_id": new_session()})
    assert nothing.status_code == 404 and nothing.json()["detail"]["code"] == "no_waiting_handoff"


def test_raising_needs_a_waiting_handoff_one_no_agent_holds_and_the_desks_token(api: Api) -> None:
    assert raise_priority(api, new_session()).json()["detail"]["code"] == "no_waiting_handoff"
    assert raise_priority(api, new_session()).status_code == 404
    held = accepted_handoff(api, "agent-holding-raise", channel="voice")
    held_session = api.sql("SELECT session_id FROM handoffs WHERE id = :i", i=held)[0].session_id
    refused = raise_priority(api, held_session)
    assert refused.status_code == 409 and refused.json()["detail"]["code"] == "handoff_taken"
    assert api.sql("SELECT priority FROM handoffs WHERE id = :i", i=held)[0].priority == "normal"
    assert close(api, held, "agent-holding-raise").status_code == 200
    assert raise_priority(api, held_session).status_code == 404, "closed: nothing waits"
    assert audit_of(api, held_session, "handoff_priority_raised") == []
    _, session_id = new_handoff(api, channel="voice")
    for bad in ({"session_id": session_id, "agent": "", "alert": "x"}, {"session_id": session_id, "agent": "s"},
                {"session_id": session_id, "agent": "s", "alert": "x", "priority": "normal"}):
        assert api.desk.post("/handoffs/raise-priority", json=bad).status_code == 422, bad
    body = {"session_id": session_id, "agent": "s", "alert": "x"}
    for caller in (api.http, api.gateway):
        assert caller.post("/handoffs/raise-priority", json=body).status_code == 403, "desk only"
    assert httpx.post(f"{api.base_url}/handoffs/raise-priority", json=body).status_code == 401
    assert api.sql("SELECT priority FROM handoffs WHERE session_id = :s", s=session_id)[0].priority == "normal"
