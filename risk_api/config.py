"""Service settings, read once from the environment at start."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ivr_config import environment
from ivr_config.environment import SettingsError
from trust.env_secrets import optional_secret
from trust.metrics import metrics_token

DEFAULT_DATABASE_URL = "sqlite:///var/risk_api.sqlite3"
DEFAULT_OUTBOX = "var/sms_outbox.jsonl"
DEFAULT_RULES = Path(__file__).with_name("rules.yaml")
ROLES = ("desk", "gateway", "dialer")


@dataclass(frozen=True)
class Settings:
    token: str  # the engine's (the action server's)
    # Other callers, each limited to its own routes (docs/security.md): desk, gateway, dialer.
    role_tokens: Mapping[str, str] = field(default_factory=dict)
    database_url: str = DEFAULT_DATABASE_URL
    sms_outbox: Path = Path(DEFAULT_OUTBOX)
    rules_path: Path = DEFAULT_RULES
    sms_sender: str | None = None  # "package.module:factory"; None = outbox file
    host: str = "127.0.0.1"
    port: int = 8400
    otp_sends_per_customer_hour: int = 5
    metrics_token: str | None = field(default=None, repr=False)  # METRICS_TOKEN: GET /metrics

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        token = optional_secret("RISK_API_ENGINE_TOKEN", env) or optional_secret("RISK_API_TOKEN", env)
        roles = {role: value for role in ROLES
                 if (value := optional_secret(f"RISK_API_{role.upper()}_TOKEN", env)) is not None}
        if not token:
            raise SettingsError(
                "RISK_API_TOKEN is not set (nor RISK_API_ENGINE_TOKEN): the engine authenticates with "
                "this bearer token and the service has no default. Start it as: "
                "RISK_API_ENGINE_TOKEN=<secret> python -m risk_api"
            )
        if len({token, *roles.values()}) != len(roles) + 1:
            raise SettingsError("every caller role needs its own token (RISK_API_*_TOKEN values must differ)")
        return cls(
            token=token,
            role_tokens=roles,
            metrics_token=metrics_token(env),
            database_url=environment.text(env, "RISK_API_DATABASE_URL", DEFAULT_DATABASE_URL),
            sms_outbox=environment.path(env, "RISK_API_SMS_OUTBOX", DEFAULT_OUTBOX),
            rules_path=environment.path(env, "RISK_API_RULES", DEFAULT_RULES),
            sms_sender=environment.optional_text(env, "RISK_API_SMS_SENDER"),
            host=environment.text(env, "RISK_API_HOST", "127.0.0.1"),
            port=environment.port_number(env, "RISK_API_PORT", 8400),
            otp_sends_per_customer_hour=environment.whole_number(env, "RISK_API_OTP_SENDS_PER_CUSTOMER_HOUR", 5,
                                                                 minimum=1),
        )
