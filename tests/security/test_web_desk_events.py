"""Desk updates pushed to the page (Server-Sent Events): a change in the risk API reaches every
open desk, the risk API is asked once however many desks listen, an open conversation's new lines
are announced, and the stream ends with the desk session. Against the real web app served by
uvicorn on loopback and a fake risk API and Rasa relay that record what reaches them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.accounts import AGENT, PASSWORD, REVIEWER, accounts_file
from tests.loopback import JsonPeer, serving, serving_asgi
from web.app import create_app
from web.config import Settings
from web.push import StampWatcher

HANDOFF_ID = "H-0123456789abcdef0123"
OTHERS_HANDOFF = "H-0123456789abcdef9999"
READ_TIMEOUT_S = 30  # a bound on each wait for an event, never a measurement


@dataclass
class Fake:
    """The risk API's stamp and hand-overs, and Rasa's relay, as the web server sees them."""

    url: str = ""
    stamp: str = "stamp-1"
    length: int = 3  # events in the open conversation


def _handler(fake: Fake) -> type[JsonPeer]:
    class Handler(JsonPeer):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/handoffs/stamp":
                self.answer({"stamp": fake.stamp})
            elif self.path.startswith("/handoffs/H-"):
                handoff_id = self.path.rsplit("/", 1)[1]
                self.answer({"handoff_id": handoff_id, "session_id": f"session-of-{handoff_id}", "status": "accepted",
                             "channel": "chat", "agent": AGENT if handoff_id == HANDOFF_ID else "someone-else"})
            else:
                self.answer([])

        def do_POST(self) -> None:  # noqa: N802
            body = self.body()
            if self.path == "/webhooks/webchat/agent":
                assert body["sender"] == f"session-of-{HANDOFF_ID}", "only the agent's own conversation is read"
                self.answer({"messages": [], "next": fake.length})
            else:
                self.answer({"ok": True})

    return Handler


@pytest.fixture
def fake() -> Iterator[Fake]:
    record = Fake()
    with serving(_handler(record)) as url:
        record.url = url
        yield record


def web_settings(peer_url: str, **more: Any) -> Settings:
    """The web server's settings with the risk API and Rasa's relay (and what `more` names) at `peer_url`."""
    return Settings(host="127.0.0.1", port=0, rasa_url="http://127.0.0.1:5005", risk_api_url=peer_url,
                    risk_api_token="a-desk-role-token-for-tests", accounts_file=str(accounts_file()),
                    rasa_internal_url=peer_url, rasa_desk_token="a-rasa-desk-token-for-tests",
                    session_secret="s" * 32, chat_session_secret="c" * 32, chat_allowed_origins=frozenset(), **more)


@pytest.fixture
def web(fake: Fake) -> Iterator[str]:
    with serving_asgi(create_app(web_settings(fake.url))) as url:
        yield url


@contextmanager
def logged_in(web: str, user: str = AGENT) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web, timeout=READ_TIMEOUT_S) as desk:
        assert desk.post("/desk/login", data={"user": user, "password": PASSWORD}).status_code == 303
        yield desk


class Events:
    """The events of one stream, read as they come."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.iter_lines()

    def next(self) -> tuple[str, dict[str, Any]]:
        name, data = "message", ""
        for line in self._lines:
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data = line[len("data: "):]
            elif line == "" and data:
                return name, json.loads(data)
        raise AssertionError("the stream ended")


def test_a_change_in_the_risk_api_is_pushed_to_every_open_desk(fake: Fake, web: str) -> None:
    with logged_in(web) as first, logged_in(web, REVIEWER) as second, \
            first.stream("GET", "/desk/api/events") as one, second.stream("GET", "/desk/api/events") as two:
        assert one.headers["content-type"].startswith("text/event-stream")
        streams = [Events(one), Events(two)]
        assert [each.next() for each in streams] == [("queue", {"stamp": "stamp-1"})] * 2, "the state at once"
        fake.stamp = "stamp-2"  # an agent took a case, a hand-over came in…
        assert [each.next() for each in streams] == [("queue", {"stamp": "stamp-2"})] * 2


