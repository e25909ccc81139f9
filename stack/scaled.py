"""The scaled Rasa topology on one machine (`make run SCALE=n`, n ≥ 2), with every piece a
multi-machine deployment uses:

- PostgreSQL keeps the conversations: `bot/endpoints.scaled.yml` gives the protected tracker
  store (bot/tracker_store.py) Rasa's SQL settings with dialect postgresql. `make run SCALE=n`
  makes the deployment's databases on the local PostgreSQL (scripts/ensure_service_databases.sh
  runs deploy/postgres-init.sh): one role and database per service (`ServiceDatabases`), so the
  risk API, the dialler and the quality stream run on PostgreSQL too, each as its own role, and
  the stream's writers (Rasa, the gateways, the dialler) as the role that may only add events.
- Redis holds the conversations' locks (Rasa's ticket lock, each step one atomic script:
  bot/lock_store.py), so one turn of a conversation runs at a time whichever process serves it,
  and carries the widget's socket.io rooms between the processes (bot/socket_rooms.py, JSON
  only), so an agent's line written on one process reaches the customer's websocket open on
  another.
- n Rasa processes and n action servers behind HAProxy (stack/haproxy.cfg.template): health
  checks, round robin, no stickiness. The rest of the stack (web server, phone gateway) reaches
  Rasa at the balancer's address, which is `Ports.rasa`; operators reach each Rasa process's
  HTTP API on its own loopback port (the balancer forwards only the channels).

`make run` without SCALE keeps the single Rasa process with SQLite (stack/services.py).
"""

from __future__ import annotations

import os
import socket
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from ivr_config import environment
from ivr_config.environment import port_number
from stack.services import Ports, Secrets, Service, Stage, action_server, free_port, rasa_server, stack
from trust.env_secrets import require_secret

HAPROXY = "/usr/sbin/haproxy"  # Debian's haproxy and redis-server (the Makefile installs them)
REDIS_SERVER = "/usr/bin/redis-server"
HAPROXY_TEMPLATE = Path(__file__).with_name("haproxy.cfg.template")
SCALED_ENDPOINTS = "endpoints.scaled.yml"
# How long the ticket of a process killed mid-turn blocks its conversation (Rasa's default: 60 s).
# Longer than a turn takes even with a slow risk API (each of its calls gives up after 5 s); a turn
# still running when its ticket expires lets the conversation's next turn in.
LOCK_LIFETIME_SECONDS = 20
REDIS_PROBE_SECONDS = 2.0


@dataclass(frozen=True)
class ScaledPorts:
    """Each Rasa process's and action server's own loopback port, Redis's, and each phone gateway
    process's health port (the gateways share the one AudioSocket port)."""

    rasa_processes: tuple[int, ...]
    action_servers: tuple[int, ...]
    redis: int
    gateway_health: tuple[int, ...] = ()

    @classmethod
    def free(cls, scale: int) -> ScaledPorts:
        return cls(tuple(free_port() for _ in range(scale)), tuple(free_port() for _ in range(scale)), free_port(),
                   tuple(free_port() for _ in range(scale)))

    @classmethod
    def from_env(cls, scale: int, env: Mapping[str, str] = os.environ) -> ScaledPorts:
        """RASA_PROCESS_PORT_BASE + 1…n, ACTION_SERVER_PORT_BASE + 1…n, REDIS_PORT,
        GATEWAY_HEALTH_PORT_BASE + 1…n."""
        rasa_base = port_number(env, "RASA_PROCESS_PORT_BASE", 5100)
        actions_base = port_number(env, "ACTION_SERVER_PORT_BASE", 5150)
        gateway_base = port_number(env, "GATEWAY_HEALTH_PORT_BASE", 9200)
        return cls(tuple(rasa_base + i for i in range(1, scale + 1)),
                   tuple(actions_base + i for i in range(1, scale + 1)), port_number(env, "REDIS_PORT", 6380),
                   tuple(gateway_base + i for i in range(1, scale + 1)))


@dataclass(frozen=True)
class ServiceDatabases:
    """The databases deploy/postgres-init.sh makes on one PostgreSQL: a login role and a database
    per service, named with a prefix, each role's password from POSTGRES_<ROLE>_PASSWORD (the
    script's names). The quality stream's writers log in to the quality database as quality_writer."""

    host: str
    port: int
    prefix: str
    passwords: Mapping[str, str]

    ROLES = ("rasa", "risk", "outbound", "quality", "quality_writer")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ServiceDatabases:
        """IVR_DATABASE_HOST (127.0.0.1), IVR_DATABASE_PORT (5432), IVR_DATABASE_PREFIX and the passwords
        (secrets: no development value outside development)."""
        return cls(environment.text(env, "IVR_DATABASE_HOST", "127.0.0.1"), port_number(env, "IVR_DATABASE_PORT", 5432),
                   environment.text(env, "IVR_DATABASE_PREFIX", ""),
                   {role: require_secret(f"POSTGRES_{role.upper()}_PASSWORD", env) for role in cls.ROLES})

    def url(self, role: str, database: str | None = None) -> str:
        """`role`'s URL into `database` (its own by default)."""
        return URL.create("postgresql+psycopg2", username=self.prefix + role, password=self.passwords[role],
                          host=self.host, port=self.port,
                          database=self.prefix + (database or role)).render_as_string(hide_password=False)

    @property
    def quality_writer(self) -> dict[str, str]:
        """The stream's writers' setting: Rasa's event broker, the phone gateways, the dialler."""
        return {"QUALITY_EVENTS_URL": self.url("quality_writer", "quality")}

    @property
    def quality_inspection(self) -> dict[str, str]:
        """The inspection service's: it owns the stream's tables and lets the writers add to them."""
        return {"QUALITY_EVENTS_URL": self.url("quality"), "QUALITY_WRITER_ROLE": self.prefix + "quality_writer"}


