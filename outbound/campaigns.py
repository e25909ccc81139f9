"""Campaign files (`ivr_config/campaigns/<id>.yaml`) and the compliance policy (`policy.yaml`).

Each campaign file is checked against `ivr_config/campaign.schema.json` by the one configuration
loader (`ivr_config.loader.load_yaml`), then against the flows (the opening flow must exist and
have `outbound` in its channels) and the legal limits (calling hours within 08:00-21:00). A
CSV selection is read here too: a missing header, a malformed or duplicate id is refused with
the CSV's file and line; ids the risk API does not know are refused when the campaign is
planned (`outbound.dialer`), naming the same. Every error names the file and the field.

What an answering machine gets (`machine:`, default `hangup`): nothing, or a short message that
whoever plays the voicemail back may hear, so it may hold no word of the debt-detail list
(ivr_config/quality/phrases.yaml `debt_detail`). The message is rendered ahead of time into an
Asterisk sound by `make asterisk-sounds` (telephony/queue_sounds.py) under `machine_prompt()`'s
name, which changes with the text: an edited message that was not rendered again plays nothing
(the dialplan hangs up), never the old text.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from flowspec.model import FlowSet
from ivr_config.loader import ConfigError, load_yaml
from outbound.compliance import LEGAL_END, LEGAL_START, CompliancePolicy, PolicyError, parse_time
from quality.rules import load_rules

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGNS_DIR = ROOT / "ivr_config" / "campaigns"
SCHEMA_PATH = ROOT / "ivr_config" / "campaign.schema.json"
POLICY_FILE = "policy.yaml"
POLICY_SCHEMA_PATH = CAMPAIGNS_DIR / "policy.schema.json"
CUSTOMER_ID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")  # the risk API's ids (C100001), at most 16 characters
RESULTS_RETRIED = ("busy", "no_answer", "failed", "machine", "unknown")
MACHINE_MESSAGE_MAX_CHARACTERS = 60  # Chinese characters: about 15 s of speech, a voicemail's short note


class CampaignError(ConfigError):
    """A campaign or policy file is broken; the message names the file and the field (or CSV line)."""


@dataclass(frozen=True)
class Selection:
    """Which customers: due in N days, overdue min..max days, verified in a chat or call of their own
    N days ago (a satisfaction callback; 0: today), or the ids of a CSV file."""

    due_in_days: int | None = None
    overdue_min: int | None = None
    overdue_max: int | None = None
    contacted_days_ago: int | None = None
    customer_ids: tuple[str, ...] = ()
    csv_path: Path | None = None
    csv_lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)  # id -> line

    @property
    def kind(self) -> str:
        if self.due_in_days is not None:
            return "due_in_days"
        if self.overdue_min is not None:
            return "overdue_days"
        if self.contacted_days_ago is not None:
            return "contacted_days_ago"
        return "customer_ids"

    def criteria(self) -> dict[str, Any]:
        """The risk API's selection criteria (POST /outbound/selection); a CSV's ids go in batches."""
        if self.due_in_days is not None:
            return {"due_in_days": self.due_in_days}
        if self.overdue_min is not None:
            return {"overdue_days": {"min": self.overdue_min, "max": self.overdue_max}}
        if self.contacted_days_ago is not None:
            return {"contacted_days_ago": self.contacted_days_ago}
        return {}

    def where(self, customer_id: str) -> str:
        """`file.csv line 7` for an id of the CSV (for error messages)."""
        return f"{self.csv_path} line {self.csv_lines.get(customer_id, '?')}"

    def describe(self) -> str:
        if self.due_in_days is not None:
            return f"due in {self.due_in_days} days"
        if self.overdue_min is not None:
            return f"overdue {self.overdue_min}-{self.overdue_max} days"
        if self.contacted_days_ago is not None:
            days = self.contacted_days_ago
            return "contacted today" if days == 0 else f"contacted {days} day{'s' if days > 1 else ''} ago"
        return f"{len(self.customer_ids)} customers from {self.csv_path.name if self.csv_path else 'a list'}"


@dataclass(frozen=True)
class CallingWindow:
    start: time
    end: time


@dataclass(frozen=True)
class AttemptRules:
    max_attempts: int
    retry_after: Mapping[str, timedelta]  # by result: busy, no_answer, failed, machine, unknown
    backoff_multiplier: float = 1.0

    def backoff(self, result: str, attempt_number: int) -> timedelta:
        """The wait after attempt `attempt_number` ended with `result` (not answered)."""
        base = self.retry_after.get(result) or self.retry_after["failed"]
        return base * (self.backoff_multiplier ** (attempt_number - 1))


@dataclass(frozen=True)
class Caps:
    per_customer_per_day: int
    per_customer_per_week: int


@dataclass(frozen=True)
class AgentPacing:
    """Calls at once for a campaign that hands customers to people: at most `calls_per_agent` per
    agent free in Asterisk's `queue` (outbound/agents.py)."""

    queue: str
    calls_per_agent: float


