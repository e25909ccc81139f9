"""deploy/docker-compose.yml: valid for docker-compose, the whole stack on stack/services.py's ports,
health checks and limits everywhere, secrets only from the environment; deploy/haproxy.cfg."""

from __future__ import annotations

import re
import subprocess
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from tests.deploy.topology import (
    COMPOSE_FILE,
    DEPLOY,
    INFRASTRUCTURE,
    REQUIRED,
    SECRET_NAMES,
    TOPOLOGY,
    check_database_url,
    compose_config,
    expected_ports,
    module_of,
    option,
    path_port,
    port_setting,
    required_variables,
    resolved_compose,
    stack_services,
    tool,
)


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    return resolved_compose()


def test_a_missing_secret_stops_compose_with_its_name() -> None:
    env = {"PATH": "/usr/bin:/bin", **{name: "x" for name in required_variables() - {"TRACKER_STORE_KEY"}}}
    result = compose_config(env)
    assert result.returncode != 0
    assert "set TRACKER_STORE_KEY" in result.stderr


def test_every_process_of_the_stack_and_the_infrastructure_is_a_service(resolved: dict[str, Any]) -> None:
    assert set(stack_services()) == set(TOPOLOGY), "a stack service without a place in the deployment"
    expected = {name for names, _ in TOPOLOGY.values() for name in names} | INFRASTRUCTURE
    assert set(resolved["services"]) == expected


def test_services_run_the_stack_commands_on_its_ports(resolved: dict[str, Any]) -> None:
    for component, service in stack_services().items():
        for replica, name in enumerate(TOPOLOGY[component][0]):
            deployed = resolved["services"][name]
            assert module_of(deployed["command"]) == module_of(service.command), name
            found = {key: str(value) for key, value in deployed["environment"].items() if port_setting(key)}
            if (port := option(deployed["command"], "--port")) is not None:
                found["--port"] = port
            found["health"] = str(path_port(deployed["healthcheck"]["test"][-1]))
            wanted = expected_ports(service, replica, component)
            assert {key: found.get(key) for key in wanted} == wanted, name


def test_every_service_has_a_health_check_and_limits(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        assert service.get("healthcheck", {}).get("test"), f"{name}: no health check"
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert limits.get("cpus") and limits.get("memory"), f"{name}: no cpu/memory limits"


def test_a_gateway_is_healthy_once_its_recogniser_has_loaded(resolved: dict[str, Any]) -> None:
    """Compose's health check is what `depends_on: service_healthy` waits for: the gateway's `/ready`."""
    for name in TOPOLOGY["phone_gateway"][0]:
        assert urlparse(resolved["services"][name]["healthcheck"]["test"][-1]).path == "/ready", name


def test_secrets_come_only_from_the_environment() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if key in SECRET_NAMES:
                assert REQUIRED.fullmatch(str(value)), f"{name}: {key} is not ${{VAR:?…}}"
            if "://" in str(value) and "@" in str(value):  # a URL with credentials
                assert "${POSTGRES_" in str(value), f"{name}: {key} holds a literal password"
                check_database_url(name, key, str(value), name)
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            assert "dev-only-" not in path.read_text(), f"{path}: a development secret"


def test_the_balancer_fronts_every_rasa_and_action_server_on_the_stack_ports() -> None:
    services = stack_services()
    config = (DEPLOY / "haproxy.cfg").read_text()
    servers = dict(re.findall(r"^\s*server (\S+) (\S+)$", config, flags=re.MULTILINE))
    for component in ("rasa", "actions"):
        port = option(services[component].command, "--port")
        for name in TOPOLOGY[component][0]:
            assert servers.pop(name) == f"{name}:{port}"
        assert f"bind :{port}" in config, f"the balancer does not listen on {component}'s port {port}"
    assert not servers, f"servers that are no compose service: {servers}"


def test_haproxy_accepts_the_config_and_logs_no_query_string() -> None:
    result = subprocess.run([tool("haproxy"), "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    log_formats = re.findall(r"^\s*log-format (.+)$", (DEPLOY / "haproxy.cfg").read_text(), flags=re.MULTILINE)
    assert log_formats, "no explicit log-format: HAProxy's httplog logs the full request line"
    for log_format in log_formats:
        # %r/%HU: the request line / URI with its query string; %HQ: the query string.
        assert not re.search(r"%(\{[^}]*\})?(r|HU|HQ)\b", log_format), log_format
