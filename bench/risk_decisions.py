"""Risk-decision throughput and latency, 1 and 16 concurrent clients, SQLite and PostgreSQL.

    python -m bench.risk_decisions [--pg-url URL] [OUTPUT.json]

Starts the service as a subprocess per backend on a fresh database, verifies one session per
client (L1 suffices for limit_increase) and posts decisions for a fixed time. Prints the JSON
result, or writes it to OUTPUT.json. PostgreSQL runs when --pg-url (or RISK_API_TEST_PG_URL)
is given. Total run time stays under a minute.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.scratch_db import create_scratch_database, drop_scratch_database
from risk_api import demo

CONCURRENCY = (1, 16)
MEASURE_S = 5.0
WARMUP_S = 1.0
STARTUP_TIMEOUT_S = 60
CLEAN_TAGS = ("normal", "vip", "due_soon", "auto_debit_off", "hardship", "do_not_call")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_service(database_url: str, workdir: Path, token: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    # The engine token by its own name: `make bench` exports the development one, which wins over RISK_API_TOKEN.
    env = {**os.environ, "RISK_API_ENGINE_TOKEN": token, "RISK_API_PORT": str(port),
           "RISK_API_DATABASE_URL": database_url,
           "RISK_API_SMS_OUTBOX": str(workdir / "outbox.jsonl")}
    process = subprocess.Popen([sys.executable, "-m", "risk_api"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=Path(__file__).resolve().parents[1])
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"risk API exited with {process.returncode} during start")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return process, base_url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("risk API did not start in time")


def _sessions(base_url: str, token: str, count: int) -> list[tuple[str, str]]:
    """(customer_id, session_id) pairs verified at L1."""
    people = [p for tag in CLEAN_TAGS for p in demo.customers_with_tag(tag)][:count]
    pairs = []
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}) as http:
        for person in people:
            session_id = f"bench-{uuid.uuid4().hex}"
            answer = http.post("/verification/l1", json={
                "phone": person["phone"], "name": person["name"],
                "id_last4": person["id_last4"], "session_id": session_id, "channel": "chat"})
            answer.raise_for_status()
            pairs.append((person["customer_id"], session_id))
    return pairs


def _measure(base_url: str, token: str, sessions: list[tuple[str, str]]) -> dict[str, Any]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = time.monotonic()
    measure_from = start + WARMUP_S
    stop_at = measure_from + MEASURE_S

    def client(customer_id: str, session_id: str) -> None:
        body = {"action": "limit_increase", "params": {}, "session_id": session_id,
                "channel": "chat"}
        with httpx.Client(base_url=base_url, timeout=10,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            while (now := time.monotonic()) < stop_at:
                response = http.post(f"/customers/{customer_id}/decisions", json=body)
                took = time.monotonic() - now
                if now >= measure_from:
                    with lock:
                        latencies.append(took)
                        errors[0] += response.status_code != 200

    threads = [threading.Thread(target=client, args=pair) for pair in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=MEASURE_S + WARMUP_S + 15)
    ordered = sorted(latencies)
    return {
        "clients": len(sessions), "requests": len(ordered), "errors": errors[0],
        "decisions_per_s": round(len(ordered) / MEASURE_S, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 2) if ordered else None,
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 2) if ordered else None,
    }


def bench_backend(database_url: str, workdir: Path) -> dict[str, Any]:
    token = uuid.uuid4().hex
    process, base_url = _start_service(database_url, workdir, token)
    try:
        sessions = _sessions(base_url, token, max(CONCURRENCY))
        return {f"clients_{n}": _measure(base_url, token, sessions[:n]) for n in CONCURRENCY}
    finally:
        process.terminate()
        process.wait(timeout=15)


def run(pg_url: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {"measure_seconds": MEASURE_S, "action": "limit_increase"}
    with tempfile.TemporaryDirectory(prefix="risk_api_bench_") as tmp:
        workdir = Path(tmp)
        results["sqlite"] = bench_backend(f"sqlite:///{workdir / 'bench.sqlite3'}", workdir)
        if pg_url:
            url, name = create_scratch_database(pg_url, "risk_api_bench")
            try:
                results["postgres"] = bench_backend(url, workdir)
            finally:
                drop_scratch_database(pg_url, name)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=Path, help="write the JSON here")
    parser.add_argument("--pg-url", default=os.environ.get("RISK_API_TEST_PG_URL"),
                        help="PostgreSQL server URL (role with CREATEDB)")
    args = parser.parse_args()
    text = json.dumps(run(args.pg_url), indent=2)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
