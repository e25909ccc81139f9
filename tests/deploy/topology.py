"""The deployment files under test, read as data, and how their pieces map to stack/services.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from stack.services import ROOT, Ports, Secrets, Service, outbound_dialer, phone_gateway, quality_inspection, stack

DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
K8S_DIR = DEPLOY / "k8s"
# Each process of `make run` and where it runs: compose services; Kubernetes (workload, container).
# The gateways share Asterisk's loopback: all listen on the dialplan's AudioSocket address
# (SO_REUSEPORT), each answers health on the first one's port + GATEWAY_PORT_STEP × its rank.
TOPOLOGY: dict[str, tuple[list[str], list[tuple[str, str]]]] = {
    "risk_api": (["risk-api"], [("risk-api", "risk-api")]),
    "actions": (["actions-1", "actions-2"], [("actions", "actions")]),
    "rasa": (["rasa-1", "rasa-2"], [("rasa", "rasa")]),
    "web": (["web"], [("web", "web")]),
    "phone_gateway": (["gateway-1", "gateway-2"], [("telephony", "gateway-1"), ("telephony", "gateway-2")]),
    "outbound": (["outbound"], [("telephony", "outbound")]),
    "quality": (["quality"], [("quality", "quality")]),
}
GATEWAY_PORT_STEP = 100
# Infrastructure the compose file adds around the stack's processes.
INFRASTRUCTURE = {"postgres", "redis", "lb", "asterisk"}
# Secrets beyond stack/services.py's Secrets, and the names services read them under.
DEPLOY_SECRETS = {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "ASTERISK_AMI_SECRET", "WEB_SESSION_SECRET",
                  *(f"POSTGRES_{role}_PASSWORD" for role in ("RASA", "RISK", "OUTBOUND", "QUALITY", "QUALITY_WRITER"))}
SECRET_ALIASES = {"RISK_API_TOKEN", "RASA_CHANNEL_TOKEN", "RASA_TRACKER_DB_PASSWORD", "REDISCLI_AUTH"}
SECRET_NAMES = set(Secrets.ENV_NAMES.values()) | DEPLOY_SECRETS | SECRET_ALIASES
# A database URL's credentials: the role (deploy/postgres-init.sh) and the variable of its password.
DATABASE_CREDENTIALS = re.compile(r"://(\w+):(?:\$\{|\$\()POSTGRES_(\w+)_PASSWORD\b")


def database_role(setting: str, container: str) -> str:
    """The role a container logs in to PostgreSQL as for `setting`: each service its own; the quality
    stream's writers (all but the quality service) the writer role."""
    if setting == "QUALITY_EVENTS_URL":
        return "quality" if container == "quality" else "quality_writer"
    return {"RISK_API_DATABASE_URL": "risk", "OUTBOUND_DATABASE_URL": "outbound"}[setting]


def check_database_url(where: str, setting: str, url: str, container: str) -> None:
    found = DATABASE_CREDENTIALS.search(url)
    assert found, f"{where}: {setting} holds a literal password or none of the roles' variables"
    assert found.group(1) == database_role(setting, container), f"{where}: {setting} logs in as {found.group(1)}"
    assert found.group(2) == found.group(1).upper(), f"{where}: {setting} uses another role's password"


def stack_services() -> dict[str, Service]:
    """`make run`'s processes (stack/run.py), on the default ports."""
    ports, keys = Ports(), Secrets.generated()
    services = stack(ports, keys) + [phone_gateway(ports, keys), outbound_dialer(ports, keys),
                                     quality_inspection(ports, keys)]
    return {service.name: service for service in services}


def tool(name: str) -> str:
    """The command's path; a missing tool fails the test (never a silent skip)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `make test` installs it from Debian's packages "
                    "(scripts/ensure_debian_packages.sh, the Makefile's TEST_PACKAGES)")
    return path


REQUIRED = re.compile(r"\$\{([A-Z_0-9]+):\?[^}]+\}")


def required_variables() -> set[str]:
    return set(REQUIRED.findall(COMPOSE_FILE.read_text()))


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("docker-compose"), "-f", str(COMPOSE_FILE), "config"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def resolved_compose() -> dict[str, Any]:
    """The compose file as docker-compose resolves it, every required variable set to a test value."""
    env = {"PATH": "/usr/bin:/bin", **{name: f"test-{name.lower()}" for name in required_variables()},
           "AGENT_ACCOUNTS_FILE": "/etc/xiaoan/agents.yaml"}  # a bind mount: an absolute path
    result = compose_config(env)
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout))


def k8s_documents() -> list[dict[str, Any]]:
    return [document for path in sorted(K8S_DIR.glob("*.yaml"))
            for document in yaml.safe_load_all(path.read_text()) if document]


def k8s_container(workload: str, container: str) -> dict[str, Any]:
    for document in k8s_documents():
        if document["kind"] in {"Deployment", "StatefulSet"} and document["metadata"]["name"] == workload:
            for spec in document["spec"]["template"]["spec"]["containers"]:
                if spec["name"] == container:
                    return dict(spec)
    raise AssertionError(f"no container {container} in a workload {workload} under deploy/k8s/")


def module_of(command: list[str]) -> str:
    """The Python module a command runs (`python -m module …`)."""
    return command[command.index("-m") + 1]


def option(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def path_port(url: str) -> int:
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def port_setting(name: str) -> bool:
    """A setting of where a process listens: a port, or whether it shares it (AUDIOSOCKET_SHARED)."""
    return name.endswith(("_PORT", "_SHARED"))


def replica_service(component: str, service: Service, replica: int) -> Service:
    """The stack's process as its replica n (0-based) runs: the gateways as `make run SCALE=n`
    runs them (stack/run.py), on the one AudioSocket port, each with its own health port."""
    if component != "phone_gateway":
        return service
    ports = Ports()
    return phone_gateway(ports, Secrets.generated(), health_port=ports.gateway_health + GATEWAY_PORT_STEP * replica,
                         share_port=len(TOPOLOGY[component][0]) > 1)


def expected_ports(service: Service, replica: int, component: str) -> dict[str, str]:
    """Where the stack has `service` listen (its env's port settings, its --port, its health
    port), for replica n (0-based)."""
    service = replica_service(component, service, replica)
    wanted = {name: value for name, value in service.env.items() if port_setting(name)}
    if (port := option(service.command, "--port")) is not None:
        wanted["--port"] = port
    wanted["health"] = str(path_port(service.health_url))
    return wanted
