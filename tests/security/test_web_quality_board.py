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

from tests.accounts import AGENT, SUPERVISOR
from tests.loopback import JsonPeer, serving, serving_asgi
from tests.security.test_web_desk_events import READ_TIMEOUT_S, Events, logged_in, web_settings
from web.app import create_app

CONVERSATION = "chat-session-9f8e7d6c5b4a"  # a chat's Rasa sender: never to be seen by a browser
CALL = "call-0a1b2c3d4e5f"  # a phone call's
TAKEN_OVER = "H-00000000000000000000"
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
    posts: list[tuple[str, Any]] = field(default_factory=list)  # what reached the risk API and the relay


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
            elif path.path == f"/conversations/{CONVERSATION}/score":
                self.answer({"score": 60, "hits": [{"rule": "distress", "severity": "critical",
                                                    "at": 1_700_000_001.5, "detail": "不想活了"}]})
            else:
                self.answer([])

        def do_POST(self) -> None:  # noqa: N802
            body = self.body()
            fake.posts.append((self.path, body))
            if self.path == "/webhooks/webchat/agent" and body["do"] == "read":
                self.answer({"next": 3, "channel": "webchat" if body["sender"] == CONVERSATION else "trusted",
                             "messages": [{"index": 1, "from": "bot", "text": "您好", "at": 1_700_000_000.0},
                                          {"index": 2, "from": "customer", "text": "我不想活了",
                                           "at": 1_700_000_001.2}]})
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
    settings = web_settings(fake.url, quality_url=fake.url, quality_api_token=QUALITY_TOKEN)
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
        assert [(hit["rule_name"], hit["severity_name"]) for hit in found["hits"]] == [("客户情绪异常", "严重")]
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
        assert board.get("/desk/api/quality/conversations/Q-0123456789abcdef0123").status_code == 404
        assert board.get(f"/desk/api/quality/conversations/{CONVERSATION}").status_code == 422
    assert httpx.get(f"{web}/desk/api/quality/conversations/{ref}", timeout=READ_TIMEOUT_S).status_code == 401


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
