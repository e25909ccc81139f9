"""Whom a campaign selects and how to reach them: the risk API's dialer-role routes.

- `POST /outbound/selection`: a campaign's customers (ids, the cycle reference, time zone and
  do-not-call facts; no numbers), page by page;
- `POST /outbound/contact`: one customer's number and fresh do-not-call facts just before a call,
  the due date of their oldest unpaid bill and whether it is still in the selection's stage
  (a paid bill is not reminded, an overdue one leaves the due-date reminder);
- `POST /outbound/do-not-call`: an opt-out the dialler learnt during a call.

The number lives in memory for one call (`ContactDetails.phone`, never printed); the queue keeps
only its keyed digest (`number_ref`).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, Protocol

from outbound.campaigns import Selection
from outbound.compliance import DEFAULT_TIMEZONE
from risk_api_client import RiskApiHttp, RiskApiRefused, RiskApiUnavailable

SELECTION_PAGE = 1000
ID_BATCH = 1000  # a CSV's ids per request: well inside the risk API's 64 KiB body limit


class DirectoryUnavailable(RuntimeError):
    """The risk API did not answer: nothing may be assumed (the attempt waits)."""


class UnknownCustomer(LookupError):
    """The risk API does not know this customer."""


@dataclass(frozen=True)
class Selected:
    customer_id: str
    reference: str | None  # the due date of the bill the call is about (None for a CSV's ids)
    timezone: str = DEFAULT_TIMEZONE
    do_not_call: bool = False
    marketing_opt_out: bool = False


@dataclass(frozen=True)
class SelectionPage:
    customers: list[Selected]
    unknown_ids: list[str] = field(default_factory=list)
    next_after: str | None = None


@dataclass(frozen=True)
class ContactDetails:
    customer_id: str
    phone: str = field(repr=False)
    timezone: str
    do_not_call: bool
    marketing_opt_out: bool
    selected: bool
    reference: str | None


class CustomerDirectory(Protocol):
    async def select(self, selection: Selection, after: str | None, customer_ids: list[str] | None = None
                     ) -> SelectionPage: ...

    async def contact(self, customer_id: str, selection: Selection) -> ContactDetails: ...

    async def do_not_call(self, customer_id: str, source: str, attempt_id: str | None) -> None: ...

    async def close(self) -> None: ...


def number_ref(key: bytes, phone: str) -> str:
    """A keyed digest of a number: counts and blocks per number without storing it (a plain hash
    of an 11-digit number is reversed by trying them all; the key makes that impossible)."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    return hmac.new(key, digits.encode(), hashlib.sha256).hexdigest()[:40]


class RiskApiDirectory:
    """The risk API with the dialer role's token."""

    def __init__(self, base_url: str, token: str, timeout_seconds: float = 10.0) -> None:
        self._risk = RiskApiHttp(base_url, token, timeout_seconds=timeout_seconds)

    async def select(self, selection: Selection, after: str | None, customer_ids: list[str] | None = None
                     ) -> SelectionPage:
        body: dict[str, Any] = ({"customer_ids": customer_ids} if customer_ids is not None
                                else {**selection.criteria(), "limit": SELECTION_PAGE, "after": after})
        answer = await self._call("/outbound/selection", body)
        return SelectionPage(
            customers=[Selected(item["customer_id"], item.get("reference"), item.get("timezone") or DEFAULT_TIMEZONE,
                                bool(item["do_not_call"]), bool(item["marketing_opt_out"]))
                       for item in answer["customers"]],
            unknown_ids=list(answer.get("unknown_ids") or []), next_after=answer.get("next_after"))

    async def contact(self, customer_id: str, selection: Selection) -> ContactDetails:
        body: dict[str, Any] = {"customer_id": customer_id}
        if selection.kind != "customer_ids":
            body["selection"] = selection.criteria()
        answer = await self._call("/outbound/contact", body)
        return ContactDetails(customer_id=answer["customer_id"], phone=answer["phone"],
                              timezone=answer.get("timezone") or DEFAULT_TIMEZONE,
                              do_not_call=bool(answer["do_not_call"]),
                              marketing_opt_out=bool(answer["marketing_opt_out"]),
                              selected=bool(answer["selected"]), reference=answer.get("reference"))

    async def do_not_call(self, customer_id: str, source: str, attempt_id: str | None) -> None:
        await self._call("/outbound/do-not-call", {"customer_id": customer_id, "source": source,
                                                   "attempt_id": attempt_id})

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._risk.call("POST", path, json=body)
        except RiskApiUnavailable as error:
            raise DirectoryUnavailable(str(error)) from error
        except RiskApiRefused as refusal:
            if refusal.code == "unknown_customer":
                raise UnknownCustomer(body.get("customer_id", "")) from refusal
            # A refusal of our own request (403 with a wrong role's token, 422): the dialler cannot
            # go on with it; said loudly, as unavailable, so nothing is assumed.
            raise DirectoryUnavailable(f"risk API refused {path}: {refusal.status} {refusal.code}") from refusal

    async def close(self) -> None:
        await self._risk.close()
