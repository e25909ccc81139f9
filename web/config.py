"""The web server's settings, all from the environment (the stack and the Makefile set them)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    rasa_url: str
    risk_api_url: str
    risk_api_token: str
    # Without both, the agent desk is switched off and only the chat widget is served.
    desk_user: str | None
    desk_password: str | None
    # Signs the agent desk's session cookie; a random one per process logs agents out on restart.
    session_secret: str

    @classmethod
    def from_environment(cls) -> Settings:
        if not os.environ.get("RISK_API_TOKEN"):
            raise RuntimeError("RISK_API_TOKEN not set (the Makefile sets a development value)")
        return cls(
            host=os.environ.get("WEB_HOST", "127.0.0.1"),
            port=int(os.environ.get("WEB_PORT", 8080)),
            rasa_url=os.environ.get("RASA_URL", "http://127.0.0.1:5005"),
            risk_api_url=os.environ.get("RISK_API_URL", "http://127.0.0.1:8400"),
            risk_api_token=os.environ["RISK_API_TOKEN"],
            desk_user=os.environ.get("AGENT_DESK_USER") or None,
            desk_password=os.environ.get("AGENT_DESK_PASSWORD") or None,
            session_secret=os.environ.get("WEB_SESSION_SECRET") or secrets.token_hex(32),
        )
