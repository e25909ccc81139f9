"""The widget's rooms over Redis (bot/socket_rooms.py) read JSON objects only: every hostile
payload someone able to publish on that Redis could send is dropped before it is decoded further,
and an emit JSON cannot carry is refused before it is sent. The module runs in Rasa's Python
(python-socketio is Rasa's), so the checks run there, in a child process."""

from __future__ import annotations

import json
import pickle
import subprocess

from stack.services import RASA_VENV, ROOT

CHECK = r"""
import json, sys
from bot.socket_rooms import MAX_MESSAGE_BYTES, decoded, encoded
payloads = json.loads(sys.stdin.read())
results = {name: decoded(bytes.fromhex(hex_)) for name, hex_ in payloads.items()}
refused_emits = []
for data in (float("nan"), float("inf"), b"bytes", {1, 2}, object()):
    try:
        encoded({"method": "emit", "data": data})
    except (TypeError, ValueError):
        refused_emits.append(type(data).__name__)
good = encoded({"method": "emit", "event": "bot_uttered", "data": {"text": "您好"}, "room": "s-1"})
print(json.dumps({"results": results, "refused_emits": refused_emits, "round_trip": decoded(good),
                  "limit": MAX_MESSAGE_BYTES}, ensure_ascii=False))
"""


class Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("unpickled",))


def test_only_json_objects_with_a_known_method_are_read_and_no_emit_json_cannot_carry_is_sent() -> None:
    message = {"method": "emit", "event": "bot_uttered", "data": {"text": "您好"}, "namespace": "/", "room": "s-1"}
    payloads = {
        "ours": json.dumps(message, ensure_ascii=False).encode(),
        "pickle": pickle.dumps(Exploit()),
        "pickled_message": pickle.dumps(message),
        "not_utf8": b"\xff\xfe{\"method\": \"emit\"}",
        "not_json": b"{method: emit}",
        "a_list": json.dumps([message]).encode(),
        "a_string": json.dumps("emit").encode(),
        "unknown_method": json.dumps({**message, "method": "enter_room"}).encode(),
        "no_method": json.dumps({"event": "bot_uttered"}).encode(),
        "oversized": json.dumps({**message, "data": {"text": "长" * 100_000}}, ensure_ascii=False).encode(),
    }
    run = subprocess.run([str(RASA_VENV / "bin" / "python"), "-c", CHECK], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, input=json.dumps({name: raw.hex() for name, raw in payloads.items()}))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "unpickled" not in run.stdout
    out = json.loads(run.stdout.splitlines()[-1])
    assert len(payloads["oversized"]) > out["limit"]
    assert out["results"].pop("ours") == message
    assert out["results"] == dict.fromkeys(out["results"]), "everything else dropped"
    assert out["refused_emits"] == ["float", "float", "bytes", "set", "object"]
    assert out["round_trip"]["data"] == {"text": "您好"}
