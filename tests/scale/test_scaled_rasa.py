"""The scaled topology (`make run SCALE=n`, stack/scaled.py) with n=2, started once for the
module: two Rasa processes and two action servers behind HAProxy, conversations in PostgreSQL (a
scratch database on RISK_API_TEST_PG_URL's server, reached through a relay the tests can cut),
locks in Redis. Chats get their session from the web server, as the widget does, and speak the
public chat channel (REST, or the widget's socket.io websocket through the balancer).

Shown: a conversation whose turns alternate between the processes runs its flow to the end; the
balancer forwards only the channels and logs no query string nor conversation id; an agent's
line written on one process reaches the customer's websocket on the other (socket.io rooms shared
over Redis, JSON only: a pickle published there is refused, never run); a Rasa process
killed mid-turn (SIGKILL, holding the conversation's lock) leaves the turn sent again to the
other once the lock's lifetime is over, the conversation intact;
with Redis stopped, or PostgreSQL unreachable, a turn is refused at once with a 503 saying which
store is down (the widget gets a refusal in words), nothing of it is kept, and once the store is
back the same turn goes through on either process and the flow carries on; PostgreSQL
unreachable at start stops a Rasa process with a clear error instead of a wait.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from bench.scratch_db import create_scratch_database, drop_scratch_database
from flowspec.model import load_flowset
from stack.scaled import (
    LOCK_LIFETIME_SECONDS,
    SCALED_ENDPOINTS,
    ScaledPorts,
    SharedStores,
    redis_replies,
    scaled_stack,
)
from stack.services import Ports, Running, Service, free_port, rasa_server, started
from tests.conftest import SECRETS, Stack
from tests.dialogue.conftest import CUSTOMERS
from tests.dialogue.driver import FlowRun, run_flow
from tests.dialogue.test_flows import expected_outcome
from tests.risk_api.helpers import PG_URL_ENV
from tests.scale.relay import TcpRelay, relaying
from tests.scale.widget_socket import WidgetSocket
from trust import chat_session

pytestmark = [pytest.mark.postgres, pytest.mark.stack]

FLOW = load_flowset().flows["check_credit_limit"]  # identity first, then the risk API: state across turns
PROCESSES = 2
TURN_TIMEOUT_SECONDS = 30.0
ROOMS_CHANNEL = "xiaoan-webchat"  # bot/socket_rooms.py's CHANNEL (that module needs Rasa's venv)


@dataclass
class ScaledStack:
    balancer_url: str
    process_urls: list[str]
    web_url: str
    stack: Stack  # what the flow driver reads (the SMS outbox)
    running: Running
    services: dict[str, Service]
    relay: TcpRelay
    redis_port: int
    redis_password: str

    def holds_lock(self, sender: str | None) -> bool:
        """A Rasa process holds the conversation's lock (Rasa's key in Redis database 1)."""
        replies = redis_replies(self.redis_port, self.redis_password, ("SELECT", "1"), ("EXISTS", f"lock:{sender}"))
        return replies[-1] == b":1"

    def stop(self, name: str, how: signal.Signals = signal.SIGTERM) -> None:
        process = self.running.processes[name]
        process.send_signal(how)
        process.wait(timeout=20)

    def start_again(self, name: str) -> None:
        """The service started anew; `started` stops it at the end like the others."""
        service = self.services[name]
        process = service.start(self.stack.log_dir)
        self.running.processes[name] = process
        service.wait_healthy(process)


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaledStack]:
    workdir = tmp_path_factory.mktemp("scaled")
    admin_url = os.environ[PG_URL_ENV]
    database_url, database = create_scratch_database(admin_url, "rasa_scaled")
    server = make_url(database_url)
    ports, scaled_ports = Ports.free(), ScaledPorts.free(PROCESSES)
    outbox = workdir / "sms_outbox.jsonl"
    risk_env = {"RISK_API_DATABASE_URL": f"sqlite:///{workdir / 'risk_api.sqlite3'}",
                "RISK_API_SMS_OUTBOX": str(outbox)}
    try:
        with relaying(server.host or "127.0.0.1", server.port or 5432) as relay:
            relayed = server.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
            stores = SharedStores(relayed, secrets.token_hex(16))
            stages = scaled_stack(ports, scaled_ports, SECRETS, stores, workdir, risk_env)
            services = {s.name: s for stage in stages for s in (stage if isinstance(stage, tuple) else (stage,))}
            balancer_url = f"http://127.0.0.1:{ports.rasa}"
            stack = Stack(balancer_url, f"http://127.0.0.1:{ports.risk_api}", f"http://127.0.0.1:{ports.web}",
                          f"http://127.0.0.1:{ports.actions}", outbox, workdir,
                          tracker_db=workdir / "none.sqlite3")  # conversations are in PostgreSQL here
            with started(stages, workdir) as running:
                yield ScaledStack(balancer_url, [f"http://127.0.0.1:{port}" for port in scaled_ports.rasa_processes],
                                  stack.web_url, stack, running, services, relay, scaled_ports.redis,
                                  stores.redis_password)
    except RuntimeError as error:
        pytest.fail(str(error))
    finally:
        drop_scratch_database(admin_url, database)


def web_chat_session(scaled: ScaledStack) -> tuple[str, str | None]:
    """A chat session token from the web server, as the widget gets one, and its conversation id."""
    issued = httpx.post(f"{scaled.web_url}/chat/session", headers={"Origin": scaled.web_url}, timeout=10)
    assert issued.status_code == 200, issued.text
    token = str(issued.json()["token"])
    return token, chat_session.verify(SECRETS.chat_session, token, time.time())


class RoutedChat:
    """A chat with a session the web server issued, each turn sent where `route(turn)` says
    (the balancer, or one Rasa process's own port); `before_turn(turn, text)` runs first."""

    def __init__(self, scaled: ScaledStack, route: Callable[[int], str],
                 before_turn: Callable[[int, str], None] = lambda turn, text: None,
                 timeout_seconds: float = TURN_TIMEOUT_SECONDS) -> None:
        self.token, self.sender = web_chat_session(scaled)
        self.stack = scaled.stack
        self.metadata = {"channel": "chat"}
        self.route, self.before_turn, self.timeout_seconds = route, before_turn, timeout_seconds
        self.turns = 0
        self.transcript: list[tuple[str, list[dict[str, Any]]]] = []

    def post(self, text: str, url: str) -> httpx.Response:
        return httpx.post(f"{url}/webhooks/chat/webhook", json={"sender": self.token, "message": text},
                          timeout=self.timeout_seconds)

    def send(self, text: str) -> list[dict[str, Any]]:
        self.before_turn(self.turns, text)
        response = self.post(text, self.route(self.turns))
        self.turns += 1
        assert response.status_code == 200, f"{response.status_code} {response.text}\n{self.dump()}"
        messages: list[dict[str, Any]] = response.json()
        self.transcript.append((text, messages))
        return messages

    def dump(self) -> str:
        return "\n".join(f"  客户: {said}\n  机器人: {replies}" for said, replies in self.transcript)


def finished(run: FlowRun, chat: RoutedChat) -> None:
    assert run.outcome == expected_outcome(FLOW), chat.dump()
    assert run.asked, f"the flow asked nothing: no state carried between turns\n{chat.dump()}"


def customer_turns(sender: str | None, process_url: str) -> int:
    """The customer's messages the conversation holds, read from a Rasa process's operator API."""
    tracker = httpx.get(f"{process_url}/conversations/{sender}/tracker",
                        params={"token": SECRETS.rasa_api}, timeout=10)
    assert tracker.status_code == 200, tracker.text
    return sum(1 for event in tracker.json()["events"] if event["event"] == "user")


def test_turns_alternate_between_processes(scaled: ScaledStack) -> None:
    chat = RoutedChat(scaled, route=lambda turn: scaled.process_urls[turn % PROCESSES])
    finished(run_flow(chat, FLOW, CUSTOMERS.for_flow(FLOW)), chat)
    assert chat.turns >= 2, chat.dump()  # both processes served a turn
    assert [customer_turns(chat.sender, url) for url in scaled.process_urls] == [chat.turns] * PROCESSES


def test_the_balancer_serves_only_the_channels(scaled: ScaledStack) -> None:
    chat = RoutedChat(scaled, route=lambda turn: scaled.balancer_url)
    chat.send(FLOW.examples[0])
    operator_api = httpx.get(f"{scaled.balancer_url}/conversations/{chat.sender}/tracker",
                             params={"token": SECRETS.rasa_api}, timeout=10)
    assert operator_api.status_code == 403
    assert operator_api.json()["error"] == "forbidden"
    assert customer_turns(chat.sender, scaled.process_urls[0]) == 1  # on a process's own port it answers
    balancer_log = balancer_log_once(scaled, "<refused>")
    assert chat.sender not in balancer_log and SECRETS.rasa_api not in balancer_log
    assert "POST /webhooks/chat/webhook 200" in balancer_log


def relay_to(process_url: str, body: dict[str, Any]) -> dict[str, Any]:
    """What the web server sends for the agent desk, to this Rasa process (`LiveAgentRelay`)."""
    answer = httpx.post(f"{process_url}/webhooks/webchat/agent", json=body,
                        headers={"Authorization": f"Bearer {SECRETS.rasa_desk}"}, timeout=TURN_TIMEOUT_SECONDS)
    assert answer.status_code == 200, answer.text
    answered: dict[str, Any] = answer.json()
    return answered


def test_an_agents_line_reaches_the_widget_connected_to_another_process(scaled: ScaledStack) -> None:
    """The customer's websocket is open on the first process; the desk's relay lands on the
    second: the join and the agent's words reach the widget (the rooms shared over Redis)."""
    token, sender = web_chat_session(scaled)
    widget = WidgetSocket(scaled.process_urls[0], scaled.web_url, token)
    try:
        widget.say(FLOW.examples[0])
        assert widget.asked() == "phone_number"
        relay_to(scaled.process_urls[1], {"sender": sender, "do": "join", "agent_name": "王"})
        assert widget.bot_message()["custom"]["live_agent"]["state"] == "joined"
        line = "请稍等，我来查一下"
        relay_to(scaled.process_urls[1], {"sender": sender, "do": "say", "agent_name": "王", "text": line})
        said = widget.bot_message()["custom"]["live_agent"]
        assert (said["state"], said["text"]) == ("message", line)
    finally:
        widget.close()


class WritesAFile:
    """Unpickled, it creates `path`: what an attacker with access to Redis would send."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return open, (str(self.path), "w")


def publish_to_rooms(scaled: ScaledStack, payload: str) -> int:
    """PUBLISH on the rooms' Redis channel; how many Rasa processes are subscribed."""
    reply = redis_replies(scaled.redis_port, scaled.redis_password, ("PUBLISH", ROOMS_CHANNEL, payload))[-1]
    assert reply.startswith(b":"), reply
    return int(reply[1:])


def test_a_pickle_published_to_the_rooms_is_refused_not_run(scaled: ScaledStack, tmp_path: Path) -> None:
    """A pickle whose unpickling writes a file, published where the processes share their rooms:
    refused and logged; the JSON emit published after it reaches the widget, and no file appears."""
    unpickled_here, sent = tmp_path / "unpickled-here", tmp_path / "written-by-rasa"
    pickle.loads(pickle.dumps(WritesAFile(unpickled_here), protocol=0)).close()
    assert unpickled_here.exists()  # the payload is live: an unpickler runs it
    token, sender = web_chat_session(scaled)
    widget = WidgetSocket(scaled.process_urls[0], scaled.web_url, token)
    try:
        widget.say(FLOW.examples[0])  # a turn: the process subscribed to the rooms as the socket opened
        assert widget.asked() == "phone_number"
        assert publish_to_rooms(scaled, pickle.dumps(WritesAFile(sent), protocol=0).decode()) >= 1
        publish_to_rooms(scaled, json.dumps({"method": "emit", "event": "bot_uttered", "data": {"text": "探针"},
                                             "namespace": "/", "room": sender, "host_id": "test"}))
        assert widget.bot_message() == {"text": "探针"}  # read after the pickle: the listener lives on
    finally:
        widget.close()
    assert not sent.exists()
    logs = "".join((scaled.stack.log_dir / f"{name}.log").read_text(encoding="utf-8", errors="replace")
                   for name in ("rasa1", "rasa2"))
    assert "refused a message that is not one of ours" in logs


def balancer_log_once(scaled: ScaledStack, line_part: str) -> str:
    """The balancer's log once it has a line with `line_part` (it logs as a request ends)."""
    path = scaled.stack.log_dir / "balancer.log"
    wait_for(lambda: line_part in path.read_text(encoding="utf-8"), f"{line_part!r} in the balancer's log")
    return path.read_text(encoding="utf-8")


def outage(scaled: ScaledStack, chat_route: Callable[[int], str], cut: Callable[[], None],
           restore: Callable[[], None]) -> tuple[RoutedChat, list[httpx.Response]]:
    """A flow whose second turn first meets the store down (through the balancer), then the
    store back; the turns after it alternate between the processes."""
    refused: list[httpx.Response] = []

    def store_down_once(turn: int, text: str) -> None:
        if turn == 1:
            cut()
            try:
                refused.append(chat.post(text, scaled.balancer_url))
            finally:
                restore()

    chat = RoutedChat(scaled, chat_route, before_turn=store_down_once)
    finished(run_flow(chat, FLOW, CUSTOMERS.for_flow(FLOW)), chat)
    return chat, refused


def assert_refused_clearly(refused: list[httpx.Response], store: str) -> None:
    assert len(refused) == 1
    assert refused[0].status_code == 503, refused[0].text
    assert refused[0].json()["error"] == "store_unavailable"
    assert store in refused[0].json()["message"]
    assert refused[0].headers["Retry-After"].isdigit()


def test_redis_stopped_refuses_the_turn_then_recovers(scaled: ScaledStack) -> None:
    chat, refused = outage(scaled, lambda turn: scaled.process_urls[turn % PROCESSES],
                           cut=lambda: scaled.stop("redis"), restore=lambda: scaled.start_again("redis"))
    assert_refused_clearly(refused, "Redis")
    assert customer_turns(chat.sender, scaled.process_urls[0]) == chat.turns  # the refused turn left nothing


def test_postgresql_unreachable_refuses_the_turn_then_recovers(scaled: ScaledStack) -> None:
    chat, refused = outage(scaled, lambda turn: scaled.process_urls[turn % PROCESSES],
                           cut=scaled.relay.cut, restore=scaled.relay.restore)
    assert_refused_clearly(refused, "tracker store")
    assert customer_turns(chat.sender, scaled.process_urls[0]) == chat.turns


def test_the_widget_is_told_when_redis_is_down(scaled: ScaledStack) -> None:
    """The widget's socket through the balancer: a message that meets Redis stopped gets the
    customer a refusal in words (a socket has no status code); sent again once Redis is back,
    it carries the flow on. Meanwhile an agent's desk still reads the conversation."""
    token, sender = web_chat_session(scaled)
    widget = WidgetSocket(scaled.balancer_url, scaled.web_url, token)
    try:
        widget.say(FLOW.examples[0])
        assert widget.asked() == "phone_number"
        phone = CUSTOMERS.for_flow(FLOW)["phone"]
        scaled.stop("redis")
        try:
            # An agent's desk still reads the conversation (it is in PostgreSQL) and waits for more.
            read = relay_to(scaled.process_urls[1], {"sender": sender, "do": "read", "after": 0, "wait": 1})
            widget.say(phone)
            refusal = widget.bot_message()
        finally:
            scaled.start_again("redis")
        assert [line["from"] for line in read["messages"]][:2] == ["customer", "bot"], read
        assert "稍后" in refusal["text"] and "custom" not in refusal, refusal  # words, not a question
        assert customer_turns(sender, scaled.process_urls[0]) == 1  # the refused one left nothing
        widget.say(phone)
        assert widget.asked() != "phone_number"
    finally:
        widget.close()


def test_process_killed_mid_turn_leaves_the_conversation_to_the_other(scaled: ScaledStack) -> None:
    """Last in the module: the killed process stays down. Its turn hangs on the database (the
    relay holds its query) while it holds the conversation's lock; killed then (SIGKILL), it
    never releases the lock. The customer's message sent again goes through the balancer to the
    other process, which serves it once the dead ticket expires (TICKET_LOCK_LIFETIME), and the
    flow carries on."""
    lost: list[BaseException | None] = []

    def kill_first_process_mid_turn(turn: int, text: str) -> None:
        if turn != 1:
            return
        scaled.relay.hold()
        with ThreadPoolExecutor(max_workers=1) as background:
            try:
                hanging = background.submit(chat.post, text, scaled.process_urls[0])
                wait_for(lambda: scaled.holds_lock(chat.sender), "the turn to take the conversation's lock")
                scaled.stop("rasa1", signal.SIGKILL)
            finally:
                scaled.relay.flow()
            lost.append(hanging.exception(timeout=TURN_TIMEOUT_SECONDS))

    chat = RoutedChat(scaled, route=lambda turn: scaled.balancer_url, before_turn=kill_first_process_mid_turn,
                      timeout_seconds=TURN_TIMEOUT_SECONDS + LOCK_LIFETIME_SECONDS)
    finished(run_flow(chat, FLOW, CUSTOMERS.for_flow(FLOW)), chat)
    assert scaled.running.processes["rasa1"].returncode == -signal.SIGKILL
    assert len(lost) == 1 and isinstance(lost[0], httpx.TransportError), lost  # the killed turn got no answer
    assert customer_turns(chat.sender, scaled.process_urls[1]) == chat.turns  # and left nothing behind


def wait_for(condition: Callable[[], bool], what: str) -> None:
    for _ in range(300):  # up to 30 s: a hang, never a slow machine
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"waited in vain for {what}")


def test_postgresql_unreachable_at_start_stops_the_process(tmp_path: Path) -> None:
    """Nothing listens where the conversations should be: the process stops with a clear error
    (Rasa retries only while it creates a database, which this topology never asks it to)."""
    nowhere = f"postgresql://rasa:unused@127.0.0.1:{free_port()}/conversations"
    rasa = rasa_server("rasa_without_database", "127.0.0.1", free_port(), Ports.free(), SECRETS,
                       SharedStores(nowhere, secrets.token_hex(16)).rasa_env(free_port()), endpoints=SCALED_ENDPOINTS)
    with pytest.raises(RuntimeError, match="rasa_without_database exited with 1") as stopped, \
            started([rasa], tmp_path):
        pass
    assert "Cannot connect to tracker store" in str(stopped.value)
