"""The flow model: what `flows/<id>.yml` declares, loaded and schema-checked.

The same loader serves the compiler, the linter and the flow engine at run time, so a flow
means one thing everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
FLOWS_DIR = REPO_ROOT / "flows"
HEARD_FILE = "heard.yml"  # under flows/shared/
SHARED_DIR = FLOWS_DIR / "shared"
# Engine state carried in every conversation; set by the action server, never by NLU. A flow
# may not declare a slot of these names (the linter says so; the compiler declares them).
ENGINE_SLOTS = {
    "active_flow": "text",
    "channel": "text",
    "caller_number": "text",
    "priority_tier": "text",
    "customer_id": "text",
    "verified_level": "text",
    "verification_locked": "bool",
    "confirmed": "bool",
    "flow_exit": "text",
    "reprompts": "float",
}
# The engine's state of the flow in progress: cleared with the flow's own slots when it ends.
FLOW_STATE_SLOTS = ("active_flow", "confirmed", "flow_exit", "reprompts")
CATALOGUE_PATH = REPO_ROOT.parent / "shared" / "flow-catalogue.yaml"

LEVELS = ("none", "L1", "L2")
IDENTITY_FLOW = "identity_verification"  # its identity_slots are every flow's identity step
# What the risk API's verification takes; each identity slot `proves` one of them.
IDENTITY_PROOFS = ("phone", "name", "id_last4", "id_last6", "otp")
# The risk API's ways to L1 (risk_api/rules.yaml `l1_methods`) and what the customer answers for
# each: `line_id6`'s number is the call's line, which the phone gateway vouched for, never an answer.
L1_METHODS = {"phone_name_id4": ("phone", "name", "id_last4"), "line_id6": ("id_last6",)}
# The right-party check of outbound calls (flows/shared/right_party.yml): its slots, asked in order.
RIGHT_PARTY, RECALL_ALLOWED = "right_party", "recall_allowed"
SHARED_INTENTS = (
    "greet", "goodbye", "affirm", "deny", "thanks", "repeat", "ask_is_bot", "inform",
    "out_of_scope",
)


class FlowError(ValueError):
    """A flow file is wrong; the message names the file, the field and what is wrong."""

    def __init__(self, path: Path, field_path: str, problem: str) -> None:
        self.path = path
        self.field_path = field_path
        self.problem = problem
        super().__init__(f"{_relative(path)}: {field_path or '(top level)'}: {problem}")


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class Response:
    voice: str
    chat: str
    buttons: tuple[dict[str, str], ...] = ()

    @classmethod
    def from_yaml(cls, data: dict[str, Any]) -> Response:
        return cls(data["voice"], data.get("chat", data["voice"]), tuple(data.get("buttons", ())))

    def for_channel(self, channel: str) -> str:
        return self.chat if channel == "chat" else self.voice


@dataclass(frozen=True)
class Slot:
    name: str
    type: str
    prompt: Response
    channels: tuple[str, ...] = ()
    level: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    proves: str | None = None  # an identity slot: which verification input it is
    secret: bool = False  # used once, never stored
    reprompt: Response | None = None  # the question in other words, once an answer was not understood
    help: Response | None = None  # for a customer who does not know the answer (我不知道 / 忘了)

    @classmethod
    def from_yaml(cls, data: dict[str, Any]) -> Slot:
        known = {"name", "type", "prompt", "channels", "level", "proves", "secret", "reprompt", "help"}
        return cls(
            name=data["name"],
            type=data["type"],
            prompt=Response.from_yaml(data["prompt"]),
            channels=tuple(data.get("channels", ())),
            level=data.get("level"),
            options={k: v for k, v in data.items() if k not in known},
            proves=data.get("proves"),
            secret=bool(data.get("secret", False)),
            reprompt=Response.from_yaml(data["reprompt"]) if data.get("reprompt") else None,
            help=Response.from_yaml(data["help"]) if data.get("help") else None,
        )

    def wordings(self) -> dict[str, Response]:
        """What may be said for this slot, by key: its prompt, its reprompt and help when it has them."""
        said = {"prompt": self.prompt, "reprompt": self.reprompt, "help": self.help}
        return {key: response for key, response in said.items() if response is not None}

    def asked_on(self, channel: str) -> bool:
        return not self.channels or channel in self.channels

    def match_order_problem(self) -> str | None:
        """A choice's `match_order` must name each of its values once."""
        order = self.options.get("match_order")
        values = [choice["value"] for choice in self.options.get("choices", [])]
        if order is not None and sorted(map(str, order)) != sorted(map(str, values)):
            return f"match_order {order} must name each choice's value once: {values}"
        return None


