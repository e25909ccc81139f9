"""The one client of the risk API (risk_api_client): what each kind of answer becomes for its
callers (the flow engine, the gateway, the dialler, the desk), against a real HTTP server on
loopback. A refusal carries the API's code and Chinese message; anything the API cannot be
trusted to have done is `RiskApiUnavailable`; a client serves whichever event loop runs it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator

import pytest

from risk_api_client import RiskApiHttp, RiskApiRefused, RiskApiUnavailable
from tests.loopback import JsonPeer, serving

TOKEN = "a-desk-role-token-for-tests"
seen_tokens: set[str] = set()


class RiskApi(JsonPeer):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        seen_tokens.add(self.headers.get("Authorization", ""))
        if self.path == "/handoffs/H-1":
            self.answer({"handoff_id": "H-1", "status": "waiting"})
        elif self.path.startswith("/handoffs?"):
            self.answer([{"handoff_id": "H-1"}], headers={"X-Total-Count": "41"})
        elif self.path.startswith("/reviews?"):  # a list route without its total
            self.answer([])
        elif self.path == "/handoffs/H-404":
            self.answer({"detail": {"code": "unknown_handoff", "message": "没有找到这条转人工记录。"}}, 404)
        elif self.path == "/broken-refusal":
            self.send_response(409)
            self.end_headers()
            self.wfile.write(b"<html>conflict</html>")
        elif self.path == "/not-json":
            self.send_response(200)
            self.send_header("Content-Length", "9")
            self.end_headers()
            self.wfile.write(b"<html>ok!")
        else:
            self.answer({"detail": "database unavailable"}, 503)


@pytest.fixture
def url() -> Iterator[str]:
    with serving(RiskApi) as served:
        yield served


async def test_an_answer_is_its_json_sent_with_the_roles_token(url: str) -> None:
    risk = RiskApiHttp(url, TOKEN)
    try:
        assert await risk.call("GET", "/handoffs/H-1") == {"handoff_id": "H-1", "status": "waiting"}
        assert await risk.listed("/handoffs", {"status": "waiting"}) == ([{"handoff_id": "H-1"}], 41)
    finally:
        await risk.close()
    assert seen_tokens == {f"Bearer {TOKEN}"}


async def test_a_refusal_carries_the_apis_code_and_message(url: str) -> None:
    risk = RiskApiHttp(url, TOKEN)
    try:
        with pytest.raises(RiskApiRefused) as refused:
            await risk.call("GET", "/handoffs/H-404")
        assert (refused.value.status, refused.value.code, refused.value.message) == (
            404, "unknown_handoff", "没有找到这条转人工记录。")
        with pytest.raises(RiskApiRefused) as unreadable:
            await risk.call("GET", "/broken-refusal")
        assert (unreadable.value.status, unreadable.value.code, unreadable.value.message) == (409, "error", "")
    finally:
        await risk.close()


@pytest.mark.parametrize("path", ["/down", "/not-json"])
async def test_a_failure_or_an_answer_that_is_not_json_is_unavailable(url: str, path: str) -> None:
    risk = RiskApiHttp(url, TOKEN)
    try:
        with pytest.raises(RiskApiUnavailable, match=path):
            await risk.call("GET", path)
    finally:
        await risk.close()


async def test_a_list_without_its_total_and_an_api_not_listening_are_unavailable(url: str) -> None:
    risk, nowhere = RiskApiHttp(url, TOKEN), RiskApiHttp("http://127.0.0.1:9", TOKEN, timeout_seconds=2)
    try:
        with pytest.raises(RiskApiUnavailable, match="no list with its total"):
            await risk.listed("/reviews", {"status": "pending"})
        with pytest.raises(RiskApiUnavailable, match="ConnectError"):
            await nowhere.call("GET", "/handoffs/H-1")
    finally:
        await risk.close()
        await nowhere.close()


def test_one_client_serves_each_event_loop_that_runs_it(url: str) -> None:
    """The web server's app may be served by one loop and tested from another: a pooled
    connection belongs to the loop that opened it, so each loop gets its own."""
    risk = RiskApiHttp(url, TOKEN)
    for _ in range(2):
        assert asyncio.run(risk.call("GET", "/handoffs/H-1"))["handoff_id"] == "H-1"


class ImportsSeen:
    """A finder first on sys.meta_path that only writes down what is looked for."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, name: str, *_: object) -> None:
        self.names.append(name)


async def test_a_warm_client_looks_for_no_module_on_a_request(url: str) -> None:
    # httpcore imports sniffio on every request: absent, each request searched sys.path for it.
    risk = RiskApiHttp(url, TOKEN)
    seen = ImportsSeen()
    await risk.call("GET", "/handoffs/H-1")
    sys.meta_path.insert(0, seen)
    try:
        for _ in range(3):
            await risk.call("GET", "/handoffs/H-1")
    finally:
        sys.meta_path.remove(seen)
        await risk.close()
    assert seen.names == []
