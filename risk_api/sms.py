"""Pluggable SMS sending; the default appends each message to a local JSONL outbox file."""
from __future__ import annotations

import importlib
import json
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class SmsMessage:
    to: str  # full registered phone: only the outbox (the "phone network") sees it unmasked
    customer_id: str
    kind: str  # otp | password_reset
    text: str
    code: str | None = None


class SmsSender(Protocol):
    def send(self, message: SmsMessage, sent_at: datetime) -> None: ...


class OutboxFileSender:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def send(self, message: SmsMessage, sent_at: datetime) -> None:
        line = json.dumps({
            "sent_at": sent_at.isoformat(), "to": message.to, "customer_id": message.customer_id,
            "kind": message.kind, "code": message.code, "text": message.text,
        }, ensure_ascii=False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.path.open("a", encoding="utf-8") as outbox:
            outbox.write(line + "\n")


def load_sender(spec: str | None, outbox: Path) -> SmsSender:
    """`spec` is "package.module:factory"; the factory gets the outbox path, returns a sender."""
    if not spec:
        return OutboxFileSender(outbox)
    module_name, _, factory_name = spec.partition(":")
    factory = getattr(importlib.import_module(module_name), factory_name)
    return factory(outbox)
