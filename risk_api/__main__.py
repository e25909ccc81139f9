"""`python -m risk_api`: serve the API on RISK_API_HOST:RISK_API_PORT (127.0.0.1:8400)."""
from __future__ import annotations

import copy
import sys
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from risk_api.app import create_app
from risk_api.config import ConfigError, Settings
from risk_api.db import SchemaVersionError
from risk_api.rules import RulesConfigError


def logging_config() -> dict[str, Any]:
    """uvicorn's logging plus number masking on every handler, and our own logger."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"mask": {"()": "risk_api.masking.MaskingLogFilter"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["mask"]
    config["loggers"]["risk_api"] = {"handlers": ["default"], "level": "INFO",
                                     "propagate": False}
    return config


def main() -> int:
    try:
        settings = Settings.from_env()
        app = create_app(settings)
    except (ConfigError, RulesConfigError, SchemaVersionError) as exc:
        print(f"risk_api: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=logging_config())
    return 0


if __name__ == "__main__":
    sys.exit(main())
