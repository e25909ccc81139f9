"""The flow linter: every flow file against the schema, the catalogue and the engine's rules.

Run with `python -m flowspec lint`; it prints every problem as `file: field: problem` and
exits non-zero when there is any.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, get_args

import jsonschema

from flowspec.compile_rasa import heard_examples
from flowspec.model import (
    CATALOGUE_PATH,
    ENGINE_SLOTS,
    FLOWS_DIR,
    HEARD_FILE,
    IDENTITY_FLOW,
    IDENTITY_PROOFS,
    REPO_ROOT,
    SHARED_INTENTS,
    Flow,
    FlowError,
    Slot,
    _schema,
    load_flow,
    load_heard,
    load_responses,
    load_right_party,
    load_shared_intents,
    read_yaml,
)
from flowspec.templates import placeholders
from risk_api.operations import OPERATIONS, contract_gaps
from risk_api.rules import RiskAction
from risk_api.schemas import PARAMS_BY_ACTION, TicketKind

HELD_OUT_DIR = REPO_ROOT / "tests" / "nlu" / "held_out"
MIN_HELD_OUT = 5
ENGINE_ROOTS = {"decision", "result", "customer", "otp", "verification"}
# The identity step is the risk API's own verification, not a separate risk-checked action.
RISK_DONE_BY_IDENTITY_STEP = {"verify_identity"}
TRANSFER_WORD = "转接"  # "可以说转人工" is a hint, not an announcement


def _catalogue(path: Path) -> dict[str, dict[str, Any]]:
    data = read_yaml(path)
    return {entry["id"]: entry for entry in data["flows"]}


def _check_against_catalogue(flow: Flow, entry: dict[str, Any]) -> list[FlowError]:
    problems = []
    for field in ("name", "category", "identity", "risk"):
        expected = str(entry[field])
        if str(flow.raw[field]) != expected:
            problems.append(
                FlowError(flow.path, field, f"'{flow.raw[field]}' but the catalogue says '{expected}'")
            )
    if sorted(flow.channels) != sorted(entry["channels"]):
        problems.append(
            FlowError(flow.path, "channels", f"{list(flow.channels)} but the catalogue says {entry['channels']}")
        )
    has_rule = bool(entry.get("handoff"))
    if has_rule and flow.handoff is None:
        problems.append(FlowError(flow.path, "handoff", f"the catalogue says: hand off {entry['handoff']}"))
    # Without a catalogue rule a flow may still offer a human, but only at the customer's request.
    if not has_rule and flow.handoff and not all(c.kind == "slot" for c in flow.handoff.when):
        problems.append(FlowError(flow.path, "handoff.when",
                                  "the catalogue has no handoff rule: only slot:<yes_no> (customer asks) is allowed"))
    return problems


def _check_transfer_announced_once(flow: Flow) -> list[FlowError]:
    """The engine says the `handoff` response right after the outcome's: an outcome response
    that also announces the transfer makes the customer hear it twice. (`locked` is followed
    by no handoff response.)"""
    if flow.handoff is None:
        return []
    return [FlowError(flow.path, f"responses.{key}.{channel}",
                      "announces the transfer, which the handoff response says right after: say it there")
            for key, response in flow.responses.items() if key not in ("handoff", "locked")
            for channel in ("voice", "chat") if TRANSFER_WORD in response.for_channel(channel)]


def _check_risk_api_contract(flow: Flow) -> list[FlowError]:
    """What a flow asks of the risk API exists there: its risk action, with the parameters that
    action takes, and its ticket kind. A new one is added to risk_api first (rules.py RiskAction,
    schemas.py PARAMS_BY_ACTION and TicketKind, operations.py OPERATIONS), then used by a flow."""
    problems = []
    acts = flow.risk != "-" and flow.risk not in RISK_DONE_BY_IDENTITY_STEP
    if acts and flow.risk not in get_args(RiskAction):
        problems.append(FlowError(flow.path, "risk", f"'{flow.risk}' is not an action of the risk API "
                                                     "(risk_api/rules.py RiskAction)"))
    elif acts and (flow.risk not in PARAMS_BY_ACTION or flow.risk not in OPERATIONS):
        problems.append(FlowError(flow.path, "risk", f"'{flow.risk}' is a risk action without "
                                  + ("its parameters (risk_api/schemas.py PARAMS_BY_ACTION)"
                                     if flow.risk not in PARAMS_BY_ACTION
                                     else "an operation (risk_api/operations.py OPERATIONS)")))
    elif acts and flow.act_params is not None:
        fields = PARAMS_BY_ACTION[flow.risk].model_fields
        required = {name for name, field in fields.items() if field.is_required()}
        given = set(flow.act_params)
        if not required <= given <= set(fields):
            problems.append(FlowError(flow.path, "act.params", f"'{flow.risk}' takes {sorted(fields)} "
                                                               f"(required {sorted(required)}), not {sorted(given)}"))
    kind, _, ticket_kind = (flow.record or "").partition(":")
    if kind == "ticket" and ticket_kind not in get_args(TicketKind):
        problems.append(FlowError(flow.path, "record", f"'{ticket_kind}' is not a ticket kind of the risk API "
                                                       "(risk_api/schemas.py TicketKind)"))
    return problems


def _check_identity_proofs(flow: Flow) -> list[FlowError]:
    """Each verification input has exactly one identity slot; only identity slots prove or are secret."""
    problems = []
    proofs = [slot.get("proves") for slot in flow.raw.get("identity_slots", [])]
    for proof in IDENTITY_PROOFS:
        if proofs.count(proof) != 1:
            problems.append(FlowError(flow.path, "identity_slots",
                                      f"exactly one slot must have `proves: {proof}` (found {proofs.count(proof)})"))
    return problems


def _check_help(flow: Flow) -> list[FlowError]:
    """A slot's help is said as it is, before the question's context is gathered: no placeholders."""
    slots = [*flow.slots, *(Slot.from_yaml(slot) for slot in flow.raw.get("identity_slots", []))]
    return [FlowError(flow.path, f"slots.{slot.name}.help", "says no {placeholder}: it is said as written")
            for slot in slots if slot.help and (placeholders(slot.help.voice) or placeholders(slot.help.chat))]


def _check_engine_rules(flow: Flow, identity_slot_names: set[str]) -> list[FlowError]:
    problems = []
    acts = flow.risk != "-" and flow.risk not in RISK_DONE_BY_IDENTITY_STEP
    if acts and flow.act_params is None:
        problems.append(FlowError(flow.path, "act", f"risk action '{flow.risk}' needs an act"))
    if not acts and flow.act_params is not None:
        problems.append(FlowError(flow.path, "act", "only flows with a risk action act"))
    if flow.act_params is not None and flow.record:
        problems.append(FlowError(flow.path, "record", "a flow either acts or records, not both"))
    outcome = "done" if (flow.act_params is not None or flow.record) else "answer"
    if outcome not in flow.responses:
        problems.append(FlowError(flow.path, f"responses.{outcome}", "is required for this flow"))
    slot_names = [slot.name for slot in flow.slots]
    for name, count in Counter(slot_names).items():
        if count > 1:
            problems.append(FlowError(flow.path, "slots", f"slot '{name}' is declared twice"))
        if name in identity_slot_names or name in ENGINE_SLOTS:
            problems.append(FlowError(flow.path, "slots", f"'{name}' is reserved by the engine"))
    for slot in flow.slots:
        if slot.proves or slot.secret:
            problems.append(FlowError(flow.path, f"slots.{slot.name}",
                                      "only the identity flow's identity_slots prove identity or are secret"))
        if slot.type == "choice" and "choices" not in slot.options:
            problems.append(FlowError(flow.path, f"slots.{slot.name}", "a choice slot needs choices"))
        if problem := slot.match_order_problem():
            problems.append(FlowError(flow.path, f"slots.{slot.name}", problem))
    roots = ENGINE_ROOTS | set(flow.reads) | set(slot_names) | identity_slot_names
    for where, template in _templates(flow):
        for placeholder in placeholders(template):
            if placeholder.split(".")[0] not in roots:
                problems.append(
                    FlowError(flow.path, where, f"{{{placeholder}}} is not a slot, read or engine value")
                )
    problems += _check_transfer_announced_once(flow)
    problems += _check_help(flow)
    for condition in flow.handoff.when if flow.handoff else ():
        if condition.kind == "slot" and condition.target not in slot_names:
            problems.append(FlowError(flow.path, "handoff.when", f"no slot '{condition.target}' in this flow"))
        if condition.kind == "fact" and condition.target.split(".")[0] not in flow.reads:
            problems.append(FlowError(flow.path, "handoff.when", f"'{condition.target}' is not from a read"))
    problems += _check_branches(flow)
    tests = flow.raw.get("tests", {})
    for name in tests.get("say", {}):
        if name not in slot_names:
            problems.append(FlowError(flow.path, f"tests.say.{name}", "is not a slot of this flow"))
    missing_say = [name for name in slot_names if name not in tests.get("say", {})]
    if missing_say:
        problems.append(FlowError(flow.path, "tests.say", f"no test answer for {missing_say}"))
    if acts and "deny_customer" not in tests and flow.identity == "L2":
        problems.append(FlowError(flow.path, "tests.deny_customer", "L2 flows with a risk action need one"))
    return problems


def _check_branches(flow: Flow) -> list[FlowError]:
    """A branch reads this flow's own slots (a choice's own values) and reads, says its own
    response, and goes on with another flow that exists (checked in `lint`)."""
    problems = []
    slots = {slot.name: slot for slot in flow.slots}
    outcomes = Counter(branch.outcome for branch in flow.branches)
    for index, branch in enumerate(flow.branches):
        where = f"branches.{index}"
        if branch.outcome not in flow.responses:
            problems.append(FlowError(flow.path, f"{where}.outcome", f"no response '{branch.outcome}'"))
        if outcomes[branch.outcome] > 1 and len({b.then for b in flow.branches if b.outcome == branch.outcome}) > 1:
            problems.append(FlowError(flow.path, f"{where}.outcome",
                                      f"'{branch.outcome}' goes on with different flows in two branches"))
        if branch.then == flow.id:
            problems.append(FlowError(flow.path, f"{where}.then", "a flow cannot go on with itself"))
        for condition in branch.when:
            if condition.kind == "fact" and condition.target.split(".")[0] not in flow.reads:
                problems.append(FlowError(flow.path, f"{where}.when", f"'{condition.target}' is not from a read"))
            if condition.kind != "slot":
                continue
            name, value = condition.slot_value
            slot = slots.get(name)
            if slot is None:
                problems.append(FlowError(flow.path, f"{where}.when", f"no slot '{name}' in this flow"))
            elif value is not None and value not in [str(c["value"]) for c in slot.options.get("choices", [])]:
                problems.append(FlowError(flow.path, f"{where}.when", f"'{value}' is not a choice of '{name}'"))
    return problems


def _templates(flow: Flow) -> list[tuple[str, str]]:
    found = []
    for key, response in flow.responses.items():
        found += [(f"responses.{key}.voice", response.voice), (f"responses.{key}.chat", response.chat)]
    if flow.confirm:
        found += [("confirm.voice", flow.confirm.voice), ("confirm.chat", flow.confirm.chat)]
    for slot in flow.slots:
        for key, response in slot.wordings().items():
            found += [(f"slots.{slot.name}.{key}", response.voice), (f"slots.{slot.name}.{key}", response.chat)]
    return found


def _held_out(intent: str) -> tuple[Path, list[str]]:
    path = HELD_OUT_DIR / f"{intent}.yml"
    if not path.exists():
        return path, []
    data = read_yaml(path) or {}
    if data.get("intent") != intent:
        raise FlowError(path, "intent", f"must be '{intent}'")
    return path, list(data.get("examples") or [])


def lint(flows_dir: Path = FLOWS_DIR, catalogue_path: Path = CATALOGUE_PATH) -> list[FlowError]:
    """Every problem found, in file order; an empty list means the flows are sound."""
    problems: list[FlowError] = []
    validator = jsonschema.Draft202012Validator(_schema())
    catalogue = _catalogue(catalogue_path)
    flows: dict[str, Flow] = {}
    for path in sorted(flows_dir.glob("*.yml")):
        try:
            flows[path.stem] = load_flow(path, validator)
        except FlowError as error:
            problems.append(error)
        if path.stem not in catalogue:
            problems.append(FlowError(path, "id", f"'{path.stem}' is not in the catalogue"))
    for flow_id in catalogue:
        if not (flows_dir / f"{flow_id}.yml").exists():
            problems.append(
                FlowError(flows_dir / f"{flow_id}.yml", "", "missing: the catalogue has this flow")
            )
    shared_dir = flows_dir / "shared"
    shared: dict[str, Any] = {}
    reserved: set[str] = set()  # the engine's own slots besides the identity flow's
    try:
        shared = load_shared_intents(shared_dir / "intents.yml")
        load_responses(shared_dir / "responses.yml")
        reserved |= set(load_right_party(shared_dir / "right_party.yml", _schema()).slots)
    except (FlowError, OSError) as error:
        problems.append(error if isinstance(error, FlowError) else FlowError(shared_dir, "", str(error)))
    for name in SHARED_INTENTS:
        if name not in shared:
            problems.append(FlowError(shared_dir / "intents.yml", f"intents.{name}", "missing"))
    identity_flow = flows.get(IDENTITY_FLOW)
    identity_slot_names = (
        {slot["name"] for slot in identity_flow.raw.get("identity_slots", [])} if identity_flow else set()
    )
    if identity_flow:
        problems += _check_identity_proofs(identity_flow)
    for flow in flows.values():
        if flow.id in catalogue:
            problems += _check_against_catalogue(flow, catalogue[flow.id])
        problems += _check_engine_rules(flow, identity_slot_names | reserved)
        problems += _check_risk_api_contract(flow)
        problems += [FlowError(flow.path, f"branches.{index}.then", f"no flow '{branch.then}'")
                     for index, branch in enumerate(flow.branches) if branch.then and branch.then not in flows]
    problems += [FlowError(REPO_ROOT / "risk_api" / "operations.py", "", gap) for gap in contract_gaps()]

    owner: dict[str, str] = {}
    intents_examples = {flow.id: flow.examples for flow in flows.values()}
    intents_examples.update({name: intent.examples for name, intent in shared.items()})
    for intent, examples in intents_examples.items():
        for example in examples:
            other = owner.setdefault(example.strip(), intent)
            if other != intent:
                problems.append(
                    FlowError(flows_dir / f"{intent}.yml", "examples", f"'{example}' is also an example of {other}")
                )
    try:
        heard = heard_examples(load_heard(shared_dir / HEARD_FILE), intents_examples)
    except FlowError as error:
        problems.append(error)
        heard = {}
    owner.update({text: intent for intent, texts in heard.items() for text in texts})
    for intent in intents_examples:
        try:
            path, held_out = _held_out(intent)
        except FlowError as error:
            problems.append(error)
            continue
        if len(held_out) < MIN_HELD_OUT:
            problems.append(FlowError(path, "examples", f"{len(held_out)} held-out examples, need {MIN_HELD_OUT}"))
        for example in held_out:
            if example.strip() in owner:
                problems.append(
                    FlowError(path, "examples", f"'{example}' is a training example of {owner[example.strip()]}")
                )
    return problems
