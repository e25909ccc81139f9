"""The Asterisk configuration in ivr_config/asterisk, read the way Asterisk reads it: hand-over
variables reach the agent, a gateway that is down sends callers to the failover instead of hanging
up, and the agents' queue speaks Chinese, plays hold music and sends callers back when it is empty."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from telephony.priority import load_priority_rules
from telephony.queue_sounds import LANGUAGE, PROMPTS

REPO = Path(__file__).resolve().parents[2]
CONF_DIR = REPO / "ivr_config" / "asterisk"
GATEWAY_SOURCE = REPO / "telephony" / "gateway.py"
AGENT_QUEUE = "agents"
# Which failover each context's AudioSocket() falls back to.
FAILOVER_FOR = {"ivr-inbound": "ivr-failover,inbound,1", "ivr-handover": "ivr-failover,agents,1",
                "ivr-outbound": "ivr-failover,outbound,1"}
TRY_FAILED = re.compile(r'\$\["\$\{TRYSTATUS\}" != "SUCCESS"\]\?(?P<target>[^:]+)')
# Asterisk's ast_false(): the values a yes/no option reads as "no".
FALSE = {"no", "false", "n", "f", "0", "off"}
# app_queue's parse_empty_options(): the preset words and the conditions they stand for.
EMPTY_PRESETS = {"strict": {"penalty", "invalid", "paused", "unavailable"}, "loose": {"penalty", "invalid"}}
CLASSIC_EMPTY = {"penalty", "invalid", "paused"}  # joinempty=no / leavewhenempty=yes


@dataclass(frozen=True)
class Step:
    context: str
    exten: str
    priority: int
    app: str
    data: str


def read_conf(name: str) -> dict[str, list[tuple[str, str]]]:
    """Asterisk's config syntax as far as these files use it: `[section]`, `key = value` and
    `key => value` lines, `;` comments (`\\;` is a literal semicolon)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    section = None
    for number, raw in enumerate((CONF_DIR / name).read_text(encoding="utf-8").splitlines(), 1):
        line = re.split(r"(?<!\\);", raw, maxsplit=1)[0].strip()
        if not line:
            continue
        header = re.fullmatch(r"\[([^\]]+)\]", line)
        if header:
            section = header.group(1)
            sections.setdefault(section, [])
            continue
        key, separator, value = line.partition("=")
        assert separator and section is not None, f"{name}:{number}: not a setting: {raw!r}"
        sections[section].append((key.strip(), value.removeprefix(">").strip()))
    return sections


@functools.cache
def dialplan() -> dict[tuple[str, str, int], Step]:
    """extensions.conf's steps by (context, exten, priority); `n` is the previous priority + 1."""
    steps: dict[tuple[str, str, int], Step] = {}
    for context, entries in read_conf("extensions.conf").items():
        exten, priority = "", 0
        for key, value in entries:
            assert key in ("exten", "same"), f"[{context}] unexpected {key!r}"
            if key == "exten":
                exten, value = value.split(",", 1)
            number, command = value.split(",", 1)
            label = re.fullmatch(r"(n|\d+)(\(\w+\))?", number)
            assert label, f"[{context}] bad priority {number!r}"
            priority = priority + 1 if label.group(1) == "n" else int(label.group(1))
            app, _, data = command.partition("(")
            assert data.endswith(")"), f"[{context}] {command!r}: application without (...)"
            steps[context, exten, priority] = Step(context, exten, priority, app, data[:-1])
    return steps


def walk(context: str, exten: str, priority: int = 1) -> list[Step]:
    """The steps a channel runs from context,exten,priority, following Goto() but not GotoIf()."""
    steps: list[Step] = []
    location = (context, exten, priority)
    while location in dialplan() and len(steps) < 100:
        step = dialplan()[location]
        steps.append(step)
        if step.app == "Hangup":
            break
        location = goto_target(step, step.data) if step.app == "Goto" else (context, exten, priority + 1)
        context, exten, priority = location
    return steps


def goto_target(step: Step, target: str) -> tuple[str, str, int]:
    parts = target.split(",")
    where = [step.context, step.exten][: 3 - len(parts)] + parts
    return where[0], where[1], int(where[2])


def before_queue(steps: list[Step]) -> list[Step]:
    apps = [step.app for step in steps]
    assert "Queue" in apps, f"no Queue() on the path {steps}"
    return steps[:apps.index("Queue")]


def queue_settings() -> dict[str, str]:
    return {key: value for key, value in read_conf("queues.conf")[AGENT_QUEUE] if key != "member"}


def empty_conditions(value: str, joinempty: bool) -> set[str]:
    """What makes app_queue count a member as absent for joinempty / leavewhenempty."""
    conditions: set[str] = set()
    for word in (part.strip().lower() for part in value.split(",")):
        if word in EMPTY_PRESETS:
            conditions = set(EMPTY_PRESETS[word])
        elif word in ("yes", "no"):
            conditions = CLASSIC_EMPTY if (word == "no") == joinempty else set()
        else:
            conditions.add(word)
    return conditions


def referenced_sounds() -> set[str]:
    """Every sound the configuration plays by name: Playback() files and the queue's announcements
    (a name in a variable, a campaign's machine message, is the dialler's: tests/outbound)."""
    names = {name for step in dialplan().values() if step.app == "Playback"
             for name in step.data.split(",")[0].split("&") if not name.startswith("${")}
    return (names | set(queue_settings().get("periodic-announce", "").split(","))) - {""}


def moh_directory() -> str:
    """The directory of the queue's music-on-hold class (relative to Asterisk's data directory)."""
    return dict(read_conf("musiconhold.conf")[queue_settings()["musicclass"]])["directory"]


