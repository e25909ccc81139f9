"""Calls reach every phone gateway: the shipped dialplan (ivr_config/asterisk/extensions.conf)
dials AudioSocket addresses, and in both deployments every gateway listens on a dialled address,
every dialled address has a gateway, and gateways on one address share it by SO_REUSEPORT (same
network namespace, same user, AUDIOSOCKET_SHARED=1) — the way `make run SCALE=n` runs them."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import pytest

from stack.services import ROOT, Ports
from tests.deploy.topology import TOPOLOGY, k8s_container, resolved_compose

DIALPLAN = ROOT / "ivr_config" / "asterisk" / "extensions.conf"
AUDIOSOCKET = re.compile(r"AudioSocket\([^,()]+,([^:,()]+):(\d+)\)")
Address = tuple[str, int]


def dialled() -> set[Address]:
    """The AudioSocket() addresses of the dialplan's lines (comments left out)."""
    lines = (line.split(";", 1)[0] for line in DIALPLAN.read_text(encoding="utf-8").splitlines())
    return {(host, int(port)) for line in lines for host, port in AUDIOSOCKET.findall(line)}


def listening(env: dict[str, Any]) -> Address:
    return str(env["AUDIOSOCKET_HOST"]), int(env["AUDIOSOCKET_PORT"])


@pytest.fixture(scope="module")
def compose_gateways() -> dict[str, dict[str, Any]]:
    services = resolved_compose()["services"]
    return {name: services[name] for name in TOPOLOGY["phone_gateway"][0]}


def k8s_gateways() -> dict[str, tuple[str, dict[str, Any]]]:
    """container -> (its workload, the container)."""
    return {container: (workload, k8s_container(workload, container))
            for workload, container in TOPOLOGY["phone_gateway"][1]}


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}


def test_the_dialplan_dials_the_stacks_audiosocket_address() -> None:
    assert dialled() == {("127.0.0.1", Ports().audiosocket)}  # inbound, back from the queue, outbound


def test_every_compose_gateway_listens_where_the_dialplan_dials_and_every_dialled_address_has_one(
        compose_gateways: dict[str, dict[str, Any]]) -> None:
    addresses = {name: listening(service["environment"]) for name, service in compose_gateways.items()}
    for name, service in compose_gateways.items():
        # The dialplan's 127.0.0.1 is Asterisk's loopback: a gateway must run in its namespace.
        assert service.get("network_mode") == "service:asterisk", name
        assert addresses[name] in dialled(), f"{name} listens on {addresses[name]}, which no call reaches"
    assert dialled() <= set(addresses.values()), "the dialplan dials an address no gateway listens on"


def test_every_k8s_gateway_listens_where_the_dialplan_dials_and_every_dialled_address_has_one() -> None:
    gateways = k8s_gateways()
    assert {workload for workload, _ in gateways.values()} == {"telephony"}
    k8s_container("telephony", "asterisk")  # in Asterisk's pod: the dialplan's 127.0.0.1 is theirs too
    addresses = {name: listening(container_env(container)) for name, (_, container) in gateways.items()}
    for name, address in addresses.items():
        assert address in dialled(), f"{name} listens on {address}, which no call reaches"
    assert dialled() <= set(addresses.values()), "the dialplan dials an address no gateway listens on"


def sharing(addresses: dict[str, Address]) -> list[list[str]]:
    """Groups of gateways listening on one address."""
    groups: dict[Address, list[str]] = defaultdict(list)
    for name, address in addresses.items():
        groups[address].append(name)
    return [names for names in groups.values() if len(names) > 1]


def test_compose_gateways_on_one_address_share_it_by_so_reuseport(compose_gateways: dict[str, dict[str, Any]]) -> None:
    groups = sharing({name: listening(service["environment"]) for name, service in compose_gateways.items()})
    for names in groups:
        services = [compose_gateways[name] for name in names]
        assert all(service["environment"].get("AUDIOSOCKET_SHARED") == "1" for service in services), names
        # SO_REUSEPORT lets in only sockets of the same user: the same image, no other user.
        assert len({(service["image"], service.get("user")) for service in services}) == 1, names
    assert groups or len(compose_gateways) == len(dialled())  # several gateways, one address each otherwise


def test_k8s_gateways_on_one_address_share_it_by_so_reuseport() -> None:
    gateways = k8s_gateways()
    groups = sharing({name: listening(container_env(container)) for name, (_, container) in gateways.items()})
    for names in groups:
        containers = [gateways[name][1] for name in names]
        assert all(container_env(container).get("AUDIOSOCKET_SHARED") == "1" for container in containers), names
        users = {container.get("securityContext", {}).get("runAsUser") for container in containers}
        assert len(users) == 1 and None not in users, names
    assert groups or len(gateways) == len(dialled())
