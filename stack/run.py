"""`make run`: start the whole stack on localhost, one log per service, Ctrl-C stops it all."""

from __future__ import annotations

import os
import signal
import sys
import time

from stack.services import ROOT, Ports, phone_gateway, stack, started

LOG_DIR = ROOT / "var" / "log"


def main() -> int:
    token = os.environ.get("RISK_API_TOKEN")
    if not token:
        print("RISK_API_TOKEN is not set (the Makefile sets a development value)", file=sys.stderr)
        return 2
    ports = Ports.from_environment()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"starting risk_api, actions, rasa, web, phone_gateway (logs: {LOG_DIR.relative_to(ROOT)}/)", flush=True)
    try:
        with started(stack(ports, token) + [phone_gateway(ports, token)], LOG_DIR) as running:
            print(f"ready: web chat http://127.0.0.1:{ports.web}/, agent desk http://127.0.0.1:{ports.web}/desk, "
                  f"chat REST http://127.0.0.1:{ports.rasa}/webhooks/rest/webhook, "
                  f"risk API http://127.0.0.1:{ports.risk_api}/docs, "
                  f"phone (AudioSocket) 127.0.0.1:{ports.audiosocket} — Ctrl-C stops", flush=True)
            while not running.exited():
                time.sleep(1)
            print(f"stopped: {', '.join(running.exited())} exited — see {LOG_DIR}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        return 0
    except RuntimeError as error:
        print(f"stack failed to start: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
