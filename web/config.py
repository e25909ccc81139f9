"""The web server's settings, all from the environment (the stack and the Makefile set them).

Secrets go through trust.env_secrets: a `dev-only-…` value stops the server at start unless
IVR_ENV=development.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ivr_config import environment
from knowledge.model import served_entries_dir, served_index_dir
from knowledge.proposals import proposals_url
from trust.env_secrets import optional_secret, require_secret
from trust.metrics import metrics_token


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    rasa_url: str
    risk_api_url: str
    risk_api_token: str  # the desk role's token: only the routes the desk needs
    # The agents' accounts (web/accounts.py); without a file the agent desk is switched off and
    # only the chat widget is served.
    accounts_file: str | None
    # What the desk uses to join agents to chat conversations (bot/channels.py LiveAgentRelay):
    # Rasa as this server reaches it, and the token of that one route.
    rasa_internal_url: str
    rasa_desk_token: str | None
    # Signs the agent desk's session cookie; a random one per process logs agents out on restart.
    session_secret: str
    # Signs chat session tokens; Rasa's public channels check them with the same secret.
    chat_session_secret: str
    # Sites that may embed the widget and ask for a chat session (the server's own origin always may).
    chat_allowed_origins: frozenset[str]
    # Chat sessions one source address may open per 10 minutes (raise it for sites behind a big NAT).
    chat_sessions_per_source: int = 10
    # Only behind a reverse proxy are X-Forwarded-Proto / X-Forwarded-For believed: anyone else
    # could send them.
    behind_proxy: bool = False
    # A waiting chat customer is offered a callback or a message once the expected wait reaches
    # this (0: always).
    chat_wait_limit_seconds: int = 300
    # The outbound dialler's campaign routes (outbound/service.py) and its desk token; without the
    # token the campaigns page says it is not configured.
    outbound_url: str = "http://127.0.0.1:9094"
    outbound_desk_token: str | None = None
    # The quality inspection service (quality/service.py) and its token: the supervisors' live
    # board of alerts; without the token the board says it is not configured.
    quality_url: str = "http://127.0.0.1:9095"
    quality_api_token: str | None = None
    # The phone gateways' control routes (telephony/gateway.py health app; a deployment runs several,
    # each holds its own calls) and the token they know the web server by: a supervisor raises a
    # waiting call's priority; without the token the board says it is not configured.
    gateway_urls: tuple[str, ...] = ("http://127.0.0.1:9093",)
    gateway_desk_token: str | None = None
    metrics_token: str | None = None  # METRICS_TOKEN: GET /metrics for the monitoring system
    # The knowledge base the desk's approved edits are published into (KNOWLEDGE_ENTRIES_DIR, the
    # action servers read the same), its index (KNOWLEDGE_INDEX_DIR) and the agents' proposals
    # (KNOWLEDGE_PROPOSALS_URL: SQLite beside the index by default).
    knowledge_entries_dir: Path = field(default_factory=served_entries_dir)
    knowledge_index_dir: Path = field(default_factory=served_index_dir)
    knowledge_proposals_url: str = field(default_factory=proposals_url)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """Raises SettingsError for a bad setting, a missing secret or a development one outside development."""
        rasa_url = environment.text(env, "RASA_URL", "http://127.0.0.1:5005")
        return cls(
            host=environment.text(env, "WEB_HOST", "127.0.0.1"),
            port=environment.port_number(env, "WEB_PORT", 8080),
            rasa_url=rasa_url,
            risk_api_url=environment.text(env, "RISK_API_URL", "http://127.0.0.1:8400"),
            risk_api_token=require_secret("RISK_API_TOKEN", env),
            accounts_file=environment.optional_text(env, "AGENT_ACCOUNTS_FILE"),
            rasa_internal_url=environment.text(env, "RASA_INTERNAL_URL", rasa_url),
            rasa_desk_token=optional_secret("RASA_DESK_TOKEN", env),
            session_secret=optional_secret("WEB_SESSION_SECRET", env) or secrets.token_hex(32),
            chat_session_secret=require_secret("CHAT_SESSION_SECRET", env),
            chat_allowed_origins=frozenset(environment.words(env, "CHAT_ALLOWED_ORIGINS")),
            chat_sessions_per_source=environment.whole_number(env, "CHAT_SESSIONS_PER_SOURCE", 10, minimum=1),
            behind_proxy=environment.flag(env, "WEB_BEHIND_PROXY"),
            chat_wait_limit_seconds=environment.whole_number(env, "CHAT_WAIT_LIMIT_SECONDS", 300),  # 0: always
            outbound_url=environment.text(env, "OUTBOUND_URL", "http://127.0.0.1:9094"),
            outbound_desk_token=optional_secret("OUTBOUND_DESK_TOKEN", env),
            quality_url=environment.text(env, "QUALITY_URL", "http://127.0.0.1:9095"),
            quality_api_token=optional_secret("QUALITY_API_TOKEN", env),
            gateway_urls=environment.words(env, "GATEWAY_URLS") or ("http://127.0.0.1:9093",),
            gateway_desk_token=optional_secret("GATEWAY_DESK_TOKEN", env),
            metrics_token=metrics_token(env),
            knowledge_entries_dir=served_entries_dir(env),
            knowledge_index_dir=served_index_dir(env),
            knowledge_proposals_url=proposals_url(env),
        )
