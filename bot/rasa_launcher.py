"""Start Rasa's command line (`python -m bot.rasa_launcher run …`) with a speed fix, a
socket.io fix and a tracker store that fails loudly.

Rasa 3.6 checks every action server response with `jsonschema.validate`, which first checks
Rasa's own constant schema against the JSON-Schema meta-schema — on every custom action call.
Profiling a flow turn showed that check taking about three quarters of the Rasa process's CPU.
Here the validator is built once, and each event is checked against the one branch of the
schema's `oneOf` its type names instead of all 23 (`ResponseValidator`): the same verdicts.
Rasa copies every slot of the domain with `copy.copy` whenever it makes a tracker (several times a
turn: the policy's states, the forms' checks, reading the conversation); here a slot's
`__copy__` makes the same shallow copy without the pickling protocol's detour (`_slot_copy`).
Rasa finds an event's class by walking every subclass of Event (and asking `inspect.isabstract`
of each) for every event it reads, dozens a turn (the conversation from the tracker store, the
action server's replies): here from a table of the classes by name, made at the first event.
Rasa opens a new aiohttp session, and so a new TCP connection, for every custom action call;
here each endpoint keeps one session with kept-alive connections (`_KeptSession`), which encodes
the domain Rasa puts into every call (about 21 KB of JSON) once (`_DomainEncodedOnce`).
The rule policy checks every rule against the conversation's latest state at every prediction;
here only the rules whose last state names that state's previous action (`_possible_rule_keys`).
Rasa runs its model's graph (the NLU pipeline, the policies) through dask's scheduler twice a turn:
for graphs of 11 and 4 nodes its bookkeeping took about 6 % of a scaled Rasa process's samples,
against 17 % for the nodes' own work. Here (`rasa run` only) the nodes the targets need run in an
order worked out once (`_run_graph_in_order`).

Rasa 3.6's socket.io channel passes a custom JSON message's keys to `emit` as keyword arguments
(`emit("bot_uttered", flow=…, expect=…)`), which raises a TypeError and drops the turn; the web
chat widget gets custom messages as `{"custom": {...}}` instead, the shape of the REST channel.
(Rasa also calls python-socketio's `enter_room` without awaiting it, a coroutine since 5.9:
requirements/rasa.txt pins python-socketio 5.8.)

Rasa's Agent wraps the tracker store in a fail-safe wrapper that, when the database fails,
logs the database's error (SQL parameters, sender id and all) and carries on with an in-memory
store; `bot.tracker_store.refusing_fail_safe` makes such a turn fail instead. A turn that fails
because its conversation's stores cannot be reached (the tracker store's database, or the Redis
lock store of the scaled topology) is answered 503 with a JSON error saying which, logged in one
line without the conversation id, instead of Sanic's bare 500 and a trace; on the widget's
socket, which has no status, the customer is told to send it again. PostgreSQL connections
are checked before use, so the first turn after the database is back does not fail on a
connection the outage broke.

Rasa's ticket lock lets a waiting turn's ticket expire like a holder's: behind a turn that outlasts
the lock's lifetime (a slow action server), or a process killed mid-turn, a waiting turn's ticket,
issued about when the holder's was, expires with it and the turn is refused. Here a waiting turn
keeps its ticket alive while it waits and waits at most MAX_LOCK_WAITS polls, and looks again the
moment a turn of its conversation in this process gives the lock back (Rasa's waits out its poll,
a second: a customer's second message sent while the first is answered waited for it). Several Rasa
processes share their locks in `bot.lock_store.AtomicRedisLockStore`, which does the same in atomic
Redis scripts; Rasa's own `RedisLockStore` (`lock_store: type: redis`), which can give two
processes one ticket, is refused at start.

Rasa's telemetry (usage events, crash reports with tracebacks sent to Rasa's servers) is off.

`run` gets its HTTP API token and CORS origins here from the environment (RASA_API_TOKEN,
CHAT_ALLOWED_ORIGINS) rather than on the command line, where any local user could read the token.
Beyond the channels (`/webhooks/…`, `/socket.io`), the HTTP API answers only loopback clients,
token or not, and no request body may exceed 1 MiB (docs/security.md).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import logging
import os
import sys
import time
from typing import Any

import aiohttp
import rasa.core.lock_store
import rasa.core.run
import rasa.core.tracker_store
import rasa.shared.utils.common
from jsonschema import ValidationError
from jsonschema.validators import validator_for
from rasa.__main__ import main as rasa_main
from rasa.core.actions.action import RemoteAction
from rasa.core.agent import Agent
from rasa.core.channels.channel import UserMessage
from rasa.core.channels.socketio import SocketIOOutput
from rasa.core.lock import TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, LockError, LockStore
from rasa.core.policies.rule_policy import RulePolicy
from rasa.engine.exceptions import GraphRunError
from rasa.engine.runner.dask import DaskGraphRunner
from rasa.shared.constants import DOCS_BASE_URL
from rasa.shared.core.constants import PREVIOUS_ACTION, SHOULD_NOT_BE_SET
from rasa.shared.core.domain import State
from rasa.shared.core.events import Event
from rasa.shared.core.slots import Slot
from rasa.shared.exceptions import RasaException
from rasa.telemetry import TELEMETRY_ENABLED_ENVIRONMENT_VARIABLE
from rasa.utils.endpoints import DEFAULT_REQUEST_TIMEOUT, EndpointConfig
from redis.exceptions import RedisError
from sanic import Sanic, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels import allowed_origins
from bot.lock_store import MAX_LOCK_WAITS, ConversationBusy, TicketLost, local_releases, wait_for_release
from bot.tracker_store import TrackerStoreUnavailable, refusing_fail_safe
from risk_api.masking import install_log_masking
from trust.env_secrets import require_secret

_SCHEMA = RemoteAction.action_response_format_spec()
PUBLIC_PREFIXES = ("/webhooks/", "/socket.io")
MAX_REQUEST_BYTES = 1024 * 1024
_configure_app = rasa.core.run.configure_app
_create_lock_store = rasa.core.lock_store._create_from_endpoint_config
_cleanup = LockStore.cleanup
_engine_kwargs = rasa.core.tracker_store.create_engine_kwargs
_handle_message = Agent.handle_message
_resolve_by_type = Event.resolve_by_type
_event_classes: dict[str, type[Event]] = {}  # by type name, the first of Rasa's walk for each
RETRY_AFTER_SECONDS = 5
# LockError: a turn that lost its place or waited too long (and Rasa's wrapper of a store's failure
# on taking the lock); RedisError: Redis unreachable.
STORE_ERRORS = (TrackerStoreUnavailable, LockError, RedisError)
STORE_DOWN_TEXT = "抱歉，系统暂时繁忙，您刚才的消息没有收到，请稍后再发一次。"
log = logging.getLogger(__name__)

class ResponseValidator:
    """Rasa's check of an action server's response against its schema, with the same verdict in
    a tenth of the time: the schema's event item is `oneOf` 23 branches, each fixing `event` to
    its own constant, so an event passes exactly when the one branch its `event` names does;
    each event is checked against that branch alone, the rest of the schema as it is. A schema
    of another shape (another Rasa) is checked whole."""

    def __init__(self, schema: dict[str, Any]) -> None:
        validator = validator_for(schema)
        self._whole = validator(schema)
        self._branches: dict[str, Any] | None = None
        item = schema.get("properties", {}).get("events", {}).get("items", {})
        names = [branch.get("properties", {}).get("event", {}).get("const") for branch in item.get("oneOf", [])]
        if names and all(isinstance(name, str) for name in names) and len(set(names)) == len(names):
            events = {**schema["properties"]["events"], "items": {k: v for k, v in item.items() if k != "oneOf"}}
            self._whole = validator({**schema, "properties": {**schema["properties"], "events": events}})
            self._branches = {name: validator(branch) for name, branch in zip(names, item["oneOf"], strict=True)}

    @property
    def branches(self) -> int:
        """How many event branches are checked one by one (0: the schema is checked whole)."""
        return len(self._branches or {})

    def validate(self, result: Any) -> None:
        self._whole.validate(result)
        if self._branches is None or not isinstance(result, dict):
            return
        for event in result.get("events") or ():  # objects with a string `event`: the whole schema says so
            branch = self._branches.get(event["event"])
            if branch is None:
                raise ValidationError(f"{event['event']!r} is not an event Rasa knows", instance=event)
            branch.validate(event)


_VALIDATOR = ResponseValidator(_SCHEMA)
KEEP_ALIVE_SECONDS = 3.0
_kept_sessions: dict[tuple[Any, ...], aiohttp.ClientSession] = {}  # by endpoint: its URL, headers and auth


def _validate_action_result(self: RemoteAction, result: dict[str, Any]) -> bool:
    try:
        _VALIDATOR.validate(result)
    except ValidationError as error:
        error.message += (
            ". Failed to validate Action server response from API, make sure your response from "
            f"the Action endpoint is valid. For more information visit {DOCS_BASE_URL}/custom-actions"
        )
        raise
    return True


def _resolve_event_type(type_name: str, default: type[Event] | None = None) -> type[Event] | None:
    """`Event.resolve_by_type` from the table; a name not in it walks the classes again (one
    imported since), and Rasa's own answers what no class has (an old `topic`, the default, its error)."""
    if type_name not in _event_classes:
        for cls in rasa.shared.utils.common.all_subclasses(Event):
            _event_classes.setdefault(cls.type_name, cls)
    return _event_classes.get(type_name) or _resolve_by_type(type_name, default)


