"""A channel run through ivr_config/asterisk/extensions.conf (parsed by test_asterisk_config.dialplan),
priority by priority as Asterisk's PBX runs it, for the applications our dialplan uses: variables
substituted, `$[...]` comparisons evaluated, GotoIf()/Goto() followed. An application it does not
know fails the run rather than being skipped. What the outside world decides (AMD()'s verdict, the
bot ending the call) is the test's scenario."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tests.telephony.test_asterisk_config import Step, dialplan, goto_target

MAX_STEPS = 100
TEST_UUID = "5f0c8a7e-0000-4000-8000-000000000001"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(\(\))?\}")
_TOKEN = re.compile(r'"[^"]*"|!=|=|\||&')
# func_logic's IF(expression?true:false), once the variables inside are substituted.
_IF = re.compile(r"\$\{IF\((\$\[[^\]]*\])\?([^:)]*):([^)]*)\)\}")


@dataclass
class ChannelRun:
    variables: dict[str, str]
    steps: list[Step] = field(default_factory=list)  # as run, data substituted
    user_events: list[dict[str, str]] = field(default_factory=list)  # UserEvent name under "UserEvent"
    played: list[str] = field(default_factory=list)
    reached_bot: bool = False
    hung_up: bool = False

    def apps(self) -> list[str]:
        return [step.app for step in self.steps]


def substitute(text: str, variables: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name, call = match.groups()
        if call:
            assert name == "UUID", f"dialplan function {name}() is not simulated"
            return TEST_UUID
        return variables.get(name, "")
    inner = _VARIABLE.sub(value, text)
    return _IF.sub(lambda found: found.group(2) if condition(found.group(1)) else found.group(3), inner)


def condition(expression: str) -> bool:
    """`$["a" = "b" | "c" != "d" & ...]` after substitution: comparisons of quoted strings joined by
    `|` and `&` (`&` binding tighter), as Asterisk's expression parser reads them."""
    inner = expression.strip()
    assert inner.startswith("$[") and inner.endswith("]"), f"not an expression: {expression!r}"
    tokens = _TOKEN.findall(inner[2:-1])
    alternatives: list[list[bool]] = [[]]
    for index in range(0, len(tokens), 4):
        left, operator, right = tokens[index:index + 3]
        assert left.startswith('"') and right.startswith('"') and operator in ("=", "!="), tokens
        alternatives[-1].append((left == right) == (operator == "="))
        joiner = tokens[index + 3] if index + 3 < len(tokens) else None
        if joiner == "|":
            alternatives.append([])
    return any(all(part) for part in alternatives)


def run_channel(context: str, exten: str, variables: dict[str, str], *, amd_status: str = "HUMAN",
                amd_cause: str = "HUMAN-300-800") -> ChannelRun:
    """Run from context,exten,1 until Hangup() or the end of the extension (bounded)."""
    run = ChannelRun(dict(variables))
    location = (context, exten, 1)
    while location in dialplan() and len(run.steps) < MAX_STEPS:
        step = dialplan()[location]
        data = substitute(step.data, run.variables)
        run.steps.append(Step(step.context, step.exten, step.priority, step.app, data))
        here = step.context, step.exten, step.priority + 1
        if step.app == "Hangup":
            run.hung_up = True
            break
        if step.app == "Set":
            name, _, value = data.partition("=")
            run.variables[name.lstrip("_")] = value
        elif step.app == "AMD":
            run.variables |= {"AMDSTATUS": amd_status, "AMDCAUSE": amd_cause}
        elif step.app == "UserEvent":
            name, *pairs = data.split(",")
            run.user_events.append({"UserEvent": name} | dict(pair.split(": ", 1) for pair in pairs))
        elif step.app == "Playback":
            run.played.append(data.split(",")[0])
        elif step.app == "TryExec":
            assert data.startswith("AudioSocket("), f"TryExec({data}) is not simulated"
            run.reached_bot = True
            run.variables["TRYSTATUS"] = "SUCCESS"  # the bot ended the call
        elif step.app == "GotoIf":
            test, _, targets = data.rpartition("]?")
            true_target, _, false_target = targets.partition(":")
            target = true_target if condition(test + "]") else false_target
            if target:
                here = goto_target(step, target)
        elif step.app == "Goto":
            here = goto_target(step, data)
        else:
            assert step.app in ("NoOp", "WaitForSilence"), f"{step}: {step.app}() is not simulated"
        location = here
    return run