@dataclass(frozen=True)
class MachineBehaviour:
    """What an answering machine gets: `hangup`, or `message` (`prompt` plays `text`)."""

    behaviour: str = "hangup"
    text: str = ""
    prompt: str = ""  # the sound Asterisk plays (sounds/zh/<prompt>.wav)


@dataclass(frozen=True)
class Campaign:
    id: str
    name: str
    flow: str
    enabled: bool
    priority: int
    selection: Selection
    window: CallingWindow
    attempts: AttemptRules
    caps: Caps
    max_channels: int
    blackout_dates: frozenset[date] = frozenset()
    starts_on: date | None = None
    ends_on: date | None = None
    path: Path | None = None
    machine: MachineBehaviour = MachineBehaviour()
    agent_pacing: AgentPacing | None = None

    def runs_on(self, day: date) -> bool:
        return (self.starts_on is None or day >= self.starts_on) and (self.ends_on is None or day <= self.ends_on)


def load_campaign(path: Path | str, flows: FlowSet) -> Campaign:
    """One campaign file, checked through and through; CampaignError naming file and field."""
    path = Path(path)
    data = _load(path, SCHEMA_PATH)
    where = str(path)
    if data["id"] != path.stem:
        raise CampaignError(f"{where}: id: {data['id']!r} must equal the file name {path.stem!r}")
    if data["id"] == Path(POLICY_FILE).stem:
        raise CampaignError(f"{where}: id: 'policy' is the policy file's name, not a campaign's")
    flow = flows.flows.get(data["flow"])
    outbound_flows = sorted(f.id for f in flows.flows.values() if "outbound" in f.channels)
    if flow is None:
        raise CampaignError(f"{where}: flow: no flow {data['flow']!r} in flows/; flows that can open an outbound "
                            f"call: {', '.join(outbound_flows)}")
    if "outbound" not in flow.channels:
        raise CampaignError(f"{where}: flow: {flow.id!r} has channels {list(flow.channels)}, not 'outbound': it "
                            f"cannot open an outbound call; flows that can: {', '.join(outbound_flows)}")
    window = CallingWindow(_time(data["window"]["start"], where, "window.start"),
                           _time(data["window"]["end"], where, "window.end"))
    if window.start < LEGAL_START or window.end > LEGAL_END:
        raise CampaignError(f"{where}: window: {window.start:%H:%M}-{window.end:%H:%M} reaches outside the legal "
                            f"calling hours {LEGAL_START:%H:%M}-{LEGAL_END:%H:%M} (customer local time): "
                            "a campaign can only narrow them")
    if window.start >= window.end:
        raise CampaignError(f"{where}: window: start {window.start:%H:%M} is not before end {window.end:%H:%M}")
    caps = Caps(data["caps"]["per_customer_per_day"], data["caps"]["per_customer_per_week"])
    if caps.per_customer_per_week < caps.per_customer_per_day:
        raise CampaignError(f"{where}: caps.per_customer_per_week: {caps.per_customer_per_week} is below "
                            f"per_customer_per_day {caps.per_customer_per_day}")
    starts_on = _date(data.get("starts_on"), where, "starts_on")
    ends_on = _date(data.get("ends_on"), where, "ends_on")
    if starts_on and ends_on and ends_on < starts_on:
        raise CampaignError(f"{where}: ends_on: {ends_on} is before starts_on {starts_on}")
    attempts = data["attempts"]
    retry = {result: timedelta(minutes=minutes) for result, minutes in attempts["retry_after_minutes"].items()}
    retry.setdefault("machine", retry["no_answer"])
    retry.setdefault("unknown", retry["failed"])
    return Campaign(
        id=data["id"], name=data["name"], flow=flow.id, enabled=data["enabled"], priority=data["priority"],
        selection=_selection(data["selection"], path),
        window=window,
        attempts=AttemptRules(attempts["max"], retry, float(attempts.get("backoff_multiplier", 1))),
        caps=caps,
        max_channels=data["pacing"]["max_channels"],
        blackout_dates=_dates(data.get("blackout_dates", []), where),
        starts_on=starts_on, ends_on=ends_on, path=path,
        machine=_machine(data.get("machine"), data["id"], where),
        agent_pacing=(AgentPacing(data["pacing"]["agents"]["queue"], float(data["pacing"]["agents"]["calls_per_agent"]))
                      if "agents" in data["pacing"] else None),
    )


