"""The supervisors' live quality board: the inspection's alerts are pushed on the desk's event
stream to supervisors only, named in Chinese, each conversation by an opaque reference (a chat's
session id never reaches the browser); a supervisor opens an alerted conversation with its hits.
Against the real web app on loopback, a fake inspection service, risk API and Rasa relay."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from stack.services import free_port
from tests.accounts import AGENT, SUPERVISOR
from tests.loopback import JsonPeer, serving, serving_asgi
from tests.security.test_web_desk_events import READ_TIMEOUT_S, Events, logged_in, web_settings
from trust.env_secrets import SecretError
from web import app as web_app
from web.app import create_app
from web.config import Settings

CONVERSATION = "chat-session-9f8e7d6c5b4a"  # a chat's Rasa sender: never to be seen by a browser
CALL = "call-0a1b2c3d4e5f"  # a phone call's
FORGOTTEN = "chat-session-gone"  # a conversation Rasa no longer has (retention)
TAKEN_OVER = "H-00000000000000000000"
RAISED = "H-11111111111111111111"
GATEWAY_TOKEN = "a-gateway-desk-token-for-tests"
QUALITY_TOKEN = "a-quality-token-for-tests"


def alert(seq: int, rule: str = "distress", severity: str = "critical", conversation: str = CONVERSATION
          ) -> dict[str, Any]:
    return {"seq": seq, "conversation_id": conversation, "rule": rule, "severity": severity,
            "at": 1_700_000_000.0 + seq, "detail": "不想活了", "event_id": 10 + seq}


@dataclass
class Fake:
    url: str = ""
    alerts: list[dict[str, Any]] = field(default_factory=list)
    down: bool = False
    stamp: str = "stamp-1"  # the risk API's desk stamp
    tokens: set[str] = field(default_factory=set)  # the bearer tokens the inspection was asked with
    posts: list[tuple[str, Any]] = field(default_factory=list)  # what reached the risk API, relay and gateway
    raise_refused: tuple[int, str] | None = None  # the risk API's refusal of a raise: (status, code)
    gateway_answer: tuple[int, dict[str, Any]] = (200, {"queue": "agents", "priority": 50})
    gateway_tokens: set[str] = field(default_factory=set)  # the bearer tokens the gateway was asked with
    record_down: bool = False  # the risk API answers a raise's check but cannot record it
    pending: Any = field(default_factory=dict)  # the inspection's list of work


def _handler(fake: Fake) -> type[JsonPeer]:
    class Handler(JsonPeer):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = urlsplit(self.path)
            if path.path == "/handoffs/stamp":
                self.answer({"stamp": fake.stamp})
            elif path.path == "/alerts":
                fake.tokens.add(self.headers.get("Authorization", ""))
                if fake.down:
                    self.answer({"detail": "down"}, 503)
                    return
                after = int(parse_qs(path.query)["after"][0])
                self.answer({"alerts": [item for item in fake.alerts if item["seq"] > after],
                             "last": max([item["seq"] for item in fake.alerts], default=0)})
            elif path.path == f"/conversations/{CONVERSATION}/review":
                self.answer({"score": 60, "hits": [{"hit": 0, "rule": "distress", "severity": "critical",
                                                    "at": 1_700_000_001.5, "detail": "不想活了", "state": "open",
                                                    "steps": []}]})
            elif path.path == "/reviews/pending":
                self.answer(fake.pending)
            else:
                self.answer([])

        def do_POST(self) -> None:  # noqa: N802
            body = self.body()
            fake.posts.append((self.path, body))
            if self.path == "/webhooks/webchat/agent" and body["sender"] == FORGOTTEN:
                self.answer({"detail": "no such conversation"}, 404)
            elif self.path == "/webhooks/webchat/agent" and body["do"] == "read":
                self.answer({"next": 3, "channel": "webchat" if body["sender"] == CONVERSATION else "trusted",
                             "messages": [{"index": 1, "from": "bot", "text": "您好", "at": 1_700_000_000.0},
                                          {"index": 2, "from": "customer", "text": "我不想活了",
                                           "at": 1_700_000_001.2}]})
            elif self.path == "/handoffs/raise-priority":
                if fake.raise_refused is not None:
                    status, code = fake.raise_refused
                    self.answer({"detail": {"code": code, "message": "风控接口的说明"}}, status)
                    return
                if fake.record_down and not body.get("check_only"):
                    self.answer({"detail": "database unavailable"}, 503)
                    return
                self.answer({"handoff_id": RAISED, "session_id": body["session_id"], "status": "waiting",
                             "agent": None, "channel": "voice", "priority": "emergency", "flow": "human_handoff",
                             "summary": "客户要求人工", "verified_level": "none"})
            elif self.path == "/queue/priority":
                fake.gateway_tokens.add(self.headers.get("Authorization", ""))
                self.answer(fake.gateway_answer[1], fake.gateway_answer[0])
            elif self.path == "/handoffs/of-session":  # the supervisor took every conversation over
                self.answer({"handoff_id": TAKEN_OVER, "session_id": body["session_id"], "status": "accepted",
                             "agent": SUPERVISOR, "channel": "chat", "priority": "emergency"})
            elif self.path == "/handoffs/takeover":
                self.answer({"handoff_id": TAKEN_OVER, "session_id": body["session_id"], "status": "accepted",
                             "agent": body["agent"], "channel": "chat", "priority": "emergency",
                             "flow": "quality_takeover", "summary": "质检告警", "verified_level": "none"})
            else:
                self.answer({"ok": True})

    return Handler


@pytest.fixture
def fake() -> Iterator[Fake]:
    record = Fake()
    with serving(_handler(record)) as url:
        record.url = url
        yield record


@pytest.fixture
def web(fake: Fake) -> Iterator[str]:
    settings = web_settings(fake.url, quality_url=fake.url, quality_api_token=QUALITY_TOKEN,
                            gateway_urls=(fake.url,), gateway_desk_token=GATEWAY_TOKEN)
    with serving_asgi(create_app(settings)) as url:
        yield url


def next_alerts(events: Events) -> list[dict[str, Any]]:
    while True:
        name, data = events.next()
        if name == "alerts":
            return list(data)


def test_alerts_reach_supervisors_named_in_chinese_and_never_with_the_conversation_id(fake: Fake, web: str) -> None:
    fake.alerts = [alert(1)]
    with logged_in(web, SUPERVISOR) as board, board.stream("GET", "/desk/api/events") as response:
        events = Events(response)
        first = next_alerts(events)
        named = [(item["seq"], item["rule_name"], item["severity_name"]) for item in first]
        assert named == [(1, "客户情绪异常", "严重")]
        assert first[0]["conversation"].startswith("Q-") and CONVERSATION not in json.dumps(first)
        fake.alerts.append(alert(2, "forbidden_phrase"))  # raised while the board is open
        assert [(item["seq"], item["rule_name"]) for item in next_alerts(events)] == [(2, "出现禁用语")]
        ref = first[0]["conversation"]
        opened = board.get(f"/desk/api/quality/conversations/{ref}")
        assert opened.status_code == 200, opened.text
        assert CONVERSATION not in opened.text
        found = opened.json()
        assert [line["text"] for line in found["messages"]] == ["您好", "我不想活了"]
        assert [(hit["rule_name"], hit["severity_name"], hit["state_name"], hit["may"]) for hit in found["hits"]] == [
            ("客户情绪异常", "严重", "待复核", ["review"])]
    assert fake.tokens == {f"Bearer {QUALITY_TOKEN}"}


def test_an_agent_gets_no_alerts_and_cannot_open_an_alerted_conversation(fake: Fake, web: str) -> None:
    fake.alerts = [alert(1)]
    with logged_in(web, SUPERVISOR) as board, board.stream("GET", "/desk/api/events") as supervisor, \
            logged_in(web, AGENT) as desk, desk.stream("GET", "/desk/api/events") as agent:
        on_board, on_desk = Events(supervisor), Events(agent)
        ref = next_alerts(on_board)[0]["conversation"]
        assert on_desk.next() == ("queue", {"stamp": "stamp-1"})
        fake.alerts.append(alert(2))
        assert [item["seq"] for item in next_alerts(on_board)] == [2]
        fake.stamp = "stamp-2"  # after the alert reached the board: the agent's next event is this one
        assert on_desk.next() == ("queue", {"stamp": "stamp-2"})
        assert desk.get(f"/desk/api/quality/conversations/{ref}").status_code == 403
        assert board.get("/desk/api/quality/conversations/Q-" + "A" * 40).status_code == 404  # sealed by no desk
        assert board.get(f"/desk/api/quality/conversations/{CONVERSATION}").status_code == 422
    assert httpx.get(f"{web}/desk/api/quality/conversations/{ref}", timeout=READ_TIMEOUT_S).status_code == 401


def test_a_list_of_work_with_malformed_entries_shows_the_good_ones(fake: Fake, web: str) -> None:
    good = {"conversation_id": CONVERSATION, "worst": "critical", "channel": "chat", "to_review": 1, "appealed": 0,
            "last_at": 1_700_000_001.5, "rules": ["distress"]}
    fake.pending = {"conversations": [good, {"worst": "critical"}, {"conversation_id": 7}, "chat-x", None],
                    "total": 5}
    with logged_in(web, SUPERVISOR) as board:
        listed = board.get("/desk/api/quality/pending")
        assert listed.status_code == 200, listed.text
        (item,) = listed.json()["conversations"]
        assert item["conversation"].startswith("Q-") and CONVERSATION not in listed.text
        assert item["rule_names"] == ["客户情绪异常"]
        fake.pending = ["not", "a", "list of work"]
        assert board.get("/desk/api/quality/pending").json() == {"conversations": [], "total": 0, "offset": 0,
                                                                 "page_size": 20}


def test_an_inspection_down_or_restarted_does_not_end_the_board(fake: Fake, web: str) -> None:
    fake.alerts = [alert(1), alert(2)]
    with logged_in(web, SUPERVISOR) as board, board.stream("GET", "/desk/api/events") as response:
        events = Events(response)
        assert [item["seq"] for item in next_alerts(events)] == [1, 2]
        fake.down = True
        fake.alerts = [alert(1, "anger", "major")]  # restarted: it numbers from 1 again
        fake.down = False
        assert [(item["seq"], item["rule_name"]) for item in next_alerts(events)] == [(1, "客户情绪激动")]


def test_a_supervisor_takes_over_an_alerted_chat_but_not_a_call(fake: Fake, web: str) -> None:
    fake.alerts = [alert(1), alert(2, conversation=CALL)]
    with logged_in(web, SUPERVISOR) as board, board.stream("GET", "/desk/api/events") as response:
        chat, call = (item["conversation"] for item in next_alerts(Events(response)))
        with logged_in(web, AGENT) as desk:
            assert desk.post(f"/desk/api/quality/conversations/{chat}/takeover").status_code == 403
        refused = board.post(f"/desk/api/quality/conversations/{call}/takeover")
        assert refused.status_code == 409 and refused.json()["detail"]["code"] == "not_a_chat"
        taken = board.post(f"/desk/api/quality/conversations/{chat}/takeover")
        assert taken.status_code == 200, taken.text
        shown = taken.json()["handoff"]
        assert (shown["handoff_id"], shown["flow_name"], shown["priority_name"]) == (TAKEN_OVER, "质检告警接管", "紧急")
        assert CONVERSATION not in taken.text
    takeovers = [body for path, body in fake.posts if path == "/handoffs/takeover"]
    assert takeovers == [{"session_id": CONVERSATION, "channel": "chat", "agent": SUPERVISOR, "alert": "客户情绪异常"}]
    joins = [body for path, body in fake.posts if path == "/webhooks/webchat/agent" and body["do"] == "join"]
    assert [(body["sender"], body["agent_name"]) for body in joins] == [(CONVERSATION, "测主管")]


def posted(fake: Fake, path: str) -> list[Any]:
    return [body for at, body in fake.posts if at == path]


def test_the_board_offers_a_call_a_raise_of_priority_and_a_supervisor_raises_it(
        fake: Fake, web: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_app, "KIND_UNKNOWN_SECONDS", 3600.0)  # not asked again within the test, however slow
    fake.alerts = [alert(1), alert(2, conversation=CALL), alert(3, conversation=FORGOTTEN)]
    with logged_in(web, SUPERVISOR) as board, board.stream("GET", "/desk/api/events") as response:
        shown = next_alerts(Events(response))
        assert [item["kind"] for item in shown] == ["chat", "call", None], "unknown: the board's default (接管)"
        chat, call, unknown = (item["conversation"] for item in shown)
        with logged_in(web, AGENT) as desk:
            assert desk.post(f"/desk/api/quality/conversations/{call}/priority").status_code == 403
        refused = board.post(f"/desk/api/quality/conversations/{chat}/priority")
        assert refused.status_code == 409 and refused.json()["detail"]["code"] == "not_a_call"
        # Rasa cannot say whether it is a call: nothing is raised, no gateway is asked.
        unsure = board.post(f"/desk/api/quality/conversations/{unknown}/priority")
        assert unsure.status_code == 503 and unsure.json()["detail"]["code"] == "conversation_unknown"
        # Rasa could not place it: not asked again for a while (the board's listing asked once).
        assert [body["do"] for body in posted(fake, "/webhooks/webchat/agent") if body["sender"] == FORGOTTEN] == [
            "read"]
        raised = board.post(f"/desk/api/quality/conversations/{call}/priority")
        assert raised.status_code == 200, raised.text
        answer = raised.json()
        assert (answer["handoff"]["handoff_id"], answer["handoff"]["priority_name"], answer["queue_priority"]) == (
            RAISED, "紧急", 50)
        assert CALL not in raised.text
        assert board.post("/desk/api/quality/conversations/Q-" + "A" * 40 + "/priority").status_code == 404
        assert board.post(f"/desk/api/quality/conversations/{CALL}/priority").status_code == 422
    assert httpx.post(f"{web}/desk/api/quality/conversations/{call}/priority",
                      timeout=READ_TIMEOUT_S).status_code == 401
    # Checked, moved up the queue, then recorded.
    raise_request = {"session_id": CALL, "agent": SUPERVISOR, "alert": "客户情绪异常"}
    assert posted(fake, "/handoffs/raise-priority") == [{**raise_request, "check_only": True}, raise_request]
    assert posted(fake, "/queue/priority") == [{"call_id": CALL}]
    assert [path for path, _ in fake.posts if path in ("/handoffs/raise-priority", "/queue/priority")] == [
        "/handoffs/raise-priority", "/queue/priority", "/handoffs/raise-priority"]
    assert fake.gateway_tokens == {f"Bearer {GATEWAY_TOKEN}"}


def test_a_raise_refused_or_a_gateway_down_says_so_in_chinese(fake: Fake, web: str) -> None:
    fake.alerts = [alert(1, conversation=CALL)]
    with logged_in(web, SUPERVISOR) as board, board.stream("GET", "/desk/api/events") as response:
        (call,) = (item["conversation"] for item in next_alerts(Events(response)))
        fake.raise_refused = (409, "handoff_taken")  # an agent answered it meanwhile
        taken = board.post(f"/desk/api/quality/conversations/{call}/priority")
        assert taken.status_code == 409 and taken.json()["detail"]["code"] == "handoff_taken"
        assert posted(fake, "/queue/priority") == [], "the queue is left alone"
        fake.raise_refused = None
        for status, code in ((404, "not_queued"), (503, "ami_unavailable")):
            fake.gateway_answer = (status, {"detail": {"code": code, "message": "网关的说明"}})
            answer = board.post(f"/desk/api/quality/conversations/{call}/priority")
            assert answer.status_code == status and answer.json()["detail"] == {"code": code, "message": "网关的说明"}
        # The queue refused both times: only checks reached the risk API, no raise is on record.
        assert all(body.get("check_only") for body in posted(fake, "/handoffs/raise-priority"))
        fake.gateway_answer = (200, {"queue": "agents", "priority": 50})
        fake.record_down = True  # moved up the queue, then the record fails: said, not hidden
        answer = board.post(f"/desk/api/quality/conversations/{call}/priority")
        assert answer.status_code == 502 and answer.json()["detail"]["code"] == "raised_not_recorded"
        fake.record_down = False
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    fake.gateway_answer = (404, {"detail": {"code": "not_queued", "message": "这通电话不在坐席队列中等待。"}})
    for gateways, status, code in (((down,), 503, "gateway_unavailable"),
                                   ((fake.url, down), 503, "gateway_unavailable"),  # the one down may hold it
                                   ((fake.url, fake.url), 404, "not_queued"),  # every gateway: not held here
                                   ((fake.url,), 503, "gateway_not_configured")):
        settings = web_settings(fake.url, quality_url=fake.url, quality_api_token=QUALITY_TOKEN, gateway_urls=gateways,
                                gateway_desk_token=GATEWAY_TOKEN if code != "gateway_not_configured" else None)
        with serving_asgi(create_app(settings)) as other, logged_in(other, SUPERVISOR) as board, \
                board.stream("GET", "/desk/api/events") as response:
            next_alerts(Events(response))
            answer = board.post(f"/desk/api/quality/conversations/{call}/priority")
            assert answer.status_code == status and answer.json()["detail"]["code"] == code, answer.text
            assert "网关" in answer.json()["detail"]["message"] or code == "not_queued"


def test_the_gateway_that_holds_the_call_answers_among_several(fake: Fake) -> None:
    fake.alerts = [alert(1, conversation=CALL)]
    down = f"http://127.0.0.1:{free_port()}"
    with serving(_handler(Fake(gateway_answer=(404, {"detail": {"code": "not_queued", "message": "不在"}})))) as other:
        settings = web_settings(fake.url, quality_url=fake.url, quality_api_token=QUALITY_TOKEN,
                                gateway_urls=(other, fake.url, down), gateway_desk_token=GATEWAY_TOKEN)
        with serving_asgi(create_app(settings)) as web, logged_in(web, SUPERVISOR) as board, \
                board.stream("GET", "/desk/api/events") as response:
            (call,) = (item["conversation"] for item in next_alerts(Events(response)))
            raised = board.post(f"/desk/api/quality/conversations/{call}/priority")
            assert raised.status_code == 200, raised.text
            assert raised.json()["queue_priority"] == 50
    assert posted(fake, "/queue/priority") == [{"call_id": CALL}]


def test_the_gateways_and_their_token_come_from_the_environment_and_no_development_token_outside_it() -> None:
    env = {"RISK_API_TOKEN": "r" * 20, "CHAT_SESSION_SECRET": "c" * 32,
           "GATEWAY_URLS": " http://127.0.0.1:9093  http://127.0.0.1:9193 ", "GATEWAY_DESK_TOKEN": "g" * 20}
    settings = Settings.from_env(env)
    assert settings.gateway_urls == ("http://127.0.0.1:9093", "http://127.0.0.1:9193")
    assert settings.gateway_desk_token == "g" * 20
    assert Settings.from_env({**env, "GATEWAY_URLS": ""}).gateway_urls == ("http://127.0.0.1:9093",)
    with pytest.raises(SecretError, match="GATEWAY_DESK_TOKEN"):
        Settings.from_env({**env, "GATEWAY_DESK_TOKEN": "dev-only-gateway-desk-token"})
