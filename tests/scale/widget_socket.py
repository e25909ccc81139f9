"""The chat widget's side of Rasa's socket.io channel, as web/static/widget.js speaks it:
Engine.IO v4 over a websocket (no polling), Socket.IO packets `40` (connect) and `42` (events)."""

from __future__ import annotations

import json
from typing import Any

from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

MAX_PACKETS = 100  # per wait: a turn sends a handful of messages, and pings come every 25 s


class WidgetSocket:
    def __init__(self, rasa_url: str, origin: str, token: str, timeout_seconds: float = 30.0) -> None:
        url = rasa_url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        self._timeout = timeout_seconds
        self._socket: ClientConnection = connect(url, origin=Origin(origin), open_timeout=timeout_seconds)
        self._packet_starting("0")  # Engine.IO open
        self._socket.send("40")
        self._packet_starting("40")
        self.emit("session_request", {"token": token})
        event, _ = self.next_event()
        assert event == "session_confirm", event

    def emit(self, event: str, data: Any) -> None:
        self._socket.send("42" + json.dumps([event, data], ensure_ascii=False))

    def say(self, text: str) -> None:
        self.emit("user_uttered", {"message": text})

    def bot_message(self) -> dict[str, Any]:
        """The bot's next message (the server's other events passed over)."""
        for _ in range(MAX_PACKETS):
            event, data = self.next_event()
            if event == "bot_uttered":
                return dict(data)
        raise AssertionError(f"no bot message in {MAX_PACKETS} events")

    def asked(self) -> str:
        """The slot the bot asks for next (its messages up to the question passed over)."""
        for _ in range(MAX_PACKETS):
            expect = (self.bot_message().get("custom") or {}).get("expect")
            if expect:
                return str(expect["slot"])
        raise AssertionError(f"no question in {MAX_PACKETS} bot messages")

    def next_event(self) -> tuple[str, Any]:
        for _ in range(MAX_PACKETS):
            packet = str(self._socket.recv(timeout=self._timeout))
            if packet == "2":  # Engine.IO ping
                self._socket.send("3")
            elif packet.startswith("42"):
                name, *args = json.loads(packet[2:])
                return name, args[0] if args else None
        raise AssertionError(f"no event in {MAX_PACKETS} packets")

    def _packet_starting(self, prefix: str) -> None:
        packet = str(self._socket.recv(timeout=self._timeout))
        assert packet.startswith(prefix), packet

    def close(self) -> None:
        self._socket.close()
