"""Who may do what on the desk and in a live chat (issue 19): roles, the agent holding a case,
the chat customer's own hand-over, and the accounts file. Against the real web app, with one
loopback fake that answers as the risk API and as Rasa's live-agent route and records what
reaches it."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from stack.services import ROOT, SERVICES_VENV
from tests.accounts import AGENT, PASSWORD, REVIEWER, SECOND_AGENT, SUPERVISOR, accounts_file
from tests.loopback import serving
from tests.security.test_web_desk import Clock, client, log_in, web_env
from trust import chat_session
from web.accounts import AccountsError, load_accounts
from web.app import create_app
from web.config import Settings

CHAT_SECRET = "c" * 32
TAKEN = "H-00000000000000000001"  # a chat AGENT holds
WAITING = "H-00000000000000000002"  # a chat still waiting
UNSEEN = "H-00000000000000000003"  # a call that left the queue while the gateway could not see it
SESSION_OF = {TAKEN: "session-taken-0123456789", WAITING: "session-waiting-0123456789",
              UNSEEN: "call-unseen-0123456789"}
STATUS_OF = {TAKEN: "accepted", WAITING: "waiting", UNSEEN: "unknown"}
# What Rasa's relay reads of a conversation.
READ = [{"index": 1, "from": "customer", "text": "你好"},
        {"index": 2, "from": "agent", "state": "message", "name": "小测", "text": "您好", "at": 1.0}]


@dataclass
class Fake:
    url: str
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    customers: dict[str, str] = field(default_factory=dict)  # a chat session's own hand-over, by session id

    def posts(self, prefix: str) -> list[tuple[str, Any]]:
        return [(path, body) for method, path, body in self.requests if method == "POST" and path.startswith(prefix)]


def _handoff(handoff_id: str) -> dict[str, Any]:
    taken = handoff_id == TAKEN
    return {"handoff_id": handoff_id, "session_id": SESSION_OF[handoff_id],
            "channel": "voice" if handoff_id == UNSEEN else "chat",
            "flow": "transfer_to_agent", "priority": "normal", "status": STATUS_OF[handoff_id],
            "agent": AGENT if taken else None, "reason": "客户要求", "summary": "…", "customer_id": None,
            "verified_level": "none", "created_at": "2026-12-04T10:00:00+08:00", "accepted_at": None,
            "position": None if taken else 1, "estimated_wait_seconds": None if taken else 180,
            "agents_online": 1, "customer_note": None}


def _handler(fake: Fake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: Any, status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Total-Count", "2")
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length", 0))
            return json.loads(self.rfile.read(length) or b"null")

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            fake.requests.append(("GET", self.path, None))
            handoff_id = self.path.removeprefix("/handoffs/")
            if handoff_id in SESSION_OF:
                self._answer(_handoff(handoff_id))
            elif self.path.startswith("/handoffs"):
                self._answer([{key: value for key, value in _handoff(each).items() if key != "session_id"}
                              for each in (TAKEN, WAITING)])
            else:
                self._answer([])

        def do_PUT(self) -> None:  # noqa: N802
            fake.requests.append(("PUT", self.path, self._body()))
            self._answer({"state": "online"})

        def do_POST(self) -> None:  # noqa: N802
            body = self._body()
            fake.requests.append(("POST", self.path, body))
            if self.path == "/handoffs/of-session":
                owned = {**{session: each for each, session in SESSION_OF.items()}, **fake.customers}
                found = [owned[body["session_id"]]] if body["session_id"] in owned else []
                self._answer(_handoff(found[0]) if found else {"detail": {"code": "unknown", "message": "无"}},
                             200 if found else 404)
            elif self.path == "/webhooks/webchat/agent":
                self._answer({"ok": True, "messages": READ, "next": 3})
            elif self.path.endswith("/close"):
                self._answer({**_handoff(TAKEN), "status": "closed", "disposition": body["disposition"]})
            else:
                self._answer({"status": "ok"})

        def log_message(self, *_: Any) -> None:
            pass

    return Handler


@pytest.fixture
def fake() -> Iterator[Fake]:
    record = Fake("")
    with serving(_handler(record)) as url:
        record.url = url
        yield record


def app_for(fake: Fake, clock: Clock | None = None) -> Any:
    settings = Settings(host="127.0.0.1", port=0, rasa_url="http://127.0.0.1:5005", risk_api_url=fake.url,
                        risk_api_token="a-desk-role-token-for-tests", accounts_file=str(accounts_file()),
                        rasa_internal_url=fake.url, rasa_desk_token="a-rasa-desk-token-for-tests",
                        session_secret="s" * 32, chat_session_secret=CHAT_SECRET, chat_allowed_origins=frozenset(),
                        chat_wait_limit_seconds=120)
    return create_app(settings, clock or Clock())


async def test_each_role_reaches_only_its_own_work(fake: Fake) -> None:
    app = app_for(fake)
    async with client(app) as agent, client(app) as reviewer:
        await log_in(agent, AGENT, PASSWORD)
        await log_in(reviewer, REVIEWER, PASSWORD)
        assert (await agent.post("/desk/api/reviews/R-0123456789abcdef0123/decision",
                                 json={"approve": True})).status_code == 403
        for path in (f"/desk/api/handoffs/{WAITING}/accept", f"/desk/api/handoffs/{TAKEN}/messages"):
            assert (await reviewer.post(path, json={"text": "hi"})).status_code == 403, path
        assert (await reviewer.post(f"/desk/api/handoffs/{WAITING}/accept")).status_code == 403
        assert (await reviewer.get(f"/desk/api/handoffs/{WAITING}/conversation")).status_code == 403
        assert (await reviewer.post("/desk/api/presence", json={"state": "online"})).status_code == 403
        assert fake.posts("/agents/desk-agent/sessions") == [("/agents/desk-agent/sessions", {"event": "login"})]
        assert fake.posts("/h") == [] and fake.posts("/r") == [] and not [r for r in fake.requests if r[0] == "PUT"]
        queue = (await reviewer.get("/desk/api/queue")).json()
        assert queue["handoffs"] == [] and queue["total"] == 0
        page = (await reviewer.get("/desk")).text
        assert 'id="handoffs"' not in page and 'id="reviews"' in page
        agent_page = (await agent.get("/desk")).text
        assert 'id="handoffs"' in agent_page and 'id="reviews"' not in agent_page


async def test_only_the_agent_holding_a_chat_writes_to_its_customer(fake: Fake) -> None:
    app = app_for(fake)
    async with client(app) as holder, client(app) as other, client(app) as supervisor:
        await log_in(holder, AGENT, PASSWORD)
        await log_in(other, SECOND_AGENT, PASSWORD)
        await log_in(supervisor, SUPERVISOR, PASSWORD)
        refused = await other.post(f"/desk/api/handoffs/{TAKEN}/messages", json={"text": "我来回复"})
        assert refused.status_code == 409
        assert (await other.get(f"/desk/api/handoffs/{TAKEN}/conversation")).status_code == 403
        assert fake.posts("/webhooks") == []
        # A waiting case any agent may read before taking it; nobody may write into it. So is a
        # call whose queue outcome is unknown: the agent who answered it finds it and claims it.
        assert (await other.get(f"/desk/api/handoffs/{WAITING}/conversation")).status_code == 200
        assert (await other.get(f"/desk/api/handoffs/{UNSEEN}/conversation")).status_code == 200
        assert (await other.post(f"/desk/api/handoffs/{WAITING}/messages", json={"text": "x"})).status_code == 409

        sent = await holder.post(f"/desk/api/handoffs/{TAKEN}/messages", json={"text": "您好"})
        assert sent.status_code == 200
        read = await holder.get(f"/desk/api/handoffs/{TAKEN}/conversation", params={"after": 2})
        assert read.status_code == 200 and SESSION_OF[TAKEN] not in read.text and "session_id" not in read.text
        assert read.json()["messages"] == READ
        assert (await holder.post(f"/desk/api/handoffs/{TAKEN}/messages", json={"text": "x" * 1001})).status_code == 422
        assert (await holder.post(f"/desk/api/handoffs/{TAKEN}/messages",
                                  json={"text": "hi", "agent_name": "冒名"})).status_code == 422

        await holder.post(f"/desk/api/handoffs/{TAKEN}/close", json={"disposition": "resolved", "note": ""})
        await supervisor.post(f"/desk/api/handoffs/{TAKEN}/close", json={"disposition": "escalated", "note": ""})
    relayed = [body for path, body in fake.posts("/webhooks")]
    # Rasa gets the session the risk API holds and the agent's display name from the accounts file.
    assert {"sender": SESSION_OF[TAKEN], "do": "read", "after": 2} in relayed
    assert {"sender": SESSION_OF[TAKEN], "do": "say", "agent_name": "小测", "text": "您好"} in relayed
    closes = [body for path, body in fake.posts("/handoffs/") if path.endswith("/close")]
    assert [(body["agent"], body["override"]) for body in closes] == [(AGENT, False), (SUPERVISOR, True)]


async def test_a_chat_customer_reaches_only_their_own_handoff_with_their_session_token(fake: Fake) -> None:
    clock = Clock()
    app = app_for(fake, clock)
    mine = chat_session.issue(CHAT_SECRET, clock.now)
    async with client(app) as browser:
        for headers in ({}, {"Authorization": "Bearer forged.token"}, {"Authorization": f"Basic {mine.token}"}):
            assert (await browser.get("/chat/handoff", headers=headers)).status_code == 401
            assert (await browser.post("/chat/handoff/callback", headers=headers)).status_code == 401
        assert fake.requests == []
        bearer = {"Authorization": f"Bearer {mine.token}"}
        state = await browser.get("/chat/handoff", headers=bearer)
        assert state.json() == {"state": "none"}  # this session has no hand-over; another's is not shown
        sent = fake.posts("/handoffs/of-session")
        assert sent == [("/handoffs/of-session", {"session_id": chat_session.verify(CHAT_SECRET, mine.token,
                                                                                        clock.now), "seen": True})]
        assert (await browser.post("/chat/handoff/note", headers=bearer, json={"text": "留言"})).status_code == 409
        assert (await browser.post("/chat/handoff/note", headers=bearer,
                                   json={"text": "x", "session_id": SESSION_OF[WAITING]})).status_code == 422
        clock.now += 3 * 3600  # the token expired
        assert (await browser.get("/chat/handoff", headers=bearer)).status_code == 401
    assert not fake.posts("/handoffs/H-") and not fake.posts("/webhooks")


async def test_a_returning_widget_gets_the_agents_lines_it_missed_and_nothing_else(fake: Fake) -> None:
    clock = Clock()
    app = app_for(fake, clock)
    mine = chat_session.issue(CHAT_SECRET, clock.now)
    fake.customers[mine.session_id] = TAKEN  # this customer's chat, an agent holds it
    bearer = {"Authorization": f"Bearer {mine.token}"}
    async with client(app) as browser:
        state = (await browser.get("/chat/handoff", headers=bearer, params={"after": 2})).json()
        assert state["state"] == "accepted"
        assert state["agent_lines"] == [{"seq": 2, "state": "message", "name": "小测", "text": "您好"}], \
            "the agent's lines only: never the customer's or the bot's, nor times or other fields"
        assert (await browser.get("/chat/handoff", headers=bearer)).json()["agent_lines"] == [], "not asked"
        for crafted in ("-1", "x", "1e9", "2000000"):
            assert (await browser.get("/chat/handoff", headers=bearer, params={"after": crafted})).status_code == 422
    reads = [body for path, body in fake.posts("/webhooks")]
    assert reads == [{"sender": mine.session_id, "do": "read", "after": 2}], "its own conversation, once"


def test_the_repository_accounts_are_refused_outside_development() -> None:
    done = subprocess.run([str(SERVICES_VENV / "bin" / "python"), "-m", "web"], cwd=ROOT,
                          env=web_env(AGENT_ACCOUNTS_FILE=str(ROOT / "ivr_config" / "agents.dev.yaml")),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "agents.dev.yaml: development accounts" in done.stderr and "IVR_ENV=development" in done.stderr


@pytest.mark.parametrize(("content", "problem"), [
    ("agents: [", "line 1, column 10: invalid YAML"),
    ("agents:\n  - {login: a1, display_name: 甲, roles: [boss],\n     password_hash: 'scrypt$16384$8$1$AAAA$AAAA'}\n",
     "agents[0].roles[0]"),
    ("agents:\n  - {login: a1, display_name: 甲, roles: [agent], password: hunter2hunter2}\n", "agents[0]"),
    ("agents: []\n", "agents"),
])
def test_a_broken_accounts_file_names_the_file_and_the_field(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "agents.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AccountsError, match="^" + re.escape(f"{path}: {problem}")):
        load_accounts(path, {})


def test_a_wrong_password_or_an_unknown_login_gets_nobody() -> None:
    accounts = load_accounts(accounts_file(), {})
    assert accounts.authenticate(AGENT, PASSWORD) is not None
    assert accounts.authenticate(AGENT, PASSWORD + "x") is None
    assert accounts.authenticate("nobody", PASSWORD) is None
    assert accounts.authenticate(AGENT.upper(), PASSWORD) is None


async def test_do_not_call_goes_out_as_the_agent_logged_in_with_override_for_supervisors_only(fake: Fake) -> None:
    app = app_for(fake)
    async with client(app) as agent, client(app) as supervisor, client(app) as reviewer:
        await log_in(agent, AGENT, PASSWORD)
        await log_in(supervisor, SUPERVISOR, PASSWORD)
        await log_in(reviewer, REVIEWER, PASSWORD)
        assert (await agent.post(f"/desk/api/handoffs/{TAKEN}/do-not-call", json={"agent": "冒名"})).status_code == 200
        assert (await supervisor.post(f"/desk/api/handoffs/{TAKEN}/do-not-call")).status_code == 200
        assert (await reviewer.post(f"/desk/api/handoffs/{TAKEN}/do-not-call")).status_code == 403
        assert (await agent.post("/desk/api/handoffs/H-x/do-not-call")).status_code == 422
    sent = [body for path, body in fake.posts(f"/handoffs/{TAKEN}/do-not-call")]
    assert sent == [{"agent": AGENT, "override": False}, {"agent": SUPERVISOR, "override": True}]
