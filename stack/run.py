"""`make run`: start the whole stack on localhost, one log per service, Ctrl-C stops it all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from stack.services import ROOT, Ports, stack

LOG_DIR = ROOT / "var" / "log"


def main() -> int:
    token = os.environ.get("RISK_API_TOKEN")
    if not token:
        print("RISK_API_TOKEN is not set (the Makefile sets a development value)", file=sys.stderr)
        return 2
    ports = Ports.from_environment()
    running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def stop(*_: object) -> None:
        for _, process in reversed(running):
            if process.poll() is None:
                process.terminate()
        for name, process in running:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in 15 s: killing it", file=sys.stderr)
                process.kill()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for service in stack(ports, token):
            print(f"starting {service.name} (log: var/log/{service.name}.log)", flush=True)
            process = service.start(LOG_DIR)
            running.append((service.name, process))
            service.wait_healthy(process)
        print(f"ready: chat REST http://127.0.0.1:{ports.rasa}/webhooks/rest/webhook, "
              f"risk API http://127.0.0.1:{ports.risk_api}/docs — Ctrl-C stops", flush=True)
        while all(process.poll() is None for _, process in running):
            time.sleep(1)
        dead = [name for name, process in running if process.poll() is not None]
        print(f"stopped: {', '.join(dead)} exited — see var/log/", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except RuntimeError as error:
        print(f"stack failed to start: {error}", file=sys.stderr)
        return 1
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
