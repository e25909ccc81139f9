"""`python -m web`: serve the chat widget demo page and the agent desk."""

from __future__ import annotations

import sys

import uvicorn

from web.app import create_app
from web.config import Settings


def main() -> int:
    try:
        settings = Settings.from_environment()
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 2
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