@dataclass(frozen=True)
class Condition:
    """One `handoff.when` entry, parsed once for the engine and the linter: `always`, `anger`,
    an outcome (`risk_review`/`risk_step_up`/`risk_deny` name the decision; `refused`,
    `verification_locked`), `fact:<read>.<field>` or `slot:<yes_no slot>`."""

    kind: str  # always | anger | outcome | fact | slot
    target: str = ""

    @classmethod
    def parse(cls, text: str) -> Condition:
        kind, colon, target = text.partition(":")
        if colon:
            return cls(kind, target)
        if text in ("always", "anger"):
            return cls(text)
        return cls("outcome", text.removeprefix("risk_"))

    @property
    def slot_value(self) -> tuple[str, str | None]:
        """A `slot:` condition's slot and the value it must hold (`slot:plan=promise`); None: yes."""
        name, equals, value = self.target.partition("=")
        return name, value if equals else None


@dataclass(frozen=True)
class Branch:
    """One `branches` entry: when every condition holds once the customer has answered, the flow
    ends with `outcome` (its response, and the outcome signalled) and the call goes on with the
    flow `then`, if any."""

    when: tuple[Condition, ...]
    outcome: str
    then: str | None = None


@dataclass(frozen=True)
class Handoff:
    when: tuple[Condition, ...]
    reason: str
    priority: str
    reasons_by_input: dict[str, str] = field(default_factory=dict)

    def reason_for(self, input_source: str | None) -> str:
        """The reason the agent reads: the voice channel hands over by itself after silence
        (no_input) or speech it could not understand (no_match), which the customer never asked."""
        return self.reasons_by_input.get(input_source or "", self.reason)


@dataclass(frozen=True)
class Flow:
    """One handling flow. `raw` keeps the file's data for the linter and the tests."""

    id: str
    name: str
    category: str
    identity: str
    risk: str
    channels: tuple[str, ...]
    examples: tuple[str, ...]
    slots: tuple[Slot, ...]
    reads: tuple[str, ...]
    responses: dict[str, Response]
    confirm: Response | None
    act_params: dict[str, Any] | None
    record: str | None
    handoff: Handoff | None
    item_formats: dict[str, str]
    path: Path
    raw: dict[str, Any]
    branches: tuple[Branch, ...] = ()

    @property
    def form_name(self) -> str:
        return f"{self.id}_form"

    @property
    def required_level(self) -> str:
        """The verification level the flow needs before its own slots."""
        target = self.raw.get("verifies_to", "none")
        return max(self.identity, target, key=LEVELS.index)

    @property
    def handoff_priority(self) -> str:
        """The queue priority of this flow's hand-overs, whatever their reason."""
        return self.handoff.priority if self.handoff else "normal"

    @cached_property
    def slot_names(self) -> tuple[str, ...]:
        return tuple(slot.name for slot in self.slots)

    def continues_with(self, outcome: str) -> str | None:
        """The flow the call goes on with after `outcome` (its branch's `then`), if any."""
        return next((branch.then for branch in self.branches if branch.outcome == outcome), None)


@dataclass(frozen=True)
class SharedIntent:
    name: str
    examples: tuple[str, ...]
    response: Response | None


@dataclass(frozen=True)
class RightPartyCheck:
    """flows/shared/right_party.yml: who answered an outbound call, asked before identity, and how
    the call ends when it is not the customer (a response per outcome)."""

    slots: dict[str, Slot]
    responses: dict[str, Response]

    def outcome(self, values: dict[str, Any]) -> str | None:
        """What the check came to once it ends the call (the response to say, and the dialler's
        outcome of the same name); None while it goes on or when the customer confirmed."""
        party = values.get(RIGHT_PARTY)
        if party == "third_party":
            recall = values.get(RECALL_ALLOWED)
            return None if recall is None else "third_party_refused" if recall == "refused" else "third_party"
        return None if party in (None, "confirmed") else str(party)

    def pending(self, values: dict[str, Any]) -> list[str]:
        """Its questions still to ask, in order (empty once it has an answer that goes on or ends)."""
        if values.get(RIGHT_PARTY) is None:
            return [RIGHT_PARTY]
        if values[RIGHT_PARTY] == "third_party" and values.get(RECALL_ALLOWED) is None:
            return [RECALL_ALLOWED]
        return []


