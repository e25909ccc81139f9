"""rasa-sdk's plugin hook (it imports `rasa_sdk_plugins` at start): the action server answers
only Rasa, which sends `Authorization: Bearer <ACTION_SERVER_TOKEN>` (bot/endpoints.yml).

Without it anyone who reaches the port could run the flow engine with a tracker of their own
making — a chosen sender id, forged slots — and have it call the risk API.
"""

from __future__ import annotations

import hmac

import pluggy
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sanic import Sanic, response
from sanic.request import Request
from sanic.response import HTTPResponse

import bot.metrics  # noqa: F401  (the flow engine's metrics, in the registry from the start)
from risk_api.masking import install_log_masking
from trust.asgi import bearer_matches
from trust.env_secrets import require_secret
from trust.metrics import METRICS_PATH, metrics_token

hookimpl = pluggy.HookimplMarker("rasa_sdk")
OPEN_PATHS = ("/health",)
# A long conversation's tracker travels with every action call.
MAX_REQUEST_BYTES = 8 * 1024 * 1024


class ActionServerAuth:
    @hookimpl
    def attach_sanic_app_extensions(self, app: Sanic) -> None:
        token = require_secret("ACTION_SERVER_TOKEN").encode()
        app.config.REQUEST_MAX_SIZE = MAX_REQUEST_BYTES

        monitoring = metrics_token()

        @app.get(METRICS_PATH)
        async def metrics(_: Request) -> HTTPResponse:
            return response.raw(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)

        @app.on_request
        async def require_token(request: Request) -> HTTPResponse | None:
            if request.path in OPEN_PATHS:
                return None
            if request.path == METRICS_PATH:  # the monitoring system's own token (trust/metrics.py)
                authorization = (request.headers.get("Authorization") or "").encode()
                if bearer_matches(authorization, [monitoring.encode()] if monitoring else []):
                    return None
                return response.json({"error": "unauthorized"}, status=401)
            scheme, _, presented = (request.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(presented.encode(), token):
                return None
            return response.json({"error": "unauthorized"}, status=401)


def init_hooks(manager: pluggy.PluginManager) -> None:
    install_log_masking()  # numbers masked in the flow engine's logs; no client logs a URL
    manager.register(ActionServerAuth())