def _slot_copy(self: Slot) -> Slot:
    """What `copy.copy` makes of a slot without `__copy__`: a new object of its class sharing its
    attributes (Slot has no `__slots__`, `__getstate__` or `__reduce__` of its own), three times faster."""
    copied = object.__new__(type(self))
    copied.__dict__.update(self.__dict__)
    return copied


class _RulesByLastAction:
    """One rule lookup's keys, grouped by an action their last state names as the previous one.

    The latest state of a conversation can only match a rule whose last state's previous-action
    features it has (`RulePolicy._does_rule_match_state`): only the rules filed under one of its
    own, and those naming none, are checked against it."""

    def __init__(self, lookup: dict[str, str]) -> None:
        self.lookup = lookup  # kept: the index is found by the lookup's id
        self.longest = 0
        self.by_action: dict[tuple[str, Any], set[str]] = {}
        self.unfiled: set[str] = set()
        for key in lookup:
            states = RulePolicy._rule_key_to_state(key)
            self.longest = max(self.longest, len(states))
            named = sorted((feature, tuple(value) if isinstance(value, list) else value)
                           for feature, value in (states[-1].get(PREVIOUS_ACTION) or {}).items()
                           if value and value != SHOULD_NOT_BE_SET)
            if named:
                self.by_action.setdefault(named[0], set()).add(key)
            else:
                self.unfiled.add(key)

    def candidates(self, latest: State) -> set[str]:
        found = set(self.unfiled)
        for feature, value in (latest.get(PREVIOUS_ACTION) or {}).items():
            try:
                found |= self.by_action.get((feature, value), set())
            except TypeError:  # a value the index cannot look up: every rule is checked, as Rasa does
                return set(self.lookup)
        return found


