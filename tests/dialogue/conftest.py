"""Conversations with the real stack (the `running_stack` fixture of tests/conftest.py)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from flowspec.model import Flow
from risk_api.demo import customers_with_tag
from tests.conftest import Stack


class ChatSession:
    """One customer conversation the way its channel reaches Rasa: a chat over the public chat
    channel with a server-issued session token; a phone call (voice, outbound) over the trusted
    channel with the phone gateway's token and its metadata. `sender` is the conversation id."""

    def __init__(self, stack: Stack, channel: str = "chat", metadata: dict[str, Any] | None = None) -> None:
        self.stack = stack
        self.metadata = {"channel": channel, **(metadata or {})}
        self.transcript: list[tuple[str, list[dict[str, Any]]]] = []
        if channel == "chat":
            issued = stack.chat_token()
            self.sender, self._sender_field, self._route = issued.session_id, issued.token, "chat"
            self._http = httpx.Client(base_url=stack.rasa_url, timeout=30)
        else:
            self.sender = str(uuid.uuid4())  # what Asterisk names a call
            self._sender_field, self._route = self.sender, "trusted"
            self._http = httpx.Client(base_url=stack.rasa_url, timeout=30,
                                      headers={"Authorization": f"Bearer {stack.keys.rasa_gateway}"})

    def send(self, text: str) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"sender": self._sender_field, "message": text}
        if self._route == "trusted":
            body["metadata"] = self.metadata
        response = self._http.post(f"/webhooks/{self._route}/webhook", json=body)
        assert response.status_code == 200, response.text
        messages = response.json()
        self.transcript.append((text, messages))
        return messages

    def dump(self) -> str:
        lines = []
        for said, replies in self.transcript:
            lines.append(f"  客户: {said}")
            lines += [f"  机器人: {json.dumps(reply, ensure_ascii=False)}" for reply in replies]
        return "\n".join(lines)


@pytest.fixture
def chat(running_stack: Stack) -> ChatSession:
    return ChatSession(running_stack)


class CustomerPool:
    """Customers for conversations. A flow that acts on the account (a payoff settles the loan,
    a freeze freezes it) gets a customer of its own; read-only flows share the persona's first
    customer, whom no acting test touches."""

    def __init__(self) -> None:
        self._taken: Counter[str] = Counter()

    def take(self, tag: str) -> dict[str, Any]:
        customers = customers_with_tag(tag)
        self._taken[tag] += 1
        assert self._taken[tag] < len(customers), f"more acting tests use persona {tag!r} than it has customers"
        return customers[self._taken[tag]]

    def for_flow(self, flow: Flow, key: str = "customer") -> dict[str, Any]:
        tag = flow.raw.get("tests", {}).get(key, "normal")
        return self.take(tag) if flow.act_params is not None else customers_with_tag(tag)[0]


# One pool for the whole session: every test module draws its customers from it.
CUSTOMERS = CustomerPool()