def test_the_risk_api_is_asked_once_however_many_desks_listen() -> None:
    async def scenario() -> tuple[int, list[str | None]]:
        asked = 0

        async def fetch() -> str:
            nonlocal asked
            asked += 1
            return f"stamp-{asked // 3}"  # changes every third look

        watcher = StampWatcher(fetch, interval=0)
        seen: list[str | None] = []

        async def desk() -> None:
            async with watcher.listening():
                stamp = None
                for _ in range(3):
                    stamp = await watcher.next_change(stamp, READ_TIMEOUT_S)
                    seen.append(stamp)

        await asyncio.gather(*(desk() for _ in range(20)))
        return asked, seen

    asked, seen = asyncio.run(scenario())
    assert len(seen) == 60 and None not in seen
    assert asked < 20, f"{asked} looks for 20 desks: the watcher is shared"


def test_the_watch_stops_when_no_desk_listens_and_starts_again_for_the_next() -> None:
    async def scenario() -> list[int]:
        asked = 0

        async def fetch() -> str:
            nonlocal asked
            asked += 1
            return f"stamp-{asked}"

        watcher = StampWatcher(fetch, interval=0)
        counts = []
        async with watcher.listening():
            await watcher.next_change(None, READ_TIMEOUT_S)
        for _ in range(5):
            await asyncio.sleep(0)  # the watch sees nobody listening and ends
        counts.append(asked)
        for _ in range(5):
            await asyncio.sleep(0)
        counts.append(asked)
        async with watcher.listening():
            assert await watcher.next_change("stamp-1", READ_TIMEOUT_S) is not None
        return counts

    before, after = asyncio.run(scenario())
    assert before == after, "no look at the risk API while no desk listens"


def test_an_open_conversations_new_lines_are_announced_only_for_one_the_agent_may_see(fake: Fake, web: str) -> None:
    with logged_in(web) as desk:
        with desk.stream("GET", "/desk/api/events", params={"conversation": HANDOFF_ID}) as response:
            events = Events(response)
            got = sorted([events.next(), events.next()], key=str)
            assert got == [("conversation", {"next": 3}), ("queue", {"stamp": "stamp-1"})]
            fake.length = 5  # the customer wrote twice
            assert events.next() == ("conversation", {"next": 5})
        # Another agent's case is not watched (the relay would refuse the read: see the fake).
        with desk.stream("GET", "/desk/api/events", params={"conversation": OTHERS_HANDOFF}) as response:
            events = Events(response)
            assert events.next() == ("queue", {"stamp": "stamp-1"})
            fake.stamp = "stamp-2"
            assert events.next() == ("queue", {"stamp": "stamp-2"})
        assert desk.get("/desk/api/events", params={"conversation": "H-../../reviews"}).status_code == 422


def test_the_stream_needs_a_desk_session_and_ends_with_it(fake: Fake, web: str) -> None:
    assert httpx.get(f"{web}/desk/api/events", timeout=READ_TIMEOUT_S).status_code == 401
    with logged_in(web) as desk, desk.stream("GET", "/desk/api/events") as response:
        events = Events(response)
        assert events.next() == ("queue", {"stamp": "stamp-1"})
        assert desk.post("/desk/logout").status_code == 303
        fake.stamp = "stamp-2"  # the next look finds the session gone
        assert events.next() == ("ended", {})


def test_a_failed_look_at_the_risk_api_does_not_end_the_watch() -> None:
    async def scenario() -> str | None:
        looks = 0

        async def fetch() -> str:
            nonlocal looks
            looks += 1
            if looks == 1:
                raise RuntimeError("the risk API answered nonsense")
            return "stamp-after-the-failure"

        watcher = StampWatcher(fetch, interval=0)
        async with watcher.listening():
            return await watcher.next_change(None, READ_TIMEOUT_S)

    assert asyncio.run(scenario()) == "stamp-after-the-failure"
