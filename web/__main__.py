"""`python -m web`: serve the chat widget demo page and the agent desk."""

from __future__ import annotations

import sys

import uvicorn

from ivr_config.loader import ConfigError
from risk_api.masking import install_log_masking
from web.app import create_app
from web.config import Settings


def main() -> int:
    try:
        settings = Settings.from_environment()
    except RuntimeError as error:  # trust.env_secrets.SecretError: missing or development secret
        print(f"web server not started: {error}", file=sys.stderr)
        return 2
    install_log_masking()  # a chat text or a login name in an error log stays masked
    try:
        app = create_app(settings)
    except ConfigError as error:  # the agents' accounts file
        print(f"web server not started: {error}", file=sys.stderr)
        return 2
    # proxy_headers off: uvicorn would otherwise believe X-Forwarded-* from any loopback client;
    # the app decides itself, from WEB_BEHIND_PROXY, whether to believe them.
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", proxy_headers=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
