"""The phone gateway tells the dialler what an answered call's conversation came to: its own
route, its own token (the desk's is refused there, and the gateway's on the desk's routes)."""

from __future__ import annotations

import httpx

from outbound.service import OutboundSettings, service_app
from tests.outbound.helpers import FixedClock, china, make_campaign
from tests.outbound.test_dialer import TUESDAY, customers, rig

DESK_TOKEN = "a-desk-token-for-the-dialler-tests"
GATEWAY_TOKEN = "a-gateway-token-for-the-dialler-tests"


def settings() -> OutboundSettings:
    return OutboundSettings(risk_api_url="http://127.0.0.1:9", risk_api_token="t", number_key=b"k",
                            desk_token=DESK_TOKEN, gateway_token=GATEWAY_TOKEN)


async def test_the_outcome_route_answers_the_gateway_token_only_and_records_the_outcome(db_url: str) -> None:
    clock = FixedClock(china(TUESDAY, 10))
    directory = customers(clock)
    dialer, queue, originator = rig(db_url, {"c": make_campaign("c")}, clock, directory)
    await dialer.tick()
    await dialer.drain()
    first, second = sorted(originator.sent, key=lambda sent: sent.customer_id)[:2]
    gateway = {"Authorization": f"Bearer {GATEWAY_TOKEN}"}
    desk = {"Authorization": f"Bearer {DESK_TOKEN}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(service_app(dialer, settings())),
                                 base_url="http://dialler") as http:
        path = f"/attempts/{first.attempt_id}/outcome"
        for headers, status in (({}, 401), ({"Authorization": "Bearer wrong"}, 401), (desk, 403)):
            assert (await http.post(path, headers=headers, json={"outcome": "third_party"})).status_code == status
        assert (await http.get("/campaigns", headers=gateway)).status_code == 403, "the desk's routes are not its"
        assert (await http.get("/campaigns", headers=desk)).status_code == 200
        for body in ({"outcome": "delighted"}, {}, {"outcome": "third_party", "extra": 1}):
            assert (await http.post(path, headers=gateway, json=body)).status_code == 422, body
        assert (await http.post(path, headers=gateway, content=b'{"outcome": "' + b"x" * 2000 + b'"}')).status_code \
            == 413
        unknown = await http.post("/attempts/c:C999999:2026-03-13:1/outcome", headers=gateway,
                                  json={"outcome": "third_party"})
        assert unknown.status_code == 404 and unknown.json()["detail"]["code"] == "unknown_attempt"
        recorded = await http.post(path, headers=gateway, json={"outcome": "third_party"})
        assert recorded.json() == {"attempt_id": first.attempt_id, "outcome": "third_party"}
        opted = await http.post(f"/attempts/{second.attempt_id}/outcome", headers=gateway,
                                json={"outcome": "opted_out"})
        assert opted.status_code == 200
    outcomes = {attempt.id: attempt.conversation_outcome for attempt in queue.attempts()}
    assert outcomes[first.attempt_id] == "third_party" and outcomes[second.attempt_id] == "opted_out"
    assert [customer for customer, *_ in directory.opt_outs] == [second.customer_id], "the opt-out reaches the risk API"
