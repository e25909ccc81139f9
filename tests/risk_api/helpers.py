"""A thin test client for the risk API plus persona bookkeeping."""
from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import create_engine, text

from risk_api import demo
from risk_api.clock import ShiftedClock
from tests.loopback import serving_asgi

TOKEN = f"test-token-{uuid.uuid4().hex}"  # the engine's
DESK_TOKEN = f"test-desk-token-{uuid.uuid4().hex}"
GATEWAY_TOKEN = f"test-gateway-token-{uuid.uuid4().hex}"
PG_URL_ENV = "RISK_API_TEST_PG_URL"
# Tags whose customers carry no risk flag: any of them may stand in for a "normal" customer.
CLEAN_TAGS = ("normal", "vip", "due_soon", "auto_debit_off", "hardship", "do_not_call")


class Api:
    def __init__(self, base_url: str, clock: ShiftedClock, outbox: Path, database_url: str,
                 backend: str) -> None:
        self.base_url = base_url
        self.clock = clock
        self.outbox = outbox
        self.database_url = database_url
        self.backend = backend
        self.http = httpx.Client(base_url=base_url, timeout=30,
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        self.desk = httpx.Client(base_url=base_url, timeout=30,
                                 headers={"Authorization": f"Bearer {DESK_TOKEN}"})
        self.gateway = httpx.Client(base_url=base_url, timeout=30,
                                    headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"})
        self._used: dict[str, int] = defaultdict(int)
        self._engine = create_engine(database_url)

    def close(self) -> None:
        self.http.close()
        self.desk.close()
        self.gateway.close()
        self._engine.dispose()

    # -------------------------------------------------------------- customers
    def take(self, tag: str) -> dict[str, Any]:
        """A customer of this persona no other test has used (tests change account state)."""
        customers = demo.customers_with_tag(tag)
        index = self._used[tag]
        assert index < len(customers), f"tests used up the {tag} customers"
        self._used[tag] += 1
        return customers[index]

    def take_clean(self) -> dict[str, Any]:
        tag = min(CLEAN_TAGS, key=lambda t: self._used[t])
        return self.take(tag)

    def sql(self, query: str, **params: Any) -> list[Any]:
        """Direct look at the database (to check what the API stored)."""
        with self._engine.connect() as connection:
            return list(connection.execute(text(query), params))

    # -------------------------------------------------------------- verification
    def l1(self, person: dict[str, Any], session_id: str | None = None,
           **overrides: Any) -> httpx.Response:
        body = {"phone": person["phone"], "name": person["name"],
                "id_last4": person["id_last4"], "session_id": session_id or new_session(),
                "channel": "chat", **overrides}
        return self.http.post("/verification/l1", json=body)

    def send_otp(self, person: dict[str, Any], session_id: str) -> httpx.Response:
        return self.http.post("/verification/otp", json={
            "customer_id": person["customer_id"], "session_id": session_id, "channel": "chat"})

    def last_code(self, customer_id: str) -> str:
        lines = self.outbox.read_text(encoding="utf-8").splitlines()
        messages = [json.loads(line) for line in lines]
        codes = [m["code"] for m in messages if m["customer_id"] == customer_id
                 and m["kind"] == "otp"]
        assert codes, f"no code in the outbox for {customer_id}"
        return str(codes[-1])

    def l2(self, person: dict[str, Any], session_id: str, code: str) -> httpx.Response:
        return self.http.post("/verification/l2", json={
            "customer_id": person["customer_id"], "session_id": session_id, "code": code,
            "channel": "chat"})

    def session_with_code(self, person: dict[str, Any]) -> tuple[str, str]:
        """A session at L1 for which a code was just sent: (session_id, code)."""
        session_id = new_session()
        assert self.l1(person, session_id).json()["verified"] is True
        assert self.send_otp(person, session_id).status_code == 200
        return session_id, self.last_code(person["customer_id"])

    def verified(self, person: dict[str, Any], level: str = "L2") -> str:
        """A session verified to `level` for this customer."""
        if level == "L1":
            session_id = new_session()
            assert self.l1(person, session_id).json()["verified"] is True
            return session_id
        session_id, code = self.session_with_code(person)
        assert self.l2(person, session_id, code).json()["verified"] is True
        return session_id

    # -------------------------------------------------------------- decisions & actions
    def decide(self, person: dict[str, Any], session_id: str, action: str,
               params: dict[str, Any] | None = None, **extra: Any) -> httpx.Response:
        return self.http.post(f"/customers/{person['customer_id']}/decisions", json={
            "action": action, "params": params or {}, "session_id": session_id,
            "channel": "chat", **extra})

    def act(self, person: dict[str, Any], session_id: str, action: str, decision_id: str,
            params: dict[str, Any] | None = None, key: str | None = None) -> httpx.Response:
        return self.http.post(
            f"/customers/{person['customer_id']}/actions/{action}",
            headers={"Idempotency-Key": key or uuid.uuid4().hex},
            json={"decision_id": decision_id, "params": params or {},
                  "session_id": session_id, "channel": "chat"})

    def decide_and_act(self, person: dict[str, Any], session_id: str, action: str,
                       params: dict[str, Any] | None = None) -> httpx.Response:
        decision = self.decide(person, session_id, action, params).json()
        assert decision["decision"] == "allow", decision
        return self.act(person, session_id, action, decision["decision_id"], params)

    def read(self, person: dict[str, Any], session_id: str, name: str) -> dict[str, Any]:
        response = self.http.get(f"/customers/{person['customer_id']}/{name}",
                                 params={"session_id": session_id})
        assert response.status_code == 200, response.text
        return dict(response.json())


def new_session() -> str:
    return f"test-{uuid.uuid4().hex}"


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """The risk API over loopback HTTP while the block runs: its base URL."""
    try:
        with serving_asgi(app) as url:
            yield url
    finally:
        app.state.service.db.engine.dispose()
