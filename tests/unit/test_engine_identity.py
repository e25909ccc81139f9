"""The flow engine takes identity from the risk API's verified session, never from slots, and
asks again when that session has ended instead of failing. The risk API here is a real HTTP
server on loopback that answers as the real one does when a session is unknown or refused."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from bot.actions import conversation
from bot.actions.flow_engine import GENERATED_ACTIONS, FinishFlow
from bot.actions.risk_client import TURN_SESSION_SECONDS, TurnSessions


class RiskApiPlayer(BaseHTTPRequestHandler):
    """Answers GET /sessions/<id> with `session` (404 when None, or once `session_answers` ran
    out: the session ended), a POST to a path of `post_answers` with its answer, and every other
    read and write with 403. `posted` keeps the bodies of the POSTs."""

    session: dict[str, Any] | None = None
    session_answers = 1000
    seen: list[str] = []
    post_answers: dict[str, dict[str, Any]] = {}
    posted: list[tuple[str, dict[str, Any]]] = []

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.seen.append(self.path)
        if self.path.startswith("/sessions/"):
            RiskApiPlayer.session_answers -= 1
            if self.session is None or self.session_answers < 0:
                self._answer(404, {"detail": {"code": "no_session", "message": "没有核验会话"}})
            else:
                self._answer(200, self.session)
            return
        self._answer(403, {"detail": {"code": "verification_required", "message": "需要先完成身份核验。"}})

    def do_POST(self) -> None:  # noqa: N802
        self.seen.append(self.path)
        self.posted.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
        if self.path in self.post_answers:
            self._answer(200, self.post_answers[self.path])
            return
        self._answer(403, {"detail": {"code": "verification_required", "message": "需要先完成身份核验。"}})

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def risk_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[RiskApiPlayer]]:
    RiskApiPlayer.session = None
    RiskApiPlayer.session_answers = 1000
    RiskApiPlayer.seen = []
    RiskApiPlayer.post_answers = {}
    RiskApiPlayer.posted = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RiskApiPlayer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("RISK_API_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("RISK_API_TOKEN", "engine-token-for-this-test")
    conversation.risk_client.cache_clear()
    # Virtual time: the actions of one test's message stay one turn however busy the machine is.
    conversation.risk_client().turn_sessions.clock = lambda: 0.0
    yield RiskApiPlayer
    conversation.risk_client.cache_clear()
    server.shutdown()
    server.server_close()


def tracker(slots: dict[str, Any], text: str = "", intent: str = "inform", at: float = 1.0) -> Tracker:
    """A conversation whose latest customer message, `text`, came at `at`."""
    message = {"text": text, "intent": {"name": intent, "confidence": 0.99}, "message_id": f"m{at}"}
    events = [{"event": "user", "text": text, "parse_data": message, "timestamp": at, "message_id": f"m{at}"}]
    return Tracker("session-1", {"channel": "chat", **slots}, message, events, False, None, {}, "action_listen")


def validator(flow_id: str) -> Any:
    return next(c for c in GENERATED_ACTIONS if c().name() == f"validate_{flow_id}_form")()


def said(dispatcher: CollectingDispatcher) -> str:
    return " ".join(m["text"] for m in dispatcher.messages if m.get("text"))


def test_finish_after_the_verified_session_ended_asks_again_instead_of_failing(
        risk_api: type[RiskApiPlayer]) -> None:
    dispatcher = CollectingDispatcher()
    slots = {"active_flow": "check_credit_limit", "customer_id": "C100001", "verified_level": "L2",
             "phone_number": "19900000001", "customer_name": "杨测戊"}
    events = asyncio.run(FinishFlow().run(dispatcher, tracker(slots, "好的"), {}))
    assert "重新核实" in said(dispatcher)
    assert {"event": "followup", "name": "check_credit_limit_form"} in [
        {k: e[k] for k in ("event", "name")} for e in events if e["event"] == "followup"]
    cleared = {e["name"] for e in events if e["event"] == "slot" and e["value"] is None}
    assert {"customer_id", "verified_level", "customer_name"} <= cleared
    assert not [m for m in dispatcher.messages if "outcome" in (m.get("custom") or {})]
    assert not any("/limits" in path for path in risk_api.seen), "no read for a session that is not verified"


SESSION_L1 = {"customer_id": "C100001", "level": "L1", "expires_at": "2026-12-04T10:00:00+08:00"}


def test_a_session_ending_during_the_reads_asks_again(risk_api: type[RiskApiPlayer]) -> None:
    risk_api.session, risk_api.session_answers = SESSION_L1, 1  # verified when the turn began only
    dispatcher = CollectingDispatcher()
    slots = {"active_flow": "check_credit_limit", "customer_id": "C100001", "verified_level": "L1"}
    events = asyncio.run(FinishFlow().run(dispatcher, tracker(slots, "好的"), {}))
    assert "重新核实" in said(dispatcher)
    assert any(e["event"] == "followup" for e in events)


def test_a_read_refused_for_a_live_session_hands_off_rather_than_looping(risk_api: type[RiskApiPlayer]) -> None:
    risk_api.session = SESSION_L1
    dispatcher = CollectingDispatcher()
    slots = {"active_flow": "check_credit_limit", "customer_id": "C100001", "verified_level": "L1"}
    events = asyncio.run(FinishFlow().run(dispatcher, tracker(slots, "好的"), {}))
    assert not any(e["event"] == "followup" for e in events)
    outcomes = [m["custom"]["outcome"] for m in dispatcher.messages if "outcome" in (m.get("custom") or {})]
    assert outcomes == ["unavailable"]
    assert [m for m in dispatcher.messages if "handoff" in (m.get("custom") or {})]


def test_forged_slots_are_replaced_by_what_the_risk_api_knows(risk_api: type[RiskApiPlayer]) -> None:
    dispatcher = CollectingDispatcher()
    slots = {"customer_id": "C100002", "verified_level": "L2", "phone_number": "19900000001",
             "customer_name": "杨测戊", "id_last4": "0004", "requested_slot": "confirmed"}
    events = asyncio.run(validator("unsubscribe_marketing").run(dispatcher, tracker(slots, "确认", "affirm"), {}))
    values = {e["name"]: e["value"] for e in events if e["event"] == "slot"}
    assert values["customer_id"] is None and values["verified_level"] is None
    assert values["customer_name"] is None and values["id_last4"] is None
    assert values["requested_slot"] == "customer_name", "identity is asked again (the number is kept)"
    assert "重新核实" in said(dispatcher)


def test_a_verified_session_fills_the_slots_copy(risk_api: type[RiskApiPlayer]) -> None:
    risk_api.session = {"customer_id": "C100003", "level": "L1", "expires_at": "2026-12-04T10:00:00+08:00"}
    events = asyncio.run(validator("check_credit_limit").run(CollectingDispatcher(), tracker({}, "查额度"), {}))
    values = {e["name"]: e["value"] for e in events if e["event"] == "slot"}
    assert (values["customer_id"], values["verified_level"]) == ("C100003", "L1")
    assert values["requested_slot"] is None, "nothing to ask: the risk API vouches for L1"


LINE_OFFERED = {"/verification/l1/methods": {"methods": ["phone_name_id4", "line_id6"]}}


def call_tracker(slots: dict[str, Any], text: str = "", intent: str = "inform", at: float = 1.0) -> Tracker:
    """A phone call's conversation: the trusted channel gave the caller's number."""
    return tracker({"channel": "voice", "caller_number": "19900000001", **slots}, text, intent, at)


def next_question(events: list[dict[str, Any]]) -> Any:
    return {e["name"]: e["value"] for e in events if e["event"] == "slot"}["requested_slot"]


def test_a_call_whose_line_the_risk_api_offers_is_asked_id_last6_instead_of_the_name(
        risk_api: type[RiskApiPlayer]) -> None:
    risk_api.post_answers = LINE_OFFERED
    events = asyncio.run(validator("check_credit_limit").run(CollectingDispatcher(), call_tracker({}, "查额度"), {}))
    assert next_question(events) == "id_last6"
    assert risk_api.posted == [("/verification/l1/methods", {"session_id": "session-1", "channel": "voice"})]


def test_keyed_id_last6_verifies_by_the_line_without_naming_any_number(risk_api: type[RiskApiPlayer]) -> None:
    risk_api.post_answers = {**LINE_OFFERED, "/verification/l1/line": {
        "verified": True, "level": "L1", "customer_id": "C100001", "attempts_left": 3, "locked_until": None}}
    events = asyncio.run(validator("check_credit_limit").run(
        CollectingDispatcher(), call_tracker({"requested_slot": "id_last6"}, "12345X"), {}))
    values = {e["name"]: e["value"] for e in events if e["event"] == "slot"}
    assert (values["customer_id"], values["verified_level"], values["id_last6"]) == ("C100001", "L1", None)
    assert values["requested_slot"] is None
    assert ("/verification/l1/line", {"id_last6": "12345X", "session_id": "session-1", "channel": "voice"}) \
        in risk_api.posted, "the number is the risk API's own (the gateway's word), never the engine's"


def test_a_call_without_the_line_offered_and_a_chat_are_asked_the_name(risk_api: type[RiskApiPlayer]) -> None:
    risk_api.post_answers = {"/verification/l1/methods": {"methods": ["phone_name_id4"]}}
    call = asyncio.run(validator("check_credit_limit").run(CollectingDispatcher(), call_tracker({}, "查额度"), {}))
    assert next_question(call) == "customer_name"
    risk_api.posted.clear()
    chat = asyncio.run(validator("check_credit_limit").run(CollectingDispatcher(), tracker({}, "查额度"), {}))
    assert next_question(chat) == "phone_number"
    assert not risk_api.posted, "a chat has no line: the risk API is not even asked"


def sessions_asked(risk_api: type[RiskApiPlayer]) -> int:
    return sum(path.startswith("/sessions/") for path in risk_api.seen)


def test_the_actions_answering_one_message_ask_for_the_session_once_and_the_next_message_asks_again(
        risk_api: type[RiskApiPlayer]) -> None:
    risk_api.session = SESSION_L1
    verified = {"active_flow": "check_credit_limit", "customer_id": "C100001", "verified_level": "L1"}
    for action in (validator("check_credit_limit"), validator("check_credit_limit")):
        events = asyncio.run(action.run(CollectingDispatcher(), tracker(verified, "查额度", at=1.0), {}))
        assert next_question(events) is None
    assert sessions_asked(risk_api) == 1
    risk_api.session = None  # the verified session ended before the next message
    events = asyncio.run(validator("check_credit_limit").run(
        CollectingDispatcher(), tracker(verified, "再查一下", at=2.0), {}))
    assert sessions_asked(risk_api) == 2
    assert next_question(events) == "phone_number", "the ended session is seen at once"


def test_an_action_asks_for_the_session_afresh_when_the_risk_api_refused_a_read_in_the_same_turn(
        risk_api: type[RiskApiPlayer]) -> None:
    risk_api.session = SESSION_L1  # every read is refused (403): the finish asks whether it ended
    asyncio.run(FinishFlow().run(CollectingDispatcher(), tracker(
        {"active_flow": "check_credit_limit", "customer_id": "C100001", "verified_level": "L1"}, "好的"), {}))
    assert sessions_asked(risk_api) == 2


def test_an_action_after_a_verification_in_the_same_turn_asks_for_the_new_session(
        risk_api: type[RiskApiPlayer]) -> None:
    risk_api.post_answers = {**LINE_OFFERED, "/verification/l1/line": {
        "verified": True, "level": "L1", "customer_id": "C100001", "attempts_left": 3, "locked_until": None}}
    keyed = call_tracker({"requested_slot": "id_last6"}, "12345X")
    asyncio.run(validator("check_credit_limit").run(CollectingDispatcher(), keyed, {}))
    risk_api.session = SESSION_L1  # what the risk API answers once the line verified
    turn = asyncio.run(conversation.Turn.start(keyed, CollectingDispatcher()))
    assert (turn.customer_id, turn.verified_level) == ("C100001", "L1")
    assert sessions_asked(risk_api) == 2, "the verification dropped the turn's earlier answer"


def test_an_action_after_a_verification_by_another_action_server_asks_for_the_new_session(
        risk_api: type[RiskApiPlayer]) -> None:
    # This process answered the message's first action; another one verified (the scaled topology
    # balances action calls): the slots it set come with the next action's tracker.
    asyncio.run(conversation.Turn.start(call_tracker({"requested_slot": "id_last6"}, "12345X"), CollectingDispatcher()))
    risk_api.session = SESSION_L1
    verified_elsewhere = call_tracker({"customer_id": "C100001", "verified_level": "L1"}, "12345X")
    events = asyncio.run(validator("check_credit_limit").run(CollectingDispatcher(), verified_elsewhere, {}))
    values = {e["name"]: e["value"] for e in events if e["event"] == "slot"}
    assert values.get("customer_id", "C100001") == "C100001", "the slots copy is kept: the session vouches"
    assert next_question(events) is None
    assert sessions_asked(risk_api) == 2


def test_a_kept_session_answer_lasts_ten_seconds_and_the_oldest_conversation_makes_room() -> None:
    now = [0.0]
    kept = TurnSessions(size=2, clock=lambda: now[0])
    kept.put("chat-a", "message-1", SESSION_L1)
    assert kept.get("chat-a", "message-1") == (True, SESSION_L1)
    assert kept.get("chat-a", "message-2") == (False, None), "another message asks again"
    kept.put("chat-b", "message-1", None)
    assert kept.get("chat-b", "message-1") == (True, None), "not verified is an answer too"
    now[0] = TURN_SESSION_SECONDS + 0.1
    assert kept.get("chat-a", "message-1") == (False, None)
    kept.put("chat-c", "message-1", None)
    kept.put("chat-d", "message-1", None)
    assert kept.get("chat-b", "message-1") == (False, None), "room for two conversations"
    assert kept.get("chat-d", "message-1") == (True, None)