@dataclass(frozen=True)
class FlowSet:
    """Everything under `flows/`: the flows, the shared intents, common wording and banks."""

    flows: dict[str, Flow]
    shared_intents: dict[str, SharedIntent]
    responses: dict[str, Response]
    banks: tuple[dict[str, Any], ...]
    right_party: RightPartyCheck
    # Intent → (sentence, what Whisper heard of it) from flows/shared/heard.yml (bench/heard_examples.py).
    heard: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)

    @property
    def identity_flow(self) -> Flow:
        return self.flows[IDENTITY_FLOW]

    @cached_property
    def identity_slots(self) -> tuple[Slot, ...]:
        return tuple(Slot.from_yaml(slot) for slot in self.identity_flow.raw.get("identity_slots", []))

    def identity_slot(self, proof: str) -> str:
        """The name of the identity slot that proves `proof` (one of IDENTITY_PROOFS)."""
        return next(slot.name for slot in self.identity_slots if slot.proves == proof)

    @cached_property
    def secret_slot_names(self) -> frozenset[str]:
        return frozenset(slot.name for slot in self.identity_slots if slot.secret)

    @cached_property
    def reverify_slot_names(self) -> tuple[str, ...]:
        """What a customer answers again when verification must be repeated (the number they
        gave stays: it only says whom to verify)."""
        return tuple(slot.name for slot in self.identity_slots if slot.proves != "phone")

    def all_slot_names(self) -> list[str]:
        names: dict[str, None] = {slot.name: None for slot in (*self.identity_slots, *self.right_party.slots.values())}
        for flow in self.flows.values():
            names.update((slot.name, None) for slot in flow.slots)
        return list(names)


def _schema() -> dict[str, Any]:
    return json.loads((FLOWS_DIR / "schema.json").read_text(encoding="utf-8"))


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        raise FlowError(path, where, f"not valid YAML: {getattr(error, 'problem', error)}") from None


def load_flow(path: Path, validator: jsonschema.Draft202012Validator | None = None) -> Flow:
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise FlowError(path, "", "a flow file must be a mapping of fields")
    validator = validator or jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        location = ".".join(str(part) for part in first.absolute_path)
        raise FlowError(path, location, first.message)
    if data["id"] != path.stem:
        raise FlowError(path, "id", f"'{data['id']}' must equal the file name '{path.stem}'")
    handoff = data.get("handoff")
    return Flow(
        id=data["id"],
        name=data["name"],
        category=data["category"],
        identity=data["identity"],
        risk=data["risk"],
        channels=tuple(data["channels"]),
        examples=tuple(data["examples"]),
        slots=tuple(Slot.from_yaml(slot) for slot in data.get("slots", [])),
        reads=tuple(data.get("read", [])),
        responses={key: Response.from_yaml(value) for key, value in data["responses"].items()},
        confirm=Response.from_yaml(data["confirm"]) if "confirm" in data else None,
        act_params=data["act"]["params"] if "act" in data else None,
        record=data.get("record"),
        handoff=Handoff(tuple(map(Condition.parse, handoff["when"])), handoff["reason"], handoff["priority"],
                        handoff.get("reasons_by_input", {}))
        if handoff
        else None,
        item_formats=data.get("item_formats", {}),
        path=path,
        raw=data,
        branches=tuple(Branch(tuple(map(Condition.parse, branch["when"])), branch["outcome"], branch.get("then"))
                       for branch in data.get("branches", ())),
    )


def load_shared_intents(path: Path) -> dict[str, SharedIntent]:
    data = read_yaml(path)
    intents = (data or {}).get("intents")
    if not isinstance(intents, dict):
        raise FlowError(path, "intents", "must map each shared intent to its examples")
    result: dict[str, SharedIntent] = {}
    for name, body in intents.items():
        examples = (body or {}).get("examples")
        if not isinstance(examples, list) or not all(isinstance(e, str) for e in examples):
            raise FlowError(path, f"intents.{name}.examples", "must be a list of strings")
        response = body.get("response")
        result[name] = SharedIntent(
            name, tuple(examples), Response.from_yaml(response) if response else None
        )
    return result


def load_heard(path: Path) -> dict[str, tuple[tuple[str, str], ...]]:
    """Intent → (example, Whisper's text of it spoken); an absent file is no heard examples."""
    if not path.exists():
        return {}
    intents = (read_yaml(path) or {}).get("heard")
    if not isinstance(intents, dict):
        raise FlowError(path, "heard", "must map each intent to its heard examples")
    result: dict[str, tuple[tuple[str, str], ...]] = {}
    for intent, entries in intents.items():
        if not isinstance(entries, list) or not all(
                isinstance(entry, dict) and isinstance(entry.get("said"), str) and isinstance(entry.get("heard"), str)
                for entry in entries):
            raise FlowError(path, f"heard.{intent}", "must be a list of {said, heard} strings")
        result[intent] = tuple((entry["said"], entry["heard"]) for entry in entries)
    return result