_rule_indexes: dict[int, _RulesByLastAction] = {}
MAX_RULE_INDEXES = 8  # a model has two lookups (rules, and rules for a loop's unhappy path)


def _graph_order(runner: DaskGraphRunner, targets: tuple[str, ...]) -> list[str]:
    """The nodes `targets` need (dask's minimal graph), each after the nodes it needs; worked out
    once per runner and targets, and kept on the runner so a model's orders go with the model."""
    orders: dict[tuple[str, ...], list[str]] = runner.__dict__.setdefault("_orders_by_targets", {})
    if targets not in orders:
        nodes = runner._graph_schema.minimal_graph_schema(list(targets)).nodes
        order: list[str] = []

        def visit(name: str) -> None:
            if name in nodes and name not in order:
                for need in nodes[name].needs.values():
                    visit(need)
                order.append(name)

        for name in nodes:
            visit(name)
        orders[targets] = order
    return orders[targets]


def _run_graph_in_order(self: DaskGraphRunner, inputs: dict[str, Any] | None = None,
                        targets: list[str] | None = None) -> dict[str, Any]:
    """Rasa's `DaskGraphRunner.run` without dask: an input is a `(name, value)` as dask's graph
    holds it and takes the place of a node of its name, a node gets its needs' outputs (the
    need's name where there is none, as dask gives it), and a node's error is raised as dask
    raises it."""
    run_targets = targets if targets else self._graph_schema.target_names
    order = _graph_order(self, tuple(run_targets))
    outputs: dict[str, Any] = {}
    for name, value in (inputs or {}).items():
        if isinstance(value, str) and (value in order or value in outputs):
            raise GraphRunError(f"Input value '{value}' clashes with a node name. Make sure that none of the input "
                                "names passed to the `run` method are the same as node names in the graph schema.")
        outputs[name] = (name, value)
    try:
        for name in order:
            if name not in outputs:
                needs = self._graph_schema.nodes[name].needs.values()
                outputs[name] = self._instantiated_nodes[name](*(outputs.get(need, need) for need in needs))
    except RuntimeError as error:
        raise GraphRunError("Error running runner.") from error
    return dict(outputs[target] for target in run_targets)


