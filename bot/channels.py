"""Rasa's input channels at the trust boundary (configured in credentials.yml).

Who may say what:
- `WebChatInput` (socket.io, the web widget) and `ChatRestInput` (`/webhooks/chat/webhook`):
  public. A message counts only with a chat session token the web server issued
  (trust/chat_session.py); the conversation is the session inside the token, never an id the
  client chose. The channel sets the metadata itself (`channel: chat`): a public client cannot
  claim to be a phone call, a caller number or a priority tier. Nor send Rasa an intent of its
  choosing ("/intent{…}"): only the buttons the bot offered it come back as their payloads.
- `POST /webhooks/webchat/agent` (`LiveAgentRelay`): the web server, for the agent desk, with
  RASA_DESK_TOKEN. A human agent joins a chat conversation (the bot pauses), writes to the
  customer through the same socket.io room, and leaves (the bot resumes with the survey); the
  desk reads the conversation so far. Nothing else may pause a conversation or speak as an agent.
- `TrustedInput` (`/webhooks/trusted/webhook`): the phone gateway and the reminder dialer, each
  with its own bearer token. Only they may set the channel (voice, outbound), the caller's
  number and the priority tier, and only the metadata keys listed for their role.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from rasa.core.channels.socketio import SocketBlueprint, SocketIOInput, SocketIOOutput
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.events import (
    ActionExecuted,
    ActiveLoop,
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    Event,
    SlotSet,
)
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from socketio import AsyncServer

from bot.lock_store import local_releases, wait_for_release, watch_releases
from bot.socket_rooms import shared_rooms
from flowspec.model import FLOW_STATE_SLOTS, repository_flowset
from ivr_config import environment
from trust import chat_session
from trust.env_secrets import optional_secret, require_secret
from trust.logs import session_ref

log = logging.getLogger(__name__)
MAX_MESSAGE_CHARS = 10_000  # far beyond any customer's message; the widget sends at most 500
MAX_SOCKET_PAYLOAD_BYTES = 16 * 1024
CHAT_METADATA = {"channel": "chat"}
# What each trusted caller may tell the assistant about a conversation.
TRUSTED_ROLES: dict[str, dict[str, Any]] = {
    "gateway": {"token_env": "RASA_GATEWAY_TOKEN", "channels": ("voice", "outbound"),
                "metadata": ("channel", "caller_number", "priority_tier", "input", "heard")},
    "dialer": {"token_env": "RASA_DIALER_TOKEN", "channels": ("outbound",),
               "metadata": ("channel", "caller_number", "priority_tier")},
}

OnMessage = Callable[[UserMessage], Awaitable[Any]]
MAX_AGENT_TEXT_CHARS = 1000
MAX_AGENT_NAME_CHARS = 16
# What the bot goes on with when it takes a conversation back: after an agent closed the case
# the survey asks for a rating; a customer who gave up waiting is offered the callback flow.
RESUME_WITH = {"leave": "satisfaction_survey", "withdraw": "callback_request"}
RELAY_VERBS = ("join", "say", "leave", "withdraw", "read")
# A read may wait for the conversation to grow (the desk's event stream long-polls, so a
# customer's line reaches the agent as soon as Rasa has it). It wakes when a turn of the
# conversation gives its lock back, in this process or, through the lock store's Redis, another
# (bot/lock_store.py); it also looks again every RELAY_RECHECK_SECONDS (Redis down).
MAX_RELAY_WAIT_SECONDS = 25.0
RELAY_RECHECK_SECONDS = 1.0
AGENT_JOINED = "您好，我是人工客服{name}，很高兴为您服务。"
AGENT_LEFT = "人工客服已结束本次服务，感谢您的耐心。"


def allowed_origins(env: Mapping[str, str] = os.environ) -> list[str]:
    """Web origins that may embed the widget (CHAT_ALLOWED_ORIGINS, space-separated)."""
    return list(environment.words(env, "CHAT_ALLOWED_ORIGINS"))


def _text(value: Any) -> str | None:
    """The message, if it is one: text (an empty one gets the "please rephrase" answer)."""
    if not isinstance(value, str) or len(value) > MAX_MESSAGE_CHARS:
        return None
    return value


def _json_body(request: Request) -> dict[str, Any] | None:
    try:
        body = request.json
    except Exception:  # noqa: BLE001 - sanic raises its own InvalidUsage for malformed JSON
        return None
    return body if isinstance(body, dict) else None


def _refused(status: int, code: str, message: str) -> HTTPResponse:
    return response.json({"error": code, "message": message}, status=status)


class WebChatInput(SocketIOInput):
    """The widget's socket.io channel; every message needs the socket's verified session."""

    @classmethod
    def name(cls) -> str:
        return "webchat"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> InputChannel:
        credentials = credentials or {}
        return cls(credentials.get("user_message_evt", "user_uttered"),
                   credentials.get("bot_message_evt", "bot_uttered"),
                   session_persistence=True,
                   socketio_path=credentials.get("socketio_path", "/socket.io"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.secret = require_secret("CHAT_SESSION_SECRET")
        self.desk_token = optional_secret("RASA_DESK_TOKEN")

    def blueprint(self, on_new_message: OnMessage) -> Blueprint:
        origins = allowed_origins()
        # An empty list would switch engine.io's origin check off: no origin is allowed then.
        # Several Rasa processes (REDIS_HOST set) share the rooms over Redis: an agent's line
        # written on one process reaches the customer's socket on another (bot/socket_rooms.py).
        sio = AsyncServer(async_mode="sanic", cors_allowed_origins=origins or ["null-origin-only"],
                          max_http_buffer_size=MAX_SOCKET_PAYLOAD_BYTES, client_manager=shared_rooms())
        webhook = SocketBlueprint(sio, self.socketio_path, "webchat_webhook", __name__)
        self.sio = sio
        tokens: dict[str, str] = {}  # socket id -> the token it proved its session with
        relay = LiveAgentRelay(lambda: SignedChoicesOutput(sio, self.bot_message_evt, self.secret), self.name())

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @sio.on("disconnect")
        async def disconnect(sid: str) -> None:
            tokens.pop(sid, None)

        @sio.on("session_request")
        async def session_request(sid: str, data: Any) -> None:
            token = data.get("token") if isinstance(data, dict) else None
            session_id = chat_session.verify(self.secret, token, time.time())
            if session_id is None:
                await sio.emit("session_invalid", {"reason": "token"}, room=sid)
                return
            tokens[sid] = str(token)
            sio.enter_room(sid, session_id)
            await sio.emit("session_confirm", session_id, room=sid)

        @sio.on(self.user_message_evt)
        async def handle_message(sid: str, data: Any) -> None:
            # Checked again on every message: a token expires while its socket stays open.
            session_id = chat_session.verify(self.secret, tokens.get(sid), time.time())
            if session_id is None:
                tokens.pop(sid, None)
                await sio.emit("session_invalid", {"reason": "expired"}, room=sid)
                return
            text = _text(data.get("message") if isinstance(data, dict) else None)
            if text is None:
                return
            output = SignedChoicesOutput(sio, self.bot_message_evt, self.secret)
            await on_new_message(UserMessage(chat_session.received_text(self.secret, session_id, text), output,
                                             session_id, input_channel=self.name(),
                                             metadata=dict(CHAT_METADATA)))

        @webhook.route("/agent", methods=["POST"])
        async def agent(request: Request) -> HTTPResponse:
            if not self.desk_token or not _bearer_matches(request, self.desk_token):
                return _refused(401, "unauthorized", "the desk token is required")
            body = _json_body(request)
            if body is None:
                return _refused(400, "malformed", "expected a JSON object")
            return await relay.handle(request.app.ctx.agent, body)

        return webhook


class SignedChoicesOutput(SocketIOOutput):
    """The widget's socket.io output, each button's payload sent with its MAC for the session
    (chat_session.offered_choice): clicked, it comes back as the payload."""

    def __init__(self, sio: AsyncServer, bot_message_evt: str, secret: str) -> None:
        super().__init__(sio, bot_message_evt)
        self.secret = secret

    async def send_text_with_buttons(self, recipient_id: str, text: str, buttons: list[dict[str, Any]],
                                     **kwargs: Any) -> None:
        await super().send_text_with_buttons(recipient_id, text, _signed(self.secret, recipient_id, buttons),
                                             **kwargs)


def _signed(secret: str, session_id: str, buttons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**button, "payload": chat_session.offered_choice(secret, session_id, button["payload"])}
            if isinstance(button.get("payload"), str) else button for button in buttons]


def _bearer_matches(request: Request, token: str) -> bool:
    scheme, _, presented = (request.headers.get("Authorization") or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.encode(), token.encode())


def _agent_message(state: str, name: str, text: str, seq: int) -> BotUttered:
    """What the widget shows as a person's words (or a person joining or leaving), never the bot's.
    `seq`: its place among the conversation's events, as `transcript` numbers them, so a widget
    that fetches what it missed while disconnected shows each line once."""
    return BotUttered(None, {"custom": {"live_agent": {"state": state, "name": name, "text": text, "seq": seq}}})


def transcript(events: list[dict[str, Any]], after: int) -> list[dict[str, Any]]:
    """The conversation as the desk shows it, from event `after` on: the customer's messages,
    the bot's (with the knowledge base entry an answer came from), and the agent's (texts as the
    tracker store keeps them, personal data masked)."""
    said: list[dict[str, Any]] = []
    for index, event in enumerate(events[after:], start=after):
        kind, at = event.get("event"), event.get("timestamp")
        custom = ((event.get("data") or {}).get("custom") or {}) if kind == "bot" else {}
        live = custom.get("live_agent")
        if custom.get("knowledge") and said and said[-1]["from"] == "bot":
            said[-1]["knowledge"] = custom["knowledge"]  # the entry the answer came from
            continue
        if kind == "user" and event.get("text") and not str(event["text"]).startswith(("/", "EXTERNAL:")):
            said.append({"index": index, "from": "customer", "text": event["text"], "at": at})
        elif live:
            said.append({"index": index, "from": "agent", "state": live.get("state"), "name": live.get("name"),
                         "text": live.get("text"), "at": at})
        elif kind == "bot" and event.get("text"):
            said.append({"index": index, "from": "bot", "text": event["text"], "at": at})
    return said


class LiveAgentRelay:
    """`{"sender": <chat session>, "do": "join" | "say" | "leave" | "withdraw" | "read", "agent_name",
    "text", "after", "wait"}` from the web server, which has already checked that the logged-in
    agent holds the hand-over of this conversation, or that the customer gave up waiting (the risk
    API decides who holds what). A read with `wait` seconds answers once the conversation has
    events after `after`, or when the wait is over."""

    def __init__(self, output: Callable[[], SocketIOOutput], input_channel: str,
                 recheck_seconds: float = RELAY_RECHECK_SECONDS) -> None:
        self.output = output
        self.input_channel = input_channel
        self.recheck_seconds = recheck_seconds

    async def handle(self, agent: Any, body: dict[str, Any]) -> HTTPResponse:
        sender, do = body.get("sender"), body.get("do")
        name, text, after = body.get("agent_name", ""), body.get("text", ""), body.get("after", 0)
        wait = body.get("wait", 0)
        if (not isinstance(sender, str) or not 0 < len(sender) <= 128 or do not in RELAY_VERBS
                or not isinstance(name, str) or len(name) > MAX_AGENT_NAME_CHARS
                or not isinstance(text, str) or len(text) > MAX_AGENT_TEXT_CHARS
                or not isinstance(after, int) or isinstance(after, bool) or after < 0
                or not isinstance(wait, int | float) or isinstance(wait, bool)
                or not 0 <= wait <= MAX_RELAY_WAIT_SECONDS):
            return _refused(400, "malformed",
                            "sender, do (join/say/leave/withdraw/read), agent_name, text, after, wait (0-25 s)")
        if do in ("join", "say", "leave") and not name.strip():
            return _refused(400, "malformed", "agent_name is required")
        if do == "say" and not text.strip():
            return _refused(400, "malformed", "an empty message")
        if do == "read":
            return await self._read(agent, sender, after, float(wait))
        async with agent.lock_store.lock(sender):
            tracker = await agent.tracker_store.retrieve(sender)
            if tracker is None or not tracker.events:
                return _refused(404, "unknown_conversation", "no such conversation")
            output = self.output()
            events = self._events(do, name.strip(), text.strip(), tracker, len(tracker.events))
            for event in events:
                tracker.update(event)
            await agent.processor.execute_side_effects(events, tracker, output)
            if do in RESUME_WITH:
                await agent.processor.trigger_external_user_uttered(RESUME_WITH[do], None, tracker, output)
            else:
                await agent.processor.save_tracker(tracker)
        log.info("live agent %s for %s", do, session_ref(sender))
        return response.json({"ok": True, "paused": tracker.is_paused()})

    async def _read(self, agent: Any, sender: str, after: int, wait: float) -> HTTPResponse:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        # Every change of a conversation (the customer's turn, an agent's line) is made under its
        # lock, in this process or another: the read wakes when a turn gives it back.
        await watch_releases(agent.lock_store, sender, wait)
        while True:
            # Watched before the look: a release between the look and the wait still wakes it.
            with local_releases(agent.lock_store).watching(sender) as released:
                # Without the conversation's lock, as Rasa's own GET /tracker reads: a turn stores
                # the tracker whole, so a read sees the last stored state. Taking the lock made a
                # read and the turn or read beside it wait a whole lock poll (1 s) for each other.
                tracker = await agent.tracker_store.retrieve(sender)
                if tracker is None or not tracker.events:
                    return _refused(404, "unknown_conversation", "no such conversation")
                left = deadline - loop.time()
                if len(tracker.events) > after or left <= 0:
                    events = [event.as_dict() for event in tracker.events]
                    return response.json({"messages": transcript(events, after), "next": len(events),
                                          "paused": tracker.is_paused(),
                                          "channel": tracker.get_latest_input_channel()})
                await wait_for_release(released, min(left, self.recheck_seconds))

    @staticmethod
    def _events(do: str, name: str, text: str, tracker: Any, first: int) -> list[Event]:
        """The events of `do`, numbered from `first` (the tracker's event count)."""
        if do == "join":
            # Paused: Rasa keeps logging the customer's messages but no longer answers them.
            return [ConversationPaused(), _agent_message("joined", name, AGENT_JOINED.format(name=name), first + 1)]
        if do == "say":
            return [_agent_message("message", name, text, first)]
        # The bot takes the conversation back where a new flow can start: a flow the hand-over
        # interrupted (a form still active) ends here, its answers with it.
        active = tracker.get_slot("active_flow")
        flow = repository_flowset().flows.get(active) if active else None
        resets = ["requested_slot", *FLOW_STATE_SLOTS, *(flow.slot_names if flow else ())]
        farewell = [_agent_message("left", name, AGENT_LEFT, first)] if do == "leave" else []
        # Listening, as before any customer message: the rules that start a flow match from there.
        return [*farewell, ConversationResumed(), ActiveLoop(None),
                *(SlotSet(slot, None) for slot in dict.fromkeys(resets)), ActionExecuted(ACTION_LISTEN_NAME)]


class ChatRestInput(InputChannel):
    """`POST /webhooks/chat/webhook {"sender": <chat session token>, "message": …}`."""

    @classmethod
    def name(cls) -> str:
        return "chat"

    def __init__(self) -> None:
        self.secret = require_secret("CHAT_SESSION_SECRET")

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> InputChannel:
        return cls()

    def blueprint(self, on_new_message: OnMessage) -> Blueprint:
        webhook = Blueprint("chat_webhook", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            body = _json_body(request)
            if body is None:
                return _refused(400, "malformed", "expected a JSON object")
            session_id = chat_session.verify(self.secret, body.get("sender"), time.time())
            if session_id is None:
                return _refused(401, "session_invalid", "sender must be a chat session token")
            text = _text(body.get("message"))
            if text is None:
                return _refused(400, "malformed", f"message must be text of at most {MAX_MESSAGE_CHARS} characters")
            collector = CollectingOutputChannel()
            await on_new_message(UserMessage(chat_session.received_text(self.secret, session_id, text), collector,
                                             session_id, input_channel=self.name(), metadata=dict(CHAT_METADATA)))
            return response.json([{**message, "buttons": _signed(self.secret, session_id, message["buttons"])}
                                  if message.get("buttons") else message for message in collector.messages])

        return webhook


class TrustedInput(InputChannel):
    """`POST /webhooks/trusted/webhook` with `Authorization: Bearer <role token>`:
    `{"sender": <call id>, "message": …, "metadata": {…}}`."""

    @classmethod
    def name(cls) -> str:
        return "trusted"

    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens  # role -> token

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> InputChannel:
        tokens = {role: token for role, spec in TRUSTED_ROLES.items()
                  if (token := optional_secret(spec["token_env"])) is not None}
        if len(set(tokens.values())) != len(tokens):
            raise ValueError("RASA_GATEWAY_TOKEN and RASA_DIALER_TOKEN must differ")
        return cls(tokens)

    def role_of(self, request: Request) -> str | None:
        scheme, _, presented = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return None
        for role, token in self.tokens.items():
            if hmac.compare_digest(presented.encode(), token.encode()):
                return role
        return None

    @staticmethod
    def metadata_for(role: str, given: Any) -> dict[str, Any] | None:
        """The metadata this role may set, or None when it claims a channel it does not own."""
        spec = TRUSTED_ROLES[role]
        given = given if isinstance(given, dict) else {}
        metadata = {key: given[key] for key in spec["metadata"] if key in given}
        metadata.setdefault("channel", spec["channels"][0])
        return metadata if metadata["channel"] in spec["channels"] else None

    def blueprint(self, on_new_message: OnMessage) -> Blueprint:
        webhook = Blueprint("trusted_webhook", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            role = self.role_of(request)
            if role is None:
                return _refused(401, "unauthorized", "a trusted channel token is required")
            body = _json_body(request)
            sender = body.get("sender") if body else None
            text = _text(body.get("message")) if body else None
            if not isinstance(sender, str) or not 0 < len(sender) <= 128 or text is None:
                return _refused(400, "malformed", "sender and message are required")
            metadata = self.metadata_for(role, body.get("metadata") if body else None)
            if metadata is None:
                return _refused(403, "forbidden", f"the {role} may not open this channel")
            log.debug("trusted message from %s for %s", role, session_ref(sender))
            collector = CollectingOutputChannel()
            await on_new_message(UserMessage(text, collector, sender, input_channel=self.name(),
                                             metadata=metadata))
            return response.json(collector.messages)

        return webhook
