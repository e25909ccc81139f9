"""deploy/haproxy.cfg run by the real HAProxy on loopback, in front of fake Rasa and action servers:
only the public Rasa paths and the action call get through, spread over every backend (no
stickiness), oversized bodies are refused, and the log has paths without their query strings."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from stack.services import free_port
from tests.deploy.topology import DEPLOY, TOPOLOGY, tool
from tests.loopback import JsonPeer, serving
from tests.waiting import BOUND_SECONDS


class Backend(JsonPeer):
    """Answers 200 to anything and notes which backend saw which path (query string included)."""

    seen: list[tuple[str, str]]
    lock = threading.Lock()
    name = ""

    def _note(self) -> None:
        with self.lock:
            self.seen.append((self.name, self.path))
        self.answer({"ok": True})

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._note()

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._note()


@pytest.fixture(scope="module")
def balancer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], list[tuple[str, str]], Path]]:
    """HAProxy with deploy/haproxy.cfg, its binds and servers moved to loopback ports:
    ({'rasa': url, 'actions': url, 'health': url}, what the backends saw, the log file)."""
    seen: list[tuple[str, str]] = []
    config = (DEPLOY / "haproxy.cfg").read_text()
    with ExitStack() as stack:
        for name in [name for component in ("rasa", "actions") for name in TOPOLOGY[component][0]]:
            handler = type(f"Backend_{name}", (Backend,), {"seen": seen, "name": name})
            address = stack.enter_context(serving(handler)).removeprefix("http://")
            config, replaced = re.subn(rf"^(\s*server {name}) \S+$", rf"\1 {address}", config, flags=re.MULTILINE)
            assert replaced == 1, name
        urls = {}
        for frontend, port in (("rasa", 5005), ("actions", 5055), ("health", 8405)):
            loopback_port = free_port()
            config, replaced = re.subn(rf"^(\s*)bind :{port}$", rf"\1bind 127.0.0.1:{loopback_port}", config,
                                       flags=re.MULTILINE)
            assert replaced == 1, frontend
            urls[frontend] = f"http://127.0.0.1:{loopback_port}"
        directory = tmp_path_factory.mktemp("haproxy")
        (directory / "haproxy.cfg").write_text(config)
        log = directory / "haproxy.log"
        with log.open("wb") as output:
            process = subprocess.Popen([tool("haproxy"), "-db", "-f", str(directory / "haproxy.cfg")],
                                       stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + BOUND_SECONDS
            while True:
                assert process.poll() is None, log.read_text()
                try:
                    if httpx.get(f"{urls['health']}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "HAProxy did not answer its health URI"
                time.sleep(0.05)
            yield urls, seen, log
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_public_rasa_paths_pass_and_spread_over_every_rasa(balancer) -> None:
    urls, seen, _ = balancer
    paths = ["/webhooks/chat/webhook", "/webhooks/trusted/webhook", "/webhooks/webchat/agent"]
    for path in paths * 2:
        answer = httpx.post(f"{urls['rasa']}{path}", json={"sender": "s", "message": "你好"}, timeout=10)
        assert answer.status_code == 200
    assert httpx.get(f"{urls['rasa']}/socket.io/?EIO=4&transport=polling", timeout=10).status_code == 200
    through = {(name, path) for name, path in seen if name.startswith("rasa-")}
    assert {path for _, path in through} >= set(paths)
    assert {name for name, _ in through} == set(TOPOLOGY["rasa"][0])


@pytest.mark.parametrize("method, path", [("GET", "/conversations/someone/tracker"), ("PUT", "/model"),
                                          ("POST", "/conversations/someone/tracker/events"), ("GET", "/status"),
                                          ("GET", "/webhooks/rest/webhook")])
def test_rasa_operator_api_and_other_paths_are_refused(balancer, method: str, path: str) -> None:
    urls, seen, _ = balancer
    assert httpx.request(method, f"{urls['rasa']}{path}", timeout=10).status_code == 404
    assert not [hit for hit in seen if hit[1].startswith(path)]


def test_only_the_action_call_reaches_the_action_servers(balancer) -> None:
    urls, seen, _ = balancer
    for _ in range(4):
        assert httpx.post(f"{urls['actions']}/webhook", json={"next_action": "x"}, timeout=10).status_code == 200
    assert httpx.get(f"{urls['actions']}/actions", timeout=10).status_code == 404
    assert httpx.get(f"{urls['actions']}/webhook", timeout=10).status_code == 404
    served = {name for name, path in seen if path == "/webhook"}
    assert served == set(TOPOLOGY["actions"][0])
    assert not [hit for hit in seen if hit[1] == "/actions"]


def test_an_oversized_body_is_refused_before_rasa(balancer) -> None:
    urls, _, _ = balancer
    host, port = urls["rasa"].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(b"POST /webhooks/chat/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 2000000\r\n\r\n{")
        assert connection.recv(64).startswith(b"HTTP/1.1 413")


def test_a_chunked_body_that_could_not_be_weighed_is_refused_before_rasa_and_the_actions(balancer) -> None:
    urls, seen, _ = balancer
    reached_before = len(seen)
    for url, path in ((urls["rasa"], b"/webhooks/chat/webhook"), (urls["actions"], b"/webhook")):
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n100000\r\n{")
            assert connection.recv(64).startswith(b"HTTP/1.1 411")
    assert len(seen) == reached_before, "no backend saw them"


def test_the_log_has_paths_without_query_strings(balancer) -> None:
    urls, _, log = balancer
    logged_before = len(log.read_text().splitlines())
    assert httpx.get(f"{urls['rasa']}/webhooks/chat/webhook?token=query-secret-7f3a", timeout=10).status_code == 200

    def logged() -> bool:
        new_lines = log.read_text().splitlines()[logged_before:]
        return any(line.endswith(" GET /webhooks/chat/webhook") for line in new_lines)

    deadline = time.monotonic() + BOUND_SECONDS
    while not logged():
        assert time.monotonic() < deadline, "HAProxy logged no line for the request"
        time.sleep(0.05)
    assert "query-secret-7f3a" not in log.read_text() and "EIO=4" not in log.read_text()


def test_a_refused_path_is_not_logged(balancer) -> None:
    urls, _, log = balancer
    logged_before = len(log.read_text().splitlines())
    assert httpx.get(f"{urls['rasa']}/conversations/conversation-7f3a/tracker", timeout=10).status_code == 404
    deadline = time.monotonic() + BOUND_SECONDS
    while not any(" 404 " in line for line in log.read_text().splitlines()[logged_before:]):
        assert time.monotonic() < deadline, "HAProxy logged no line for the refused request"
        time.sleep(0.05)
    assert "conversation-7f3a" not in log.read_text()
