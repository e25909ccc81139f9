"""`make run`: start the whole stack on localhost, one log per service, Ctrl-C stops it all."""

from __future__ import annotations

import signal
import sys
import time

from stack.services import ROOT, Ports, Secrets, outbound_dialer, phone_gateway, quality_inspection, stack, started
from trust.env_secrets import SecretError

LOG_DIR = ROOT / "var" / "log"


def main() -> int:
    try:
        keys = Secrets.from_environment()
    except SecretError as error:
        print(f"{error} (the Makefile sets development values)", file=sys.stderr)
        return 2
    ports = Ports.from_environment()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    services = stack(ports, keys) + [phone_gateway(ports, keys), outbound_dialer(ports, keys),
                                      quality_inspection(ports, keys)]
    print(f"starting {', '.join(service.name for service in services)} (logs: {LOG_DIR.relative_to(ROOT)}/)",
          flush=True)
    try:
        with started(services, LOG_DIR) as running:
            print(f"ready: web chat http://127.0.0.1:{ports.web}/, agent desk http://127.0.0.1:{ports.web}/desk, "
                  f"chat REST http://127.0.0.1:{ports.rasa}/webhooks/chat/webhook (session from "
                  f"POST http://127.0.0.1:{ports.web}/chat/session), "
                  f"risk API http://127.0.0.1:{ports.risk_api}/docs, "
                  f"phone (AudioSocket) 127.0.0.1:{ports.audiosocket}, "
                  f"quality inspection http://127.0.0.1:{ports.quality}/alerts — Ctrl-C stops", flush=True)
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
