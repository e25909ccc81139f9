"""The deployment gives Rasa everything bot/endpoints.scaled.yml asks for (the scaled topology's
endpoints, shared with `make run SCALE=n`): Rasa 3.6 reads it with the compose file's own settings
into the protected tracker store on the `postgres` service and the Redis lock store on `redis`."""

from __future__ import annotations

import json
import re
import subprocess

from stack.scaled import LOCK_LIFETIME_SECONDS
from stack.services import RASA_VENV, ROOT
from tests.deploy.topology import TOPOLOGY, k8s_container, k8s_documents, resolved_compose

ENDPOINTS = ROOT / "bot" / "endpoints.scaled.yml"
READ = """
import json
from rasa.core.utils import read_endpoints_from_path
endpoints = read_endpoints_from_path("endpoints.scaled.yml")
print(json.dumps({"tracker": {"type": endpoints.tracker_store.type, "url": endpoints.tracker_store.url,
                              **endpoints.tracker_store.kwargs},
                  "lock": {"type": endpoints.lock_store.type, "url": endpoints.lock_store.url,
                           **endpoints.lock_store.kwargs}}))
"""


def endpoint_variables() -> set[str]:
    return set(re.findall(r"\$\{([A-Z_0-9]+)\}", ENDPOINTS.read_text()))


def test_every_rasa_service_sets_what_the_endpoints_read() -> None:
    services = resolved_compose()["services"]
    for name in TOPOLOGY["rasa"][0]:
        environment = services[name]["environment"]
        assert endpoint_variables() <= set(environment), name
        assert environment["TICKET_LOCK_LIFETIME"] == str(LOCK_LIFETIME_SECONDS)
    config_map = next(d for d in k8s_documents() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "ivr-config")
    container = k8s_container("rasa", "rasa")
    assert endpoint_variables() <= set(config_map["data"]) | {item["name"] for item in container["env"]}
    assert config_map["data"]["TICKET_LOCK_LIFETIME"] == str(LOCK_LIFETIME_SECONDS)


def test_rasa_reads_the_compose_settings_into_postgres_and_redis_stores() -> None:
    environment = resolved_compose()["services"]["rasa-1"]["environment"]
    result = subprocess.run([str(RASA_VENV / "bin" / "python"), "-c", READ], cwd=ROOT / "bot",
                            env={"PATH": "/usr/bin:/bin", **{k: str(v) for k, v in environment.items()}},
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    read = json.loads(result.stdout.strip().splitlines()[-1])
    assert read["tracker"]["type"] == "bot.tracker_store.ProtectedSQLTrackerStore"
    tracker, lock = read["tracker"], read["lock"]
    assert (tracker["dialect"], tracker["url"], tracker["db"]) == ("postgresql", "postgres", "rasa")
    assert (tracker["username"], tracker["password"]) == ("rasa", "test-postgres_rasa_password")
    assert (lock["type"], lock["url"], lock["password"]) == ("bot.lock_store.AtomicRedisLockStore", "redis",
                                                          "test-redis_password")