def _possible_rule_keys(self: RulePolicy, lookup: dict[str, str], states: list[State]) -> set[str]:
    """`RulePolicy._get_possible_keys` with the same answer, for less: Rasa checks every rule
    against the latest state, then the survivors against every older state of the conversation.
    Here only the rules filed under the latest state's previous action are checked against it
    (`_RulesByLastAction`), and no state further back than the longest rule (a rule is applicable
    at any turn further back than its own length: `_is_rule_applicable`)."""
    index = _rule_indexes.get(id(lookup))
    if index is None or index.lookup is not lookup:
        if len(_rule_indexes) >= MAX_RULE_INDEXES:  # lookups of models loaded before
            _rule_indexes.clear()
        index = _rule_indexes[id(lookup)] = _RulesByLastAction(lookup)
    if not states:
        return set(lookup)
    possible = index.candidates(states[-1])
    for turn_index, state in enumerate(itertools.islice(reversed(states), index.longest)):
        possible = {key for key in possible if self._is_rule_applicable(key, turn_index, state)}
    return possible


async def _send_custom_json(self: SocketIOOutput, recipient_id: str, json_message: dict[str, Any],
                            **_: Any) -> None:
    await self._send_message(recipient_id, {"custom": json_message})


def _operator_api_from_loopback_only(request: Request) -> HTTPResponse | None:
    if request.path == "/" or request.path.startswith(PUBLIC_PREFIXES):
        return None
    try:
        if ipaddress.ip_address(request.ip).is_loopback:
            return None
    except ValueError:
        pass
    return response.json({"error": "forbidden", "message": "the HTTP API is for operators on this host"},
                         status=403)


def _what_failed(error: Exception) -> str:
    if isinstance(error, TrackerStoreUnavailable):
        return "tracker store (conversations) is unavailable"
    if isinstance(error, ConversationBusy):
        return "conversation is still busy with earlier messages"
    if isinstance(error, TicketLost):
        return "turn lost its place behind the conversation's earlier messages"
    return "lock store (Redis) is unavailable"


