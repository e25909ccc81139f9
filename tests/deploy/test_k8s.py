"""deploy/k8s/: valid against the Kubernetes schemas (kubernetes-validate), the same topology and
ports as stack/services.py and the compose file, probes and resources everywhere, secrets referenced."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.deploy.topology import (
    K8S_DIR,
    SECRET_NAMES,
    TOPOLOGY,
    check_database_url,
    expected_ports,
    k8s_container,
    k8s_documents,
    module_of,
    option,
    path_port,
    port_setting,
    stack_services,
)

MANIFESTS = sorted(K8S_DIR.glob("*.yaml"))


def containers() -> list[tuple[str, dict[str, Any]]]:
    return [(document["metadata"]["name"], container) for document in k8s_documents()
            if document["kind"] in {"Deployment", "StatefulSet"}
            for container in document["spec"]["template"]["spec"]["containers"]]


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda path: path.name)
def test_manifest_passes_kubernetes_validate(manifest: Path) -> None:
    validator = Path(sys.executable).with_name("kubernetes-validate")
    assert validator.exists(), "kubernetes-validate is not installed: requirements/services.txt pins it"
    result = subprocess.run([str(validator), "--strict", "--quiet", str(manifest)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def probe_port(probe: dict[str, Any]) -> int:
    return int(probe["httpGet"]["port"]) if "httpGet" in probe else path_port(probe["exec"]["command"][-1])


def test_containers_run_the_stack_commands_on_its_ports() -> None:
    for component, service in stack_services().items():
        for replica, (workload, name) in enumerate(TOPOLOGY[component][1]):
            container = k8s_container(workload, name)
            assert module_of(container["command"]) == module_of(service.command), name
            found = {item["name"]: item["value"] for item in container.get("env", [])
                     if port_setting(item["name"]) and "value" in item}
            if (port := option(container["command"], "--port")) is not None:
                found["--port"] = port
            found["health"] = str(probe_port(container["readinessProbe"]))
            wanted = expected_ports(service, replica, component)
            assert {key: found.get(key) for key in wanted} == wanted, name


def test_rasa_and_actions_run_replicated_and_rasa_has_a_disruption_budget() -> None:
    workloads = {(d["kind"], d["metadata"]["name"]): d for d in k8s_documents()}
    for name in ("rasa", "actions"):
        assert workloads[("Deployment", name)]["spec"]["replicas"] == len(TOPOLOGY[name][0])
        assert workloads[("Service", name)]["spec"]["ports"][0]["port"] == int(
            option(stack_services()[name].command, "--port") or 0)
    assert workloads[("PodDisruptionBudget", "rasa")]["spec"]["selector"]["matchLabels"] == {"app": "rasa"}


def test_every_container_has_probes_and_resources() -> None:
    for workload, container in containers():
        assert "readinessProbe" in container and "livenessProbe" in container, f"{workload}/{container['name']}"
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(bound, {})), f"{workload}/{container['name']}: {bound}"


def probe_path(probe: dict[str, Any]) -> str:
    return probe["httpGet"]["path"] if "httpGet" in probe else urlparse(probe["exec"]["command"][-1]).path


def test_a_gateway_takes_calls_once_its_recogniser_has_loaded_and_lives_on_its_health() -> None:
    for workload, container in TOPOLOGY["phone_gateway"][1]:
        deployed = k8s_container(workload, container)
        assert probe_path(deployed["readinessProbe"]) == "/ready", container
        assert probe_path(deployed["livenessProbe"]) == probe_path(deployed["startupProbe"]) == "/health", container


def test_secrets_are_referenced_never_embedded() -> None:
    assert not [d for d in k8s_documents() if d["kind"] == "Secret"], "a Secret object in the manifests"
    for document in k8s_documents():
        if document["kind"] == "ConfigMap":
            assert not set(document.get("data", {})) & SECRET_NAMES, document["metadata"]["name"]
    for workload, container in containers():
        for item in container.get("env", []):
            value = str(item.get("value", ""))
            if item["name"] in SECRET_NAMES:
                assert "secretKeyRef" in item.get("valueFrom", {}) or re.fullmatch(r"\$\([A-Z_]+\)", value), \
                    f"{workload}/{container['name']}: {item['name']}"
            if "://" in value and "@" in value:
                check_database_url(f"{workload}/{container['name']}", item["name"], value, container["name"])
