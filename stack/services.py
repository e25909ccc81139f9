"""The processes of the stack, their commands, ports and health checks.

`make run` and the end-to-end tests start the same definitions, so what the tests exercise is
what a developer runs. Ports and secrets come from the environment (the Makefile supplies
development defaults).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path

from ivr_config import environment
from ivr_config.environment import port_number
from trust.env_secrets import require_secret

ROOT = Path(__file__).resolve().parent.parent
RASA_VENV = ROOT / ".venv"
SERVICES_VENV = ROOT / ".venv-services"
MODELS_DIR = ROOT / "bot" / "models"
DEFAULT_TRACKER_DB = ROOT / "var" / "rasa" / "tracker.sqlite3"


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    health_url: str
    cwd: Path = ROOT
    env: Mapping[str, str] = field(default_factory=dict)
    start_timeout_seconds: float = 30.0
    # A service that speaks no HTTP (Redis) says it is ready through this instead of `health_url`.
    ready: Callable[[], bool] | None = None

    def start(self, log_dir: Path) -> subprocess.Popen[bytes]:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_file = (log_dir / f"{self.name}.log").open("ab")
        return subprocess.Popen(
            self.command, cwd=self.cwd, env={**os.environ, **self.env},
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=False,
        )

    def wait_healthy(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.start_timeout_seconds
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {process.returncode}")
            if self.ready() if self.ready else self._answers_health_check():
                return
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not healthy at {self.health_url} after {self.start_timeout_seconds:.0f}s")

    def _answers_health_check(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False


@dataclass
class Running:
    """The started processes by service name, and how long each took to become healthy."""

    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    start_seconds: dict[str, float] = field(default_factory=dict)

    def exited(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def cpu_seconds(self) -> dict[str, float]:
        """CPU each started service has used so far (user + system, with its waited-for children
        and its live ones, e.g. the gateway's Whisper workers), from /proc (Linux): what the
        benchmarks divide by the work done."""
        return family_cpu_seconds({name: process.pid for name, process in self.processes.items()})


# A stage of the start: one service, or several started together (n Rasa processes load their
# models in parallel) and all healthy before the next stage.
Stage = Service | tuple[Service, ...]


@contextmanager
def started(stages: Sequence[Stage], log_dir: Path) -> Iterator[Running]:
    """Start the stages in order, each healthy before the next; stop them all on exit.

    A service that fails to start raises RuntimeError with the end of its log.
    """
    running = Running()
    try:
        for stage in stages:
            group = stage if isinstance(stage, tuple) else (stage,)
            began = time.perf_counter()
            for service in group:
                running.processes[service.name] = service.start(log_dir)
            for service in group:
                try:
                    service.wait_healthy(running.processes[service.name])
                except RuntimeError as error:
                    log_tail = (log_dir / f"{service.name}.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{error}\n--- end of {service.name}.log ---\n{log_tail}") from None
                running.start_seconds[service.name] = time.perf_counter() - began
        yield running
    finally:
        for process in reversed(running.processes.values()):
            if process.poll() is None:
                process.terminate()
        for name, process in running.processes.items():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in 20 s: killing it")
                process.kill()


def free_port() -> int:
    """A loopback port nothing listens on right now (for tests and benchmarks)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Ports:
    rasa: int = 5005
    actions: int = 5055
    risk_api: int = 8400
    web: int = 8080
    audiosocket: int = 9092
    gateway_health: int = 9093
    outbound_health: int = 9094
    quality: int = 9095

    @classmethod
    def free(cls) -> Ports:
        return cls(rasa=free_port(), actions=free_port(), risk_api=free_port(), web=free_port(),
                   audiosocket=free_port(), gateway_health=free_port(), outbound_health=free_port(),
                   quality=free_port())

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Ports:
        return cls(
            rasa=port_number(env, "RASA_PORT", 5005),
            actions=port_number(env, "ACTION_SERVER_PORT", 5055),
            risk_api=port_number(env, "RISK_API_PORT", 8400),
            web=port_number(env, "WEB_PORT", 8080),
            audiosocket=port_number(env, "AUDIOSOCKET_PORT", 9092),
            gateway_health=port_number(env, "GATEWAY_HEALTH_PORT", 9093),
            outbound_health=port_number(env, "OUTBOUND_HEALTH_PORT", 9094),
            quality=port_number(env, "QUALITY_PORT", 9095),
        )


@dataclass(frozen=True)
class Secrets:
    """One credential per caller and purpose (docs/security.md says who holds which)."""

    risk_engine: str  # action server -> risk API
    risk_desk: str  # agent desk -> risk API
    risk_gateway: str  # phone gateway -> risk API (caller look-up only)
    risk_dialer: str  # reminder dialer -> risk API (look-up only)
    rasa_api: str  # Rasa's HTTP API (trackers, model): operators only
    rasa_gateway: str  # phone gateway -> Rasa's trusted channel
    rasa_dialer: str  # dialer -> Rasa's trusted channel
    rasa_desk: str  # web server -> Rasa's live-agent route (agents join and answer chats)
    action_server: str  # Rasa -> action server
    chat_session: str  # web server signs chat sessions, Rasa's public channels check them
    tracker_store: str  # encrypts conversations at rest
    outbound_number: str  # dialler: keys the digests of numbers in its queue (no number stored in clear)
    outbound_desk: str  # web server (agent desk) -> the dialler's campaign routes
    outbound_gateway: str  # phone gateway -> the dialler's outcome route (what each answered call came to)
    quality_api: str  # web server / operators -> the quality inspection service
    metrics: str  # the monitoring system -> every service's /metrics (Rasa itself has none)
    gateway_desk: str  # web server -> the phone gateways' queue route (a supervisor raises a waiting call)

    ENV_NAMES = {
        "risk_engine": "RISK_API_ENGINE_TOKEN", "risk_desk": "RISK_API_DESK_TOKEN",
        "risk_gateway": "RISK_API_GATEWAY_TOKEN", "risk_dialer": "RISK_API_DIALER_TOKEN",
        "rasa_api": "RASA_API_TOKEN", "rasa_gateway": "RASA_GATEWAY_TOKEN",
        "rasa_dialer": "RASA_DIALER_TOKEN", "rasa_desk": "RASA_DESK_TOKEN", "action_server": "ACTION_SERVER_TOKEN",
        "chat_session": "CHAT_SESSION_SECRET", "tracker_store": "TRACKER_STORE_KEY",
        "outbound_number": "OUTBOUND_NUMBER_KEY", "outbound_desk": "OUTBOUND_DESK_TOKEN",
        "outbound_gateway": "OUTBOUND_GATEWAY_TOKEN", "quality_api": "QUALITY_API_TOKEN",
        "metrics": "METRICS_TOKEN", "gateway_desk": "GATEWAY_DESK_TOKEN",
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Secrets:
        """Every secret from the environment (development values only with IVR_ENV=development)."""
        return cls(**{name: require_secret(cls.ENV_NAMES[name], env) for name in cls.names()})

    @classmethod
    def generated(cls) -> Secrets:
        """Fresh random secrets, for tests and benchmarks."""
        return cls(**{name: secrets.token_hex(24) for name in cls.names()})  # never starts with "-"

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def env(self, *names: str) -> dict[str, str]:
        return {self.ENV_NAMES[name]: getattr(self, name) for name in names}


def chat_origins(ports: Ports) -> str:
    """Origins allowed to embed the widget: CHAT_ALLOWED_ORIGINS, else the stack's own web server."""
    return environment.text(os.environ, "CHAT_ALLOWED_ORIGINS") or f"http://127.0.0.1:{ports.web} http://localhost:{ports.web}"


def latest_model() -> Path:
    models = sorted(MODELS_DIR.glob("*.tar.gz"), key=lambda path: path.stat().st_mtime)
    if not models:
        raise RuntimeError("no trained model in bot/models: run `make train`")
    return models[-1]


def quality_events_env(tracker_db: Path) -> dict[str, str]:
    """A test's or benchmark's stack keeps its conversation events beside its tracker store."""
    if tracker_db == DEFAULT_TRACKER_DB:
        return {}
    return {"QUALITY_EVENTS_URL": f"sqlite:///{tracker_db.with_name('quality-events.sqlite3')}"}


# One thread per numeric library in Rasa and the action servers (the same in deploy/Dockerfile): a
# turn's numpy work (sentence embedding, the classifier) is a few milliseconds, and BLAS threads that
# spin while waiting for work starve the other processes on the machine. Measured on 2 cores with 2
# Rasa processes: 7.5 turns/s and 218 ms of Rasa CPU a turn with the libraries' own threads, 24.8
# and 49 ms with one (docs/benchmarks.md).
ONE_MATH_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def action_server(name: str, port: int, ports: Ports, keys: Secrets) -> Service:
    """An action server on `port` (the scaled topology runs several behind the balancer)."""
    return Service(
        name,
        [str(SERVICES_VENV / "bin" / "python"), "-m", "rasa_sdk", "--actions", "bot.actions", "--port", str(port)],
        f"http://127.0.0.1:{port}/health",
        env={"RISK_API_URL": f"http://127.0.0.1:{ports.risk_api}", "RISK_API_TOKEN": keys.risk_engine,
             "SANIC_HOST": "127.0.0.1", **ONE_MATH_THREAD, **keys.env("action_server", "metrics")},
    )


def rasa_server(name: str, host: str, port: int, ports: Ports, keys: Secrets, store_env: Mapping[str, str],
                endpoints: str = "endpoints.yml") -> Service:
    """A Rasa process on `host:port` calling the action server(s) at `ports.actions`; `endpoints`
    (in bot/) names its tracker and lock stores, `store_env` their settings."""
    return Service(
        name,
        # The launcher adds --auth-token and --cors from the environment (not visible in ps).
        [str(RASA_VENV / "bin" / "python"), "-m", "bot.rasa_launcher", "run", "--enable-api",
         "-i", host, "--port", str(port), "--model", str(latest_model()),
         "--endpoints", endpoints, "--credentials", "credentials.yml"],
        f"http://127.0.0.1:{port}/",  # answers once the model is loaded (before_server_start)
        cwd=ROOT / "bot",
        # PYTHONPATH: bot.rasa_launcher, and the model's custom component bot.components.
        env={"ACTION_SERVER_URL": f"http://127.0.0.1:{ports.actions}/webhook", "PYTHONPATH": str(ROOT),
             "CHAT_ALLOWED_ORIGINS": chat_origins(ports), **ONE_MATH_THREAD, **store_env,
             **keys.env("rasa_api", "rasa_gateway", "rasa_dialer", "rasa_desk", "action_server",
                        "chat_session", "tracker_store")},
        start_timeout_seconds=240,
    )


def stack(ports: Ports, keys: Secrets, risk_api_env: Mapping[str, str] | None = None,
          tracker_db: Path = DEFAULT_TRACKER_DB, web_env: Mapping[str, str] | None = None) -> list[Service]:
    """The services in start order: risk API, action server, Rasa, web chat and agent desk.

    Each service gets only the secrets it needs, each client its own role's token in
    `RISK_API_TOKEN`. `risk_api_env` passes the risk API's own settings (database URL, SMS
    outbox path); `tracker_db` is Rasa's SQLite tracker store, so a conversation survives a
    Rasa restart; `web_env` the web server's (agent desk credentials, else taken from the
    environment).
    """
    tracker_db.parent.mkdir(parents=True, exist_ok=True)
    risk_url = f"http://127.0.0.1:{ports.risk_api}"
    rasa_url = f"http://127.0.0.1:{ports.rasa}"
    origins = chat_origins(ports)
    risk_env = {"RISK_API_HOST": "127.0.0.1", "RISK_API_PORT": str(ports.risk_api),
                **keys.env("risk_engine", "risk_desk", "risk_gateway", "risk_dialer", "metrics"),
                **(risk_api_env or {})}
    python = str(SERVICES_VENV / "bin" / "python")
    return [
        Service(
            "risk_api",
            [python, "-m", "risk_api"],
            f"{risk_url}/health",
            env=risk_env,
            start_timeout_seconds=60,
        ),
        action_server("actions", ports.actions, ports, keys),
        rasa_server("rasa", environment.text(os.environ, "RASA_HOST", "127.0.0.1"), ports.rasa, ports, keys,
                    {"RASA_TRACKER_DB": str(tracker_db), **quality_events_env(tracker_db)}),
        Service(
            "web",
            [python, "-m", "web"],
            f"http://127.0.0.1:{ports.web}/health",
            env={"WEB_HOST": "127.0.0.1", "WEB_PORT": str(ports.web), "RASA_URL": rasa_url,
                 "RISK_API_URL": risk_url, "RISK_API_TOKEN": keys.risk_desk, "CHAT_ALLOWED_ORIGINS": origins,
                 "AGENT_ACCOUNTS_FILE": environment.text(os.environ, "AGENT_ACCOUNTS_FILE"),
                 "OUTBOUND_URL": f"http://127.0.0.1:{ports.outbound_health}",
                 "QUALITY_URL": f"http://127.0.0.1:{ports.quality}",
                 "GATEWAY_URLS": f"http://127.0.0.1:{ports.gateway_health}",
                 **keys.env("chat_session", "rasa_desk", "outbound_desk", "quality_api", "metrics", "gateway_desk"),
                 **(web_env or {})},
        ),
    ]


def phone_gateway(ports: Ports, keys: Secrets, name: str = "phone_gateway", health_port: int | None = None,
                  share_port: bool = False) -> Service:
    """Asterisk's AudioSocket calls into the voice pipeline (AMI from ASTERISK_AMI_* when set).
    `share_port`: one of several gateway processes on the one AudioSocket address (SO_REUSEPORT),
    each with its own health port."""
    health = health_port or ports.gateway_health
    return Service(
        name,
        [str(SERVICES_VENV / "bin" / "python"), "-m", "telephony.gateway"],
        f"http://127.0.0.1:{health}/health",
        env={"AUDIOSOCKET_HOST": environment.text(os.environ, "AUDIOSOCKET_HOST", "127.0.0.1"),
             "AUDIOSOCKET_PORT": str(ports.audiosocket), "AUDIOSOCKET_SHARED": "1" if share_port else "0",
             "GATEWAY_HEALTH_PORT": str(health), "RASA_URL": f"http://127.0.0.1:{ports.rasa}",
             "RISK_API_URL": f"http://127.0.0.1:{ports.risk_api}", "RISK_API_TOKEN": keys.risk_gateway,
             "RASA_CHANNEL_TOKEN": keys.rasa_gateway, "PYTHONPATH": str(ROOT),
             "OUTBOUND_URL": f"http://127.0.0.1:{ports.outbound_health}",
             **keys.env("outbound_gateway", "metrics", "gateway_desk")},
    )


def outbound_dialer(ports: Ports, keys: Secrets) -> Service:
    """Campaign dialler (outbound/): plans campaigns, enforces the collection rules, dials over
    AMI when ASTERISK_AMI_SECRET and OUTBOUND_DIAL_CHANNEL are set (otherwise dials nothing, and
    says so)."""
    return Service(
        "outbound",
        [str(SERVICES_VENV / "bin" / "python"), "-m", "outbound"],
        f"http://127.0.0.1:{ports.outbound_health}/health",
        env={"RISK_API_URL": f"http://127.0.0.1:{ports.risk_api}", "RISK_API_TOKEN": keys.risk_dialer,
             "OUTBOUND_HEALTH_PORT": str(ports.outbound_health), "PYTHONPATH": str(ROOT),
             **keys.env("outbound_number", "outbound_desk", "outbound_gateway", "metrics")},
        start_timeout_seconds=60,
    )


def quality_inspection(ports: Ports, keys: Secrets, tracker_db: Path = DEFAULT_TRACKER_DB) -> Service:
    """Quality inspection (quality/): reads the conversations' event stream (Rasa's broker and the
    phone gateway write it), applies ivr_config/quality/ rules live, serves alerts, scores and figures.
    `tracker_db`: the Rasa tracker store of the stack it inspects (a test's keeps its events beside it)."""
    return Service(
        "quality",
        [str(SERVICES_VENV / "bin" / "python"), "-m", "quality"],
        f"http://127.0.0.1:{ports.quality}/health",
        env={"QUALITY_PORT": str(ports.quality), "PYTHONPATH": str(ROOT), **keys.env("quality_api", "metrics"),
             **quality_events_env(tracker_db)},
        start_timeout_seconds=60,
    )


def _process_table() -> tuple[dict[int, list[int]], dict[int, int], dict[int, str]]:
    """Every process's children, CPU ticks (utime, stime, cutime, cstime) and command name, from /proc."""
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    names: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        pid = int(stat.parent.name)
        name, fields = text[text.index("(") + 1:text.rindex(")")], text.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(pid)
        ticks[pid] = sum(int(value) for value in fields[11:15])
        names[pid] = name
    return children, ticks, names


def _family_seconds(root: int, children: dict[int, list[int]], ticks: dict[int, int]) -> float:
    family, total = [root], 0
    while family:
        pid = family.pop()
        total += ticks.get(pid, 0)
        family += children.get(pid, [])
    return total / os.sysconf("SC_CLK_TCK")


def family_cpu_seconds(roots: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds each named process has used with its descendants, live and waited-for (Linux)."""
    children, ticks, _ = _process_table()
    return {name: _family_seconds(root, children, ticks) for name, root in roots.items()}


def postgres_cpu_seconds() -> float:
    """CPU the local PostgreSQL servers (each postmaster with its backends) have used so far: a
    shared store's cost, which the started services' own CPU does not hold."""
    children, ticks, names = _process_table()
    parents = {child: parent for parent, kids in children.items() for child in kids}
    return sum(_family_seconds(pid, children, ticks) for pid, name in names.items()
               if name == "postgres" and names.get(parents.get(pid, 0)) != "postgres")