def load_campaigns(flows: FlowSet, directory: Path | str = CAMPAIGNS_DIR) -> dict[str, Campaign]:
    """Every campaign file of the directory (`*.yaml` but the policy), by id."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CampaignError(f"{directory}: no such campaigns directory")
    campaigns = {}
    for path in sorted(directory.glob("*.yaml")):
        if path.name == POLICY_FILE:
            continue
        campaign = load_campaign(path, flows)
        campaigns[campaign.id] = campaign
    return campaigns


def load_policy(directory: Path | str = CAMPAIGNS_DIR) -> CompliancePolicy:
    """The deployment's policy (`policy.yaml` beside the campaigns); the legal defaults without one."""
    path = Path(directory) / POLICY_FILE
    if not path.exists():
        return CompliancePolicy()
    data = _load(path, POLICY_SCHEMA_PATH)
    where = str(path)
    hours = data.get("calling_hours")
    try:
        return CompliancePolicy(
            calling_start=_time(hours["start"], where, "calling_hours.start") if hours else LEGAL_START,
            calling_end=_time(hours["end"], where, "calling_hours.end") if hours else LEGAL_END,
            max_unanswered_per_number_per_day=data.get("max_unanswered_per_number_per_day", 6),
            blackout_dates=_dates(data.get("blackout_dates", []), where))
    except PolicyError as error:
        field_name = "max_unanswered_per_number_per_day" if "max_unanswered" in str(error) else "calling_hours"
        raise CampaignError(f"{where}: {field_name}: {error}") from None


