"""Start Rasa's command line (`python -m bot.rasa_launcher run …`) with a speed fix, a
socket.io fix and a tracker store that fails loudly.

Rasa 3.6 checks every action server response with `jsonschema.validate`, which first checks
Rasa's own constant schema against the JSON-Schema meta-schema — on every custom action call.
Profiling a flow turn showed that check taking about three quarters of the Rasa process's CPU.
Here the validator is built once; responses are still validated exactly as before.

Rasa 3.6's socket.io channel passes a custom JSON message's keys to `emit` as keyword arguments
(`emit("bot_uttered", flow=…, expect=…)`), which raises a TypeError and drops the turn; the web
chat widget gets custom messages as `{"custom": {...}}` instead, the shape of the REST channel.
(Rasa also calls python-socketio's `enter_room` without awaiting it, a coroutine since 5.9:
requirements/rasa.txt pins python-socketio 5.8.)

Rasa's Agent wraps the tracker store in a fail-safe wrapper that, when the database fails,
logs the database's error (SQL parameters, sender id and all) and carries on with an in-memory
store; `bot.tracker_store.refusing_fail_safe` makes such a turn fail instead.

`run` gets its HTTP API token and CORS origins here from the environment (RASA_API_TOKEN,
CHAT_ALLOWED_ORIGINS) rather than on the command line, where any local user could read the token.
Beyond the channels (`/webhooks/…`, `/socket.io`), the HTTP API answers only loopback clients,
token or not, and no request body may exceed 1 MiB (docs/security.md).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import Any

import rasa.core.run
from jsonschema import ValidationError
from jsonschema.validators import validator_for
from rasa.__main__ import main as rasa_main
from rasa.core.actions.action import RemoteAction
from rasa.core.agent import Agent
from rasa.core.channels.socketio import SocketIOOutput
from rasa.shared.constants import DOCS_BASE_URL
from sanic import Sanic, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.tracker_store import refusing_fail_safe
from risk_api.masking import install_log_masking
from trust.env_secrets import require_secret

_SCHEMA = RemoteAction.action_response_format_spec()
PUBLIC_PREFIXES = ("/webhooks/", "/socket.io")
MAX_REQUEST_BYTES = 1024 * 1024
_configure_app = rasa.core.run.configure_app
_VALIDATOR = validator_for(_SCHEMA)(_SCHEMA)


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


def _configure_closed_app(*args: Any, **kwargs: Any) -> Sanic:
    app = _configure_app(*args, **kwargs)
    app.config.REQUEST_MAX_SIZE = MAX_REQUEST_BYTES
    app.register_middleware(_operator_api_from_loopback_only, "request")
    return app


def _closed_api_arguments() -> list[str]:
    """Rasa's HTTP API needs the token; only the configured web origins get CORS."""
    origins = os.environ.get("CHAT_ALLOWED_ORIGINS", "").split()
    return ["--auth-token", require_secret("RASA_API_TOKEN"), "--cors", *(origins or ["null"])]


if __name__ == "__main__":
    install_log_masking()
    validator_for(_SCHEMA).check_schema(_SCHEMA)  # once, as Rasa would on every call
    RemoteAction._validate_action_result = _validate_action_result  # type: ignore[method-assign]
    SocketIOOutput.send_custom_json = _send_custom_json  # type: ignore[method-assign]
    Agent._create_tracker_store = staticmethod(refusing_fail_safe)  # type: ignore[method-assign]
    sys.argv[0] = "rasa"
    if sys.argv[1:2] == ["run"]:
        sys.argv += _closed_api_arguments()
        rasa.core.run.configure_app = _configure_closed_app
    sys.exit(rasa_main())
