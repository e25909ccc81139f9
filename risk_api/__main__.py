"""`python -m risk_api`: serve the API on RISK_API_HOST:RISK_API_PORT (127.0.0.1:8400)."""
from __future__ import annotations

import sys

import uvicorn

from ivr_config.environment import SettingsError
from risk_api.app import create_app
from risk_api.config import Settings
from risk_api.db import SchemaVersionError
from risk_api.rules import RulesConfigError
from trust.log_format import configure_logging


def main() -> int:
    try:
        # Masked lines in LOG_FORMAT (text or json); uvicorn's own lines go through the same handler.
        configure_logging("risk_api")
        settings = Settings.from_env()
        app = create_app(settings)
    except (SettingsError, RulesConfigError, SchemaVersionError) as exc:
        print(f"risk_api: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
