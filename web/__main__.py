"""`python -m web`: serve the chat widget demo page and the agent desk."""

from __future__ import annotations

import logging
import sys

import uvicorn

from ivr_config.environment import SettingsError
from ivr_config.loader import ConfigError
from trust.log_format import configure_logging
from web.app import create_app
from web.config import Settings


def main() -> int:
    try:
        # A chat text or a login name in an error log stays masked (LOG_FORMAT: text or json).
        configure_logging("web", level=logging.WARNING)
        settings = Settings.from_env()
    except SettingsError as error:  # a secret, LOG_FORMAT or a number
        print(f"web server not started: {error}", file=sys.stderr)
        return 2
    try:
        app = create_app(settings)
    except ConfigError as error:  # the agents' accounts file
        print(f"web server not started: {error}", file=sys.stderr)
        return 2
    # proxy_headers off: uvicorn would otherwise believe X-Forwarded-* from any loopback client;
    # the app decides itself, from WEB_BEHIND_PROXY, whether to believe them.
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", log_config=None,
                proxy_headers=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
