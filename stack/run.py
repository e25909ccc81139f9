"""`make run`: start the whole stack on localhost, one log per service, Ctrl-C stops it all.

`make run SCALE=n` (`--scale n`, n ≥ 2): the scaled topology of stack/scaled.py, every service's
data in its own PostgreSQL database as its own role (`ServiceDatabases`: the Makefile makes them as
deploy/postgres-init.sh does in a deployment), its locks in a Redis with REDIS_PASSWORD.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import time
from collections.abc import Sequence

from stack.scaled import ScaledPorts, ServiceDatabases, SharedStores, scaled_stack
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
    dialler = outbound_dialer(ports, keys)
    if scale < 2:
        core: list[Stage] = list(stack(ports, keys))
    else:
        databases = ServiceDatabases.from_env()
        writer = databases.quality_writer
        stores = SharedStores(databases.url("rasa"), require_secret("REDIS_PASSWORD"), writer["QUALITY_EVENTS_URL"])
        scaled = ScaledPorts.from_env(scale)
        gateway_urls = " ".join(f"http://127.0.0.1:{health}" for health in scaled.gateway_health)
        core = scaled_stack(ports, scaled, keys, stores, SCALED_RUN_DIR,
                            risk_api_env={"RISK_API_DATABASE_URL": databases.url("risk")},
                            web_env={"GATEWAY_URLS": gateway_urls})
        quality = _with_env(quality, databases.quality_inspection)
        dialler = _with_env(dialler, {"OUTBOUND_DATABASE_URL": databases.url("outbound"), **writer})
        # One gateway process per Rasa process, all on the AudioSocket port: the kernel spreads the calls.
        gateways = tuple(_with_env(phone_gateway(ports, keys, f"phone_gateway{i}", health, share_port=True), writer)
                         for i, health in enumerate(scaled.gateway_health, start=1))
    return [*core, gateways, dialler, quality]


def _with_env(service: Service, env: dict[str, str]) -> Service:
    return dataclasses.replace(service, env={**service.env, **env})


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
