"""Campaign and policy files: the shipped ones are valid; broken ones are refused with the file
and the field (or the CSV's line) named."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, time, timedelta
from pathlib import Path

import pytest
import yaml

from flowspec.model import FlowSet, load_flowset
from outbound.campaigns import (
    CAMPAIGNS_DIR,
    CampaignError,
    load_campaign,
    load_campaigns,
    load_policy,
)
from outbound.compliance import CompliancePolicy

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def flows() -> FlowSet:
    return load_flowset()


def valid() -> dict:
    return yaml.safe_load((CAMPAIGNS_DIR / "due_date_reminder.yaml").read_text(encoding="utf-8"))


def write(tmp_path: Path, data: dict | str, name: str | None = None) -> Path:
    if isinstance(data, dict):
        name = name or data.get("id", "broken")
        text = yaml.safe_dump(data, allow_unicode=True)
    else:
        text = data
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path, flows: FlowSet) -> str:
    with pytest.raises(CampaignError) as error:
        load_campaign(path, flows)
    message = str(error.value)
    assert message.startswith(str(path)), message
    return message


def test_the_shipped_campaigns_are_valid_one_per_reminder_flow(flows: FlowSet) -> None:
    campaigns = load_campaigns(flows)
    by_flow = {campaign.flow: campaign for campaign in campaigns.values()}
    assert {"due_date_reminder", "overdue_reminder"} <= set(by_flow)
    due, overdue = by_flow["due_date_reminder"], by_flow["overdue_reminder"]
    assert due.selection.criteria() == {"due_in_days": 3}
    assert overdue.selection.criteria() == {"overdue_days": {"min": 1, "max": 3}}
    for campaign in campaigns.values():
        assert "outbound" in flows.flows[campaign.flow].channels
        assert time(8) <= campaign.window.start < campaign.window.end <= time(21)
        assert campaign.caps.per_customer_per_day <= 6
    assert overdue.attempts.backoff("no_answer", 1) == timedelta(minutes=90)
    assert overdue.attempts.backoff("no_answer", 3) == timedelta(minutes=90 * 1.5 ** 2)
    assert due.attempts.backoff("machine", 1) == due.attempts.backoff("no_answer", 1)  # not given: as no answer


def test_the_shipped_policy_is_the_legal_limits_with_holidays() -> None:
    policy = load_policy()
    assert (policy.calling_start, policy.calling_end, policy.max_unanswered_per_number_per_day) == (
        time(8), time(21), 6)
    assert date(2026, 10, 1) in policy.blackout_dates
    assert load_policy(Path("/nonexistent")) == CompliancePolicy()  # no file: the legal defaults


def test_an_unknown_flow_is_named_with_the_flows_that_could_open_the_call(tmp_path: Path, flows: FlowSet) -> None:
    message = refused(write(tmp_path, {**valid(), "id": "x", "flow": "no_such_flow"}), flows)
    assert "flow: no flow 'no_such_flow'" in message and "overdue_reminder" in message


def test_a_flow_without_the_outbound_channel_cannot_open_a_call(tmp_path: Path, flows: FlowSet) -> None:
    message = refused(write(tmp_path, {**valid(), "id": "x", "flow": "bill_dispute"}), flows)
    assert "flow: 'bill_dispute' has channels" in message and "not 'outbound'" in message


@pytest.mark.parametrize(("window", "expected"), [
    ({"start": "07:30", "end": "20:00"}, "window: 07:30-20:00 reaches outside the legal calling hours 08:00-21:00"),
    ({"start": "09:00", "end": "22:00"}, "window: 09:00-22:00 reaches outside the legal calling hours"),
    ({"start": "12:00", "end": "10:00"}, "window: start 12:00 is not before end 10:00"),
    ({"start": "9:00", "end": "20:00"}, "window.start: '9:00' does not match"),
])
def test_a_window_outside_the_legal_hours_is_refused(tmp_path: Path, flows: FlowSet, window: dict,
                                                     expected: str) -> None:
    assert expected in refused(write(tmp_path, {**valid(), "id": "x", "window": window}), flows)


def test_an_unquoted_time_gets_a_hint_not_a_riddle(tmp_path: Path, flows: FlowSet) -> None:
    text = (CAMPAIGNS_DIR / "due_date_reminder.yaml").read_text(encoding="utf-8").replace('end: "20:00"', "end: 20:00")
    message = refused(write(tmp_path, text, "due_date_reminder"), flows)
    assert 'window.end: write the time in quotes, e.g. "21:00"' in message and "1200" in message


@pytest.mark.parametrize(("change", "expected"), [
    ({"caps": {"per_customer_per_day": 7, "per_customer_per_week": 9}},
     "caps.per_customer_per_day: 7 is greater than the maximum of 6"),
    ({"caps": {"per_customer_per_day": 3, "per_customer_per_week": 2}},
     "caps.per_customer_per_week: 2 is below per_customer_per_day 3"),
    ({"selection": {"due_in_days": 3, "overdue_days": {"min": 1, "max": 3}}}, "selection: "),
    ({"selection": {"overdue_days": {"min": 5, "max": 2}}}, "selection.overdue_days: min 5 is above max 2"),
    ({"selection": {"contacted_days_ago": 8}}, "selection.contacted_days_ago: 8 is greater than the maximum of 7"),
    ({"pacing": {"max_channels": 0}}, "pacing.max_channels: 0 is less than the minimum of 1"),
    ({"attempts": {"max": 3, "retry_after_minutes": {"busy": 30, "no_answer": 60}}},
     "attempts.retry_after_minutes: 'failed' is a required property"),
    ({"ends_on": "2026-02-30"}, "ends_on: '2026-02-30' is not a date"),
    ({"starts_on": "2026-05-01", "ends_on": "2026-04-01"}, "ends_on: 2026-04-01 is before starts_on 2026-05-01"),
    ({"blackout_dates": ["2026-10-01", "tomorrow"]}, "blackout_dates[1]: 'tomorrow' does not match"),
    ({"colour": "blue"}, "(top level): Additional properties are not allowed ('colour' was unexpected)"),
])
def test_broken_fields_are_named(tmp_path: Path, flows: FlowSet, change: dict, expected: str) -> None:
    assert expected in refused(write(tmp_path, {**valid(), "id": "x", **change}), flows)


def test_a_missing_field_and_a_wrong_id_are_named(tmp_path: Path, flows: FlowSet) -> None:
    data = valid()
    del data["caps"]
    assert "(top level): 'caps' is a required property" in refused(write(tmp_path, data), flows)
    assert "id: 'due_date_reminder' must equal the file name 'other'" in refused(
        write(tmp_path, valid(), "other"), flows)
    assert "line 3, column" in refused(write(tmp_path, "version: 1\nid: x\n  flow: [", "x"), flows)


def test_a_satisfaction_callback_selects_yesterdays_contacts(tmp_path: Path, flows: FlowSet) -> None:
    data = {**valid(), "id": "satisfaction_callback", "flow": "satisfaction_survey",
            "selection": {"contacted_days_ago": 1}}
    selection = load_campaign(write(tmp_path, data), flows).selection
    assert (selection.kind, selection.criteria(), selection.describe()) == (
        "contacted_days_ago", {"contacted_days_ago": 1}, "contacted 1 day ago")


def csv_campaign(tmp_path: Path, rows: str) -> Path:
    (tmp_path / "callback_list.csv").write_text(rows, encoding="utf-8")
    data = {**valid(), "id": "callback_list", "flow": "satisfaction_survey",
            "selection": {"customer_ids_csv": "callback_list.csv"}}
    return write(tmp_path, data)


def test_a_csv_selection_reads_ids_in_order_with_their_lines(tmp_path: Path, flows: FlowSet) -> None:
    path = csv_campaign(tmp_path, "\ufeffcustomer_id,note\nC100001,a\n\nC100002,b\nC100003\n")
    selection = load_campaign(path, flows).selection
    assert selection.kind == "customer_ids" and selection.customer_ids == ("C100001", "C100002", "C100003")
    assert selection.where("C100002") == f"{tmp_path / 'callback_list.csv'} line 4"


@pytest.mark.parametrize(("rows", "expected"), [
    ("customer_id\nC100001\nC100002\nC100001\n",
     "callback_list.csv line 4: customer_id C100001 is listed twice (first on line 2)"),
    ("customer_id\nC100001\nC1 00002\n", "callback_list.csv line 3: customer_id 'C1 00002' is not a customer id"),
    ("id\nC100001\n", "callback_list.csv line 1: the header must name a column customer_id"),
    ("customer_id\n\n", "callback_list.csv: no customer ids"),
])
def test_a_broken_csv_is_refused_with_its_line(tmp_path: Path, flows: FlowSet, rows: str, expected: str) -> None:
    with pytest.raises(CampaignError, match=".*") as error:
        load_campaign(csv_campaign(tmp_path, rows), flows)
    assert expected in str(error.value)


def test_a_missing_csv_is_named(tmp_path: Path, flows: FlowSet) -> None:
    data = {**valid(), "id": "x", "selection": {"customer_ids_csv": "absent.csv"}}
    assert "selection.customer_ids_csv: no file" in refused(write(tmp_path, data), flows)


@pytest.mark.parametrize(("policy", "expected"), [
    ('version: 1\ncalling_hours: {start: "07:00", end: "21:00"}\n',
     "calling_hours: calling hours 07:00-21:00 reach outside the legal 08:00-21:00"),
    ('version: 1\ncalling_hours: {start: "08:00", end: "22:00"}\n', "reach outside the legal"),
    ("version: 1\nmax_unanswered_per_number_per_day: 8\n",
     "max_unanswered_per_number_per_day: 8 is greater than the maximum of 6"),
    ("version: 1\nblackout_dates: [2026-13-01]\n", "invalid value: month must be in 1..12"),
    ('version: 1\nblackout_dates: ["2026-13-01"]\n', "blackout_dates[0]: '2026-13-01' is not a date"),
])
def test_a_looser_policy_is_refused(tmp_path: Path, policy: str, expected: str) -> None:
    (tmp_path / "policy.yaml").write_text(policy, encoding="utf-8")
    with pytest.raises(CampaignError) as error:
        load_policy(tmp_path)
    assert str(error.value).startswith(str(tmp_path / "policy.yaml")) and expected in str(error.value)


def test_unquoted_dates_are_fine(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("version: 1\nblackout_dates: [2026-10-01]\n", encoding="utf-8")
    assert load_policy(tmp_path).blackout_dates == {date(2026, 10, 1)}


def test_the_check_command_names_the_broken_file(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "outbound", "check"], cwd=ROOT, capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0 and "due_date_reminder: enabled" in ok.stdout
    write(tmp_path, {**valid(), "id": "bad", "window": {"start": "06:00", "end": "20:00"}})
    broken = subprocess.run([sys.executable, "-m", "outbound", "check", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert broken.returncode == 2
    assert f"{tmp_path / 'bad.yaml'}: window: 06:00-20:00 reaches outside" in broken.stderr