@dataclass(frozen=True)
class SharedStores:
    """What the Rasa processes share: PostgreSQL (a SQLAlchemy URL) and Redis's password; where they
    write the quality stream (`quality_events_url`; the tracker's database when empty)."""

    tracker_db_url: str
    redis_password: str
    quality_events_url: str = ""

    def rasa_env(self, redis_port: int) -> dict[str, str]:
        """The settings `bot/endpoints.scaled.yml` reads (Rasa fills in its `${...}`)."""
        url = make_url(self.tracker_db_url)
        if url.get_backend_name() != "postgresql" or not url.database:
            raise ValueError("the scaled topology keeps conversations in PostgreSQL: "
                             "expected a postgresql://user:password@host:port/database URL")
        return {
            "RASA_TRACKER_DB_HOST": url.host or "127.0.0.1", "RASA_TRACKER_DB_PORT": str(url.port or 5432),
            "RASA_TRACKER_DB_NAME": url.database, "RASA_TRACKER_DB_USER": url.username or "",
            "RASA_TRACKER_DB_PASSWORD": url.password or "",
            "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis_port), "REDIS_PASSWORD": self.redis_password,
            "TICKET_LOCK_LIFETIME": str(LOCK_LIFETIME_SECONDS), **self.quality_env(),
        }

    def quality_env(self) -> dict[str, str]:
        """Where the Rasa processes (and, without a stream of its own, the inspection) find the stream."""
        return {"QUALITY_EVENTS_URL": self.quality_events_url or self.tracker_db_url}


def redis_answers(port: int, password: str) -> bool:
    """Redis on loopback `port` takes the password and answers PING."""
    try:
        return redis_replies(port, password, ("PING",)) == [b"+OK", b"+PONG"]
    except OSError:
        return False


def redis_replies(port: int, password: str, *commands: tuple[str, ...]) -> list[bytes]:
    """Redis's one-line replies (`+OK`, `:1`, `-ERR …`) to AUTH and then `commands`."""
    expected = len(commands) + 1
    replies = b""
    with socket.create_connection(("127.0.0.1", port), timeout=REDIS_PROBE_SECONDS) as connection:
        connection.sendall(b"".join(_resp(*command) for command in [("AUTH", password), *commands]))
        for _ in range(64):  # a few bytes a reply: never near this many reads
            if replies.count(b"\r\n") >= expected:
                break
            chunk = connection.recv(256)
            if not chunk:
                break
            replies += chunk
    return replies.split(b"\r\n")[:expected]


def _resp(*words: str) -> bytes:
    """A command in Redis's protocol (RESP arrays of bulk strings)."""
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _write_private(path: Path, text: str) -> Path:
    """A file only this user reads (Redis's holds its password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    os.chmod(path, 0o600)  # an older file keeps its mode through O_CREAT
    return path


def redis_server(port: int, password: str, run_dir: Path) -> Service:
    """The lock store: loopback only, with a password, nothing saved to disk (a lock outlives no
    restart: a restarted Redis starts with none, and no turn is running then)."""
    config = _write_private(run_dir / "redis.conf", "\n".join([
        "bind 127.0.0.1", f"port {port}", "protected-mode yes", f'requirepass "{password}"',
        'save ""', "appendonly no", f'dir "{run_dir}"', "daemonize no", ""]))
    return Service("redis", [REDIS_SERVER, str(config)], f"redis://127.0.0.1:{port}",
                   ready=lambda: redis_answers(port, password))


def load_balancer(ports: Ports, scaled: ScaledPorts, run_dir: Path) -> Service:
    """HAProxy: the channels of the Rasa processes on RASA_HOST:`ports.rasa`, the action servers
    on 127.0.0.1:`ports.actions`. Ready once a Rasa process passed its health check."""
    host = environment.text(os.environ, "RASA_HOST", "127.0.0.1")
    config = string.Template(HAPROXY_TEMPLATE.read_text(encoding="utf-8")).substitute(
        rasa_bind=f"{host}:{ports.rasa}", actions_port=ports.actions,
        rasa_servers="\n".join(f"    server rasa{i} 127.0.0.1:{port}"
                               for i, port in enumerate(scaled.rasa_processes, start=1)),
        action_servers="\n".join(f"    server actions{i} 127.0.0.1:{port}"
                                 for i, port in enumerate(scaled.action_servers, start=1)))
    config_path = _write_private(run_dir / "haproxy.cfg", config)
    return Service("balancer", [HAPROXY, "-db", "-f", str(config_path)], f"http://127.0.0.1:{ports.rasa}/")


def scaled_stack(ports: Ports, scaled: ScaledPorts, keys: Secrets, stores: SharedStores, run_dir: Path,
                 risk_api_env: Mapping[str, str] | None = None,
                 web_env: Mapping[str, str] | None = None) -> list[Stage]:
    """`stack()` with n Rasa processes and n action servers behind the balancer, sharing
    PostgreSQL and Redis; the Rasa processes load their model together."""
    single = {service.name: service for service in stack(ports, keys, risk_api_env, web_env=web_env)}
    rasa_env = stores.rasa_env(scaled.redis)
    return [
        redis_server(scaled.redis, stores.redis_password, run_dir),
        single["risk_api"],
        tuple(action_server(f"actions{i}", port, ports, keys)
              for i, port in enumerate(scaled.action_servers, start=1)),
        tuple(rasa_server(f"rasa{i}", "127.0.0.1", port, ports, keys, rasa_env, endpoints=SCALED_ENDPOINTS)
              for i, port in enumerate(scaled.rasa_processes, start=1)),
        load_balancer(ports, scaled, run_dir),
        single["web"],
    ]
