"""Start Rasa's command line (`python -m bot.rasa_launcher run …`) with a speed fix and a
socket.io fix.

Rasa 3.6 checks every action server response with `jsonschema.validate`, which first checks
Rasa's own constant schema against the JSON-Schema meta-schema — on every custom action call.
Profiling a flow turn showed that check taking about three quarters of the Rasa process's CPU.
Here the validator is built once; responses are still validated exactly as before.

Rasa 3.6's socket.io channel passes a custom JSON message's keys to `emit` as keyword arguments
(`emit("bot_uttered", flow=…, expect=…)`), which raises a TypeError and drops the turn; the web
chat widget gets custom messages as `{"custom": {...}}` instead, the shape of the REST channel.
(Rasa also calls python-socketio's `enter_room` without awaiting it, a coroutine since 5.9:
requirements/rasa.txt pins python-socketio 5.8.)
"""

from __future__ import annotations

import sys
from typing import Any

from jsonschema import ValidationError
from jsonschema.validators import validator_for
from rasa.__main__ import main as rasa_main
from rasa.core.actions.action import RemoteAction
from rasa.core.channels.socketio import SocketIOOutput
from rasa.shared.constants import DOCS_BASE_URL

_SCHEMA = RemoteAction.action_response_format_spec()
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


if __name__ == "__main__":
    validator_for(_SCHEMA).check_schema(_SCHEMA)  # once, as Rasa would on every call
    RemoteAction._validate_action_result = _validate_action_result  # type: ignore[method-assign]
    SocketIOOutput.send_custom_json = _send_custom_json  # type: ignore[method-assign]
    sys.argv[0] = "rasa"
    sys.exit(rasa_main())
