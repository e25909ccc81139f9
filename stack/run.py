"""`make run`: start the whole stack on localhost, one log per service, Ctrl-C stops it all.

`make run SCALE=n` (`--scale n`, n ≥ 2): the scaled topology of stack/scaled.py, its
conversations in the PostgreSQL database of RASA_TRACKER_DB_URL (the Makefile sets one up), its
locks in a Redis with REDIS_PASSWORD.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Sequence

from ivr_config import environment
from stack.scaled import ScaledPorts, SharedStores, scaled_stack
from stack.services import (
    ROOT,
    Ports,
    Secrets,
    Service,
    Stage,
    outbound_dialer,
    phone_gateway,
    quality_inspection,
    stack,
    started,
)
from trust.env_secrets import SecretError, require_secret

LOG_DIR = ROOT / "var" / "log"
SCALED_RUN_DIR = ROOT / "var" / "scaled"  # the balancer's and Redis's configuration files


def stages(ports: Ports, keys: Secrets, scale: int) -> list[Stage]:
    """The single-process stack, or with `scale` ≥ 2 the scaled one (and `scale` phone gateway
    processes); then the dialler and the quality inspection, which reach Rasa at `ports.rasa`
    either way."""
    quality = quality_inspection(ports, keys)
    gateways: Stage = phone_gateway(ports, keys)
    if scale < 2:
        core: list[Stage] = list(stack(ports, keys))
    else:
        url = environment.text(os.environ, "RASA_TRACKER_DB_URL")
        if not url:
            raise SecretError("RASA_TRACKER_DB_URL (the PostgreSQL database of the conversations) is not set")
        stores = SharedStores(url, require_secret("REDIS_PASSWORD"))
        scaled = ScaledPorts.from_env(scale)
        gateway_urls = " ".join(f"http://127.0.0.1:{health}" for health in scaled.gateway_health)
        core = scaled_stack(ports, scaled, keys, stores, SCALED_RUN_DIR, web_env={"GATEWAY_URLS": gateway_urls})
        quality = dataclasses.replace(quality, env={**quality.env, **stores.quality_env()})
        # One gateway process per Rasa process, all on the AudioSocket port: the kernel spreads the calls.
        gateways = tuple(phone_gateway(ports, keys, f"phone_gateway{i}", health, share_port=True)
                         for i, health in enumerate(scaled.gateway_health, start=1))
    return [*core, gateways, outbound_dialer(ports, keys), quality]


def _names(plan: Sequence[Stage]) -> str:
    services: list[Service] = [s for stage in plan for s in (stage if isinstance(stage, tuple) else (stage,))]
    return ", ".join(service.name for service in services)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=1, help="Rasa processes and action servers (2 or more: "
                        "PostgreSQL, Redis and HAProxy; 1: one process with SQLite)")
    args = parser.parse_args(argv)
    if args.scale < 1:
        parser.error("--scale must be 1 or more")
    try:
        ports = Ports.from_env()
        keys = Secrets.from_env()
        plan = stages(ports, keys, args.scale)
    except SecretError as error:
        print(f"{error} (the Makefile sets development values)", file=sys.stderr)
        return 2
    except ValueError as error:  # a setting (SettingsError) or the scaled topology's
        print(f"cannot start: {error}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"starting {_names(plan)} (logs: {LOG_DIR.relative_to(ROOT)}/)", flush=True)
    try:
        with started(plan, LOG_DIR) as running:
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