def load_responses(path: Path) -> dict[str, Response]:
    data = read_yaml(path) or {}
    responses = data.get("responses")
    if not isinstance(responses, dict):
        raise FlowError(path, "responses", "must map response names to {voice, chat}")
    return {key: Response.from_yaml(value) for key, value in responses.items()}


def load_right_party(path: Path, schema: dict[str, Any]) -> RightPartyCheck:
    """The right-party check's slots and responses, checked against the flow schema's own."""
    data = read_yaml(path)
    validator = jsonschema.Draft202012Validator({
        "$defs": schema["$defs"], "type": "object", "additionalProperties": False, "required": ["slots", "responses"],
        "properties": {"slots": {"type": "array", "items": {"$ref": "#/$defs/slot"}},
                       "responses": {"type": "object", "additionalProperties": {"$ref": "#/$defs/response"}}}})
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        raise FlowError(path, ".".join(str(part) for part in errors[0].absolute_path), errors[0].message)
    slots = {slot["name"]: Slot.from_yaml(slot) for slot in data["slots"]}
    if list(slots) != [RIGHT_PARTY, RECALL_ALLOWED]:
        raise FlowError(path, "slots", f"must be {RIGHT_PARTY} then {RECALL_ALLOWED}")
    for slot in slots.values():
        if slot.type != "choice" or (problem := slot.match_order_problem()):
            raise FlowError(path, f"slots.{slot.name}", problem or "must be a choice")
    check = RightPartyCheck(slots, {key: Response.from_yaml(value) for key, value in data["responses"].items()})
    answers = [choice["value"] for choice in slots[RIGHT_PARTY].options["choices"]]
    endings = {"third_party", "third_party_refused", *answers} - {"confirmed"}
    if missing := endings - set(check.responses):
        raise FlowError(path, "responses", f"no response for {sorted(missing)}")
    return check


@dataclass(frozen=True)
class Answers:
    """flows/shared/answers.yml: the words that answer yes/no and digit questions."""

    yes: tuple[str, ...]
    no: tuple[str, ...]
    digits: dict[str, int]
    not_digits: tuple[str, ...] = ()  # longest first: the parser drops them before reading digits


@cache
def load_answers(path: Path = SHARED_DIR / "answers.yml") -> Answers:
    data = read_yaml(path) or {}
    for key in ("affirm", "deny"):
        words = data.get(key)
        if not isinstance(words, list) or not words or not all(isinstance(w, str) and w for w in words):
            raise FlowError(path, key, "must be a list of words")
    digits = data.get("digits")
    if not isinstance(digits, dict) or not all(
            isinstance(word, str) and len(word) == 1 and value in range(10) for word, value in digits.items()):
        raise FlowError(path, "digits", "must map single characters to the digits 0-9")
    if overlap := set(data["affirm"]) & set(data["deny"]):
        raise FlowError(path, "affirm", f"words both yes and no: {sorted(overlap)}")
    not_digits = data.get("not_digits", [])
    if not isinstance(not_digits, list) or not all(isinstance(w, str) and len(w) > 1 for w in not_digits):
        raise FlowError(path, "not_digits", "must be a list of words of two characters or more")
    return Answers(tuple(data["affirm"]), tuple(data["deny"]), dict(digits),
                   tuple(sorted(not_digits, key=len, reverse=True)))


@cache
def repository_flowset() -> FlowSet:
    """The repository's flows, loaded once per process: services read them at their first use
    (loading all of them takes about half a second)."""
    return load_flowset()


def load_flowset(flows_dir: Path = FLOWS_DIR) -> FlowSet:
    """Load every flow file; raise FlowError on the first broken one."""
    schema = _schema()
    validator = jsonschema.Draft202012Validator(schema)
    flows = {
        path.stem: load_flow(path, validator) for path in sorted(flows_dir.glob("*.yml"))
    }
    shared = flows_dir / "shared"
    banks = (read_yaml(shared / "banks.yml") or {}).get("banks", [])
    return FlowSet(
        flows=flows,
        shared_intents=load_shared_intents(shared / "intents.yml"),
        responses=load_responses(shared / "responses.yml"),
        banks=tuple(banks),
        right_party=load_right_party(shared / "right_party.yml", schema),
        heard=load_heard(shared / HEARD_FILE),
    )