def read_customer_csv(path: Path) -> tuple[tuple[str, ...], dict[str, int]]:
    """The ids of a CSV (header `customer_id`, other columns ignored), in file order, with the
    line of each; CampaignError on a missing column, an empty or malformed id, a duplicate."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is fine
    except OSError as error:
        raise CampaignError(f"{path}: cannot read: {error.strerror}") from None
    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if header is None or "customer_id" not in [column.strip() for column in header]:
        raise CampaignError(f"{path} line 1: the header must name a column customer_id (got {header or 'nothing'})")
    column = [name.strip() for name in header].index("customer_id")
    lines: dict[str, int] = {}
    for number, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank lines are fine
        value = row[column].strip() if column < len(row) else ""
        if not CUSTOMER_ID.match(value):
            shown = value if len(value) <= 20 and value.isprintable() else value[:20] + "…"
            raise CampaignError(f"{path} line {number}: customer_id {shown!r} is not a customer id "
                                "(letters, digits, - or _, at most 16)")
        if value in lines:
            raise CampaignError(f"{path} line {number}: customer_id {value} is listed twice (first on line "
                                f"{lines[value]}): one call series per customer, remove the duplicate")
        lines[value] = number
    if not lines:
        raise CampaignError(f"{path}: no customer ids")
    return tuple(lines), lines


def _load(path: Path, schema: Path) -> Any:
    return load_yaml(path, schema, CampaignError)


def _selection(data: dict[str, Any], campaign_path: Path) -> Selection:
    if "due_in_days" in data:
        return Selection(due_in_days=data["due_in_days"])
    if "overdue_days" in data:
        low, high = data["overdue_days"]["min"], data["overdue_days"]["max"]
        if low > high:
            raise CampaignError(f"{campaign_path}: selection.overdue_days: min {low} is above max {high}")
        return Selection(overdue_min=low, overdue_max=high)
    if "contacted_days_ago" in data:
        return Selection(contacted_days_ago=data["contacted_days_ago"])
    csv_path = campaign_path.parent / data["customer_ids_csv"]
    if not csv_path.is_file():
        raise CampaignError(f"{campaign_path}: selection.customer_ids_csv: no file {csv_path}")
    ids, lines = read_customer_csv(csv_path)
    return Selection(customer_ids=ids, csv_path=csv_path, csv_lines=lines)


def machine_prompt(campaign_id: str, text: str) -> str:
    """The sound name of a campaign's machine message; a digest of the text keeps a stale
    rendering from ever playing for a changed message."""
    return f"ivr-machine-{campaign_id}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


@functools.cache
def debt_words() -> tuple[str, ...]:
    """The debt-detail list of the quality inspection: the one list of what a third party must not hear."""
    return tuple(load_rules().debt_detail)


def _machine(data: Mapping[str, Any] | None, campaign_id: str, where: str) -> MachineBehaviour:
    if data is None:
        return MachineBehaviour()
    behaviour, text = data["behaviour"], (data.get("message") or "").strip()
    if behaviour == "hangup":
        if text:
            raise CampaignError(f"{where}: machine.message: given, but machine.behaviour is 'hangup': "
                                "set behaviour: message to leave it, or remove the message")
        return MachineBehaviour()
    if not text:
        raise CampaignError(f"{where}: machine.message: behaviour 'message' needs the text to leave")
    length = len(re.sub(r"\s", "", text))
    if length > MACHINE_MESSAGE_MAX_CHARACTERS:
        raise CampaignError(f"{where}: machine.message: {length} characters; a machine's message is at most "
                            f"{MACHINE_MESSAGE_MAX_CHARACTERS}")
    found = [word for word in debt_words() if word in text]
    if found:
        raise CampaignError(f"{where}: machine.message: contains the debt detail {'、'.join(found)}; whoever plays "
                            "the voicemail back may not be the customer (ivr_config/quality/phrases.yaml debt_detail)")
    return MachineBehaviour("message", text, machine_prompt(campaign_id, text))


def _time(value: Any, where: str, name: str) -> time:
    if isinstance(value, int) and not isinstance(value, bool):  # YAML 1.1 reads 21:00 as 1260 (base 60)
        raise CampaignError(f"{where}: {name}: write the time in quotes, e.g. \"21:00\" (unquoted, YAML reads "
                            f"it as the number {value})")
    if not isinstance(value, str) or not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", value):
        raise CampaignError(f"{where}: {name}: {value!r} is not a time \"HH:MM\"")
    return parse_time(value)


def _date(value: Any, where: str, name: str) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        raise CampaignError(f"{where}: {name}: {value.isoformat()} is a date and time: give the date only")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise CampaignError(f"{where}: {name}: {value!r} is not a date YYYY-MM-DD")


def _dates(values: list[Any], where: str) -> frozenset[date]:
    days = set()
    for index, value in enumerate(values):
        day = _date(value, where, f"blackout_dates[{index}]")
        if day is not None:
            days.add(day)
    return frozenset(days)