def test_handover_makes_every_variable_the_gateway_sets_inheritable_before_queueing() -> None:
    # The gateway's Setvars: the keys of the variables it puts on the channel before the Redirect.
    gateway_variables = set(re.findall(r'"(IVR_[A-Z_]+)":', GATEWAY_SOURCE.read_text()))
    assert {"IVR_SUMMARY", "IVR_HANDOFF_ID"} <= gateway_variables, "telephony/gateway.py no longer Setvars these"
    last_set: dict[str, str] = {}
    for step in before_queue(walk("ivr-handover", "agents")):
        if step.app == "Set":
            name, _, _ = step.data.partition("=")
            last_set[name.lstrip("_")] = step.data
    for name in gateway_variables | {"IVR_UUID"}:
        # "__": inherited by the agent's channel and every channel after it (one "_" stops at the first).
        assert last_set.get(name, "").startswith(f"__{name}="), f"{name} is not inheritable when Queue() dials"
    for name in ("IVR_HANDOFF_ID", "IVR_SUMMARY", "IVR_UUID"):
        assert last_set[name] == f"__{name}=${{{name}}}"


def test_every_audiosocket_runs_in_tryexec_and_a_failure_reaches_the_failover() -> None:
    checked = []
    for (context, exten, priority), step in dialplan().items():
        assert step.app != "AudioSocket", f"{step}: a bare AudioSocket() hangs up when the gateway is down"
        if step.app == "TryExec" and step.data.startswith("AudioSocket("):
            check = dialplan().get((context, exten, priority + 1))
            assert check is not None and check.app == "GotoIf", f"{step}: TRYSTATUS is not checked next"
            failed = TRY_FAILED.fullmatch(check.data)
            # != SUCCESS: FAILED (no connection, broken connection) and NOAPP (module missing) alike.
            assert failed, f"{check}: expected GotoIf($[\"${{TRYSTATUS}}\" != \"SUCCESS\"]?<failover>)"
            assert failed["target"] == FAILOVER_FOR[context]
            assert goto_target(check, failed["target"]) in dialplan()
            # SUCCESS is the bot ending the call (hang-up message or closed socket): hang up.
            assert dialplan()[context, exten, priority + 2].app == "Hangup"
            checked.append(context)
        else:
            assert "AudioSocket(" not in step.data, f"{step}: AudioSocket() outside TryExec()"
    assert sorted(checked) == sorted(FAILOVER_FOR)


def test_failover_apologises_then_queues_an_inbound_caller_at_normal_priority() -> None:
    steps = walk("ivr-failover", "inbound")
    apps = [step.app for step in steps]
    waiting = before_queue(steps)
    queue_call = steps[len(waiting)]
    assert queue_call.data.split(",")[0] == AGENT_QUEUE
    assert "Playback" in [step.app for step in waiting]
    settings = dict(step.data.split("=", 1) for step in waiting if step.app == "Set")
    assert settings.get("QUEUE_PRIO") == str(load_priority_rules().default.queue_priority)
    assert {"__IVR_UUID", "__IVR_SUMMARY"} <= set(settings), "the agent must see the call's id and why it came"
    after = apps[len(waiting) + 1:]
    assert "Queue" not in after and "Playback" in after and after[-1] == "Hangup", "no agent: say so and hang up"


def test_failover_of_an_outbound_call_apologises_and_hangs_up() -> None:
    apps = [step.app for step in walk("ivr-failover", "outbound")]
    assert "Playback" in apps and apps[-1] == "Hangup"
    assert "Queue" not in apps, "we called the customer: do not put them on hold for an agent"


def test_calls_look_for_prompts_in_the_rendered_language() -> None:
    for context in ("ivr-inbound", "ivr-outbound"):
        steps = walk(context, "s")
        to_bot = next(index for index, step in enumerate(steps) if "AudioSocket" in (step.app, step.data[:11]))
        assert f"CHANNEL(language)={LANGUAGE}" in [step.data for step in steps[:to_bot] if step.app == "Set"], context


def test_queue_plays_no_stock_english_prompts_but_chinese_ones_over_hold_music() -> None:
    queue = queue_settings()
    assert queue.get("announce-frequency", "0") == "0"
    assert queue.get("announce-position", "yes").lower() in FALSE  # app_queue's default is yes
    assert queue.get("announce-holdtime", "no").lower() in FALSE
    assert queue.get("reportholdtime", "no").lower() in FALSE
    assert not [key for key in queue if key.startswith("queue-")], "stock sound overrides"
    announcements = queue["periodic-announce"].split(",")
    assert set(announcements) <= set(PROMPTS)
    assert int(queue["periodic-announce-frequency"]) > 0
    moh_class = dict(read_conf("musiconhold.conf")[queue["musicclass"]])
    assert moh_class["mode"] == "files"


def test_an_empty_queue_sends_callers_back_at_once_but_busy_agents_are_waited_for() -> None:
    queue = queue_settings()
    for option in ("joinempty", "leavewhenempty"):
        conditions = empty_conditions(queue.get(option, ""), joinempty=option == "joinempty")
        # Logged out (unavailable) or nonexistent (invalid, e.g. the placeholder member) is no agent.
        assert {"unavailable", "invalid"} <= conditions, f"{option} = {queue.get(option)!r}"
        assert not {"inuse", "ringing"} & conditions, f"{option}: callers must be able to wait for busy agents"


def test_the_renderer_makes_exactly_the_sounds_the_configuration_plays() -> None:
    assert referenced_sounds() == set(PROMPTS)