def _store_unavailable(request: Request, error: Exception) -> HTTPResponse:
    """A turn its conversation's stores could not serve: a clear 503 (the client may try again)."""
    what = _what_failed(error)
    log.error("%s %s refused: the %s (%s)", request.method, request.path, what, type(error).__name__)
    return response.json({"error": "store_unavailable", "message": f"the assistant's {what}; try again shortly"},
                         status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


async def _handle_message_telling_the_widget(self: Agent, message: UserMessage) -> Any:
    """Rasa's `handle_message`; a widget's turn its stores could not serve is refused to the
    customer in words (HTTP channels get the 503 of `_store_unavailable`)."""
    try:
        return await _handle_message(self, message)
    except STORE_ERRORS as error:
        if not isinstance(message.output_channel, SocketIOOutput):
            raise
        log.error("a widget message refused: the %s (%s)", _what_failed(error), type(error).__name__)
        await message.output_channel.send_text_message(message.sender_id, STORE_DOWN_TEXT)
        return None


def _lock_store_not_rasas_redis(endpoint_config: EndpointConfig | None) -> LockStore:
    """Rasa's lock store factory, refusing Rasa's `RedisLockStore`."""
    if endpoint_config is not None and endpoint_config.type == "redis":
        raise RasaException("lock_store type `redis` (Rasa's RedisLockStore) can give two processes one ticket: "
                            "use `type: bot.lock_store.AtomicRedisLockStore` with the same settings "
                            "(bot/endpoints.scaled.yml)")
    return _create_lock_store(endpoint_config)


def _renew_ticket(store: LockStore, conversation_id: str, ticket: int) -> bool:
    """Renew a waiting ticket of this process's lock store; False when it (or the lock) is gone.
    No await between the read and the write: no other turn changes the lock meanwhile."""
    lock = store.get_lock(conversation_id)
    if lock is None:
        return False
    lock.remove_expired_tickets()
    mine = [waiting for waiting in lock.tickets if waiting.number == ticket]
    for waiting in mine:
        waiting.expires = time.time() + LOCK_LIFETIME
    store.save_lock(lock)
    return bool(mine)


async def _acquire_lock_keeping_ticket(self: LockStore, conversation_id: str, ticket: int,
                                       wait_time_in_seconds: float) -> TicketLock:
    """Rasa's `LockStore._acquire_lock` (the in-memory store's), the waiting ticket renewed at
    every poll as `AtomicRedisLockStore` renews it, and the wait ended as soon as the turn ahead
    gives the lock back (`_cleanup_waking_waiters`)."""
    for _ in range(MAX_LOCK_WAITS):
        lock = self.get_lock(conversation_id)
        if lock is None:
            raise TicketLost("the conversation's lock is gone from the lock store")
        if not lock.is_locked(ticket):
            return lock
        with local_releases(self).watching(conversation_id) as released:  # no await since the look
            await wait_for_release(released, wait_time_in_seconds)
        if not _renew_ticket(self, conversation_id, ticket):
            raise TicketLost("the waiting turn's ticket is gone from the lock store")
    raise ConversationBusy("could not acquire the conversation's lock")


def _cleanup_waking_waiters(self: LockStore, conversation_id: str, ticket_number: int) -> None:
    """Rasa's `LockStore.cleanup` (a turn gives its ticket back), then the turns of the
    conversation waiting in this process look at the lock at once."""
    _cleanup(self, conversation_id, ticket_number)
    local_releases(self).released(conversation_id)


class _DomainEncodedOnce:
    """`json.dumps` for the action server's calls, with the domain's JSON made once. Rasa sends the
    whole domain in every call (`enable_selective_domain` needs a domain digest rasa-sdk 3.21 asks
    for and Rasa 3.6 never sends), always the same dict (`Domain.as_dict()` is the loaded domain's
    `_data`, never changed after loading): encoding it was a third of a custom action's cost on
    Rasa's event loop. Another domain (a model loaded since) is encoded afresh."""

    def __init__(self) -> None:
        self._domain: dict[str, Any] | None = None  # held, so its id is never another dict's
        self._encoded = ""

    def __call__(self, body: Any) -> str:
        domain = body.get("domain") if isinstance(body, dict) else None
        if not isinstance(domain, dict):
            return json.dumps(body)
        if domain is not self._domain:
            self._domain, self._encoded = domain, json.dumps(domain)
        rest = json.dumps({key: value for key, value in body.items() if key != "domain"})
        return f'{rest[:-1]}{", " if rest != "{}" else ""}"domain": {self._encoded}}}'


class _KeptSession:
    """What `EndpointConfig.session()` gives Rasa's `request` (`async with endpoint.session()`):
    the endpoint's one aiohttp session, left open, so each custom action's call reuses a kept-alive
    connection instead of a new session and TCP connection."""

    def __init__(self, endpoint: EndpointConfig) -> None:
        self._endpoint = endpoint

    async def __aenter__(self) -> aiohttp.ClientSession:
        endpoint = self._endpoint
        key = (endpoint.url, tuple(sorted((endpoint.headers or {}).items())),
               tuple(sorted((endpoint.basic_auth or {}).items())))
        session = _kept_sessions.get(key)
        if session is None or session.closed or session.loop is not asyncio.get_running_loop():
            auth = (aiohttp.BasicAuth(endpoint.basic_auth["username"], endpoint.basic_auth["password"])
                    if endpoint.basic_auth else None)
            session = _kept_sessions[key] = aiohttp.ClientSession(
                headers=endpoint.headers, auth=auth, timeout=aiohttp.ClientTimeout(total=DEFAULT_REQUEST_TIMEOUT),
                # An idle connection is let go before a server would close it (Sanic: after 5 s or more).
                connector=aiohttp.TCPConnector(keepalive_timeout=KEEP_ALIVE_SECONDS),
                json_serialize=_DomainEncodedOnce())
        return session

    async def __aexit__(self, *_: object) -> None:
        return None


def _kept_session(self: EndpointConfig) -> _KeptSession:
    return _KeptSession(self)


async def _close_kept_sessions(*_: Any) -> None:
    for session in _kept_sessions.values():
        await session.close()
    _kept_sessions.clear()


def _engine_kwargs_checking_connections(url: Any) -> dict[str, Any]:
    """Rasa's engine settings, with a pooled PostgreSQL connection checked before each use."""
    kwargs = _engine_kwargs(url)
    if rasa.core.tracker_store.is_postgresql_url(url):
        kwargs["pool_pre_ping"] = True
    return kwargs


def _configure_closed_app(*args: Any, **kwargs: Any) -> Sanic:
    app = _configure_app(*args, **kwargs)
    app.config.REQUEST_MAX_SIZE = MAX_REQUEST_BYTES
    app.register_middleware(_operator_api_from_loopback_only, "request")
    app.register_listener(_close_kept_sessions, "after_server_stop")
    for error in STORE_ERRORS:
        app.error_handler.add(error, _store_unavailable)
    return app


def _closed_api_arguments() -> list[str]:
    """Rasa's HTTP API needs the token; only the configured web origins get CORS."""
    origins = allowed_origins()
    return ["--auth-token", require_secret("RASA_API_TOKEN"), "--cors", *(origins or ["null"])]


if __name__ == "__main__":
    # Rasa's telemetry would send usage events and crash reports (tracebacks) to Rasa's servers.
    os.environ[TELEMETRY_ENABLED_ENVIRONMENT_VARIABLE] = "false"
    install_log_masking()
    validator_for(_SCHEMA).check_schema(_SCHEMA)  # once, as Rasa would on every call
    RemoteAction._validate_action_result = _validate_action_result  # type: ignore[method-assign]
    Event.resolve_by_type = staticmethod(_resolve_event_type)  # type: ignore[method-assign,assignment]
    SocketIOOutput.send_custom_json = _send_custom_json  # type: ignore[method-assign]
    EndpointConfig.session = _kept_session  # type: ignore[method-assign,assignment]
    RulePolicy._get_possible_keys = _possible_rule_keys  # type: ignore[method-assign]
    Slot.__copy__ = _slot_copy  # type: ignore[attr-defined]
    Agent._create_tracker_store = staticmethod(refusing_fail_safe)  # type: ignore[method-assign]
    rasa.core.tracker_store.create_engine_kwargs = _engine_kwargs_checking_connections
    Agent.handle_message = _handle_message_telling_the_widget  # type: ignore[method-assign]
    LockStore._acquire_lock = _acquire_lock_keeping_ticket  # type: ignore[method-assign]
    LockStore.cleanup = _cleanup_waking_waiters  # type: ignore[method-assign]
    rasa.core.lock_store._create_from_endpoint_config = _lock_store_not_rasas_redis
    sys.argv[0] = "rasa"
    if sys.argv[1:2] == ["run"]:
        DaskGraphRunner.run = _run_graph_in_order  # type: ignore[method-assign]
        sys.argv += _closed_api_arguments()
        rasa.core.run.configure_app = _configure_closed_app
    sys.exit(rasa_main())
