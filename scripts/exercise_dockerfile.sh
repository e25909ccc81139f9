#!/usr/bin/env bash
# Runs deploy/Dockerfile's build steps on this machine, outside Docker (there is no Docker engine
# here), in a scratch directory that stands for the image's WORKDIR: a broken step shows here
# before anyone builds the image.
#
#   bash scripts/exercise_dockerfile.sh            every step (minutes: two venvs from the registry)
#   bash scripts/exercise_dockerfile.sh --check    parse only: every COPY source exists, every RUN
#                                                  command is one this script knows how to run
#   --dockerfile PATH   another Dockerfile (tests); --keep   leave the scratch directory
#
# How the steps run here: Debian packages through scripts/ensure_debian_packages.sh (installed
# only when missing); `python3.10`/`python3.11` are this machine's (PY310/PY311, else the pyenv
# ones); pip uses its usual cache; bot/models/ is copied in as a cache, so training runs only when
# the model's inputs changed; `useradd`/`chown` are checked, not run (they would change this host).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY310="${PY310:-$(ls -d "$HOME"/.pyenv/versions/3.10*/bin/python3.10 2>/dev/null | head -n 1 || command -v python3.10 || true)}"
PY311="${PY311:-$(ls -d "$HOME"/.pyenv/versions/3.11*/bin/python3.11 2>/dev/null | head -n 1 || command -v python3.11 || true)}"
export ROOT PY310 PY311
exec python3 - "$@" <<'PY'
"""The Dockerfile's instructions, checked and (without --check) run in a scratch WORKDIR."""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(os.environ["ROOT"])
KNOWN_INSTRUCTIONS = {"FROM", "RUN", "COPY", "WORKDIR", "USER", "ENV", "EXPOSE"}
# Modules the image runs at build with a venv's python (each one this repository's).
KNOWN_MODULES = {"voice.turn_models", "flowspec", "stack.train", "knowledge"}
# What the build context leaves out (deploy/Dockerfile.dockerignore), and never copied here.
CONTEXT_EXCLUDED = {".git", ".venv", ".venv-services", "var", "bot/models", "__pycache__", ".pytest_cache",
                    "node_modules", "web/static/vendor"}
STEP_TIMEOUT_SECONDS = 3600


class StepError(Exception):
    pass


def instructions(dockerfile: Path) -> list[tuple[int, str, str]]:
    """(line number, instruction, arguments), continuation lines joined, comments dropped."""
    found: list[tuple[int, str, str]] = []
    pending, start = "", 0
    for number, line in enumerate(dockerfile.read_text().splitlines(), start=1):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not pending:
            start = number
        pending += line.rstrip("\\").strip() + " "
        if line.rstrip().endswith("\\"):
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        found.append((start, keyword.upper(), arguments.strip()))
        pending = ""
    return found


def commands(run: str) -> list[list[str]]:
    """A RUN step's commands (`a && b && c`), each split like a shell would."""
    return [shlex.split(part) for part in re.split(r"\s*&&\s*", run) if part.strip()]


def kind(command: list[str]) -> str:
    """What a RUN command is, or StepError when it is none this script knows how to run here."""
    words = [word for word in command if not re.fullmatch(r"[A-Z_]+=\S*", word)]  # VAR=value prefixes
    if words[:2] in (["apt-get", "update"], ["apt-get", "install"]) or words[:2] == ["rm", "-rf"] and \
            words[2:] == ["/var/lib/apt/lists/*"]:
        return "debian"
    if words[:1] in (["python3.10"], ["python3.11"]) and words[1:3] == ["-m", "venv"] and len(words) == 4:
        return "venv"
    if len(words) > 2 and re.fullmatch(r"\.venv(-services)?/bin/pip", words[0]) and words[1] == "install":
        return "pip"
    if len(words) > 2 and re.fullmatch(r"\.venv(-services)?/bin/python", words[0]) and words[1] == "-m" \
            and words[2] in KNOWN_MODULES:
        return "module"
    if words[:1] == ["useradd"] or words[:2] == ["chown", "-R"]:
        return "user"
    if words[:2] == ["mkdir", "-p"]:
        return "mkdir"
    if words[:2] == ["npm", "ci"]:
        return "npm"
    if words[:1] == ["cp"] and len(words) == 3 and not any(word.startswith(("/", "-")) or ".." in word
                                                           for word in words[1:]):
        return "copy"  # within the WORKDIR only
    raise StepError(f"unknown RUN command: {shlex.join(command)}")


def check(dockerfile: Path) -> list[str]:
    problems = []
    for number, keyword, arguments in instructions(dockerfile):
        where = f"{dockerfile.name}:{number}"
        if keyword not in KNOWN_INSTRUCTIONS:
            problems.append(f"{where}: instruction {keyword} unknown to this script")
        elif keyword == "COPY":
            *sources, _ = shlex.split(arguments)
            problems += [f"{where}: COPY source {source} missing" for source in sources
                         if source.startswith("--") or not (ROOT / source).exists()]
        elif keyword == "RUN":
            for command in commands(arguments):
                try:
                    kind(command)
                except StepError as error:
                    problems.append(f"{where}: {error}")
    return problems


def copy_into(source: Path, target: Path) -> None:
    def ignored(directory: str, names: list[str]) -> set[str]:
        relative = Path(directory).relative_to(ROOT)
        return {name for name in names if name in CONTEXT_EXCLUDED or str(relative / name) in CONTEXT_EXCLUDED}
    if source.is_dir():
        shutil.copytree(source, target, ignore=ignored, dirs_exist_ok=True, symlinks=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def run_command(command: list[str], workdir: Path, env: dict[str, str]) -> None:
    step = kind(command)
    if step == "user":
        return  # would add a user to this host / needs it: checked above, not run
    if step == "debian":
        if command[:2] != ["apt-get", "install"]:
            return  # the package lists: ensure_debian_packages.sh updates them when it must
        packages = [word for word in command[2:] if not word.startswith("-")]
        command = ["bash", str(ROOT / "scripts" / "ensure_debian_packages.sh"), *packages]
    elif step == "venv":
        interpreter = os.environ["PY310" if command[0] == "python3.10" else "PY311"]
        if not interpreter:
            raise StepError(f"{command[0]} not found on this machine (set PY310/PY311)")
        command = [interpreter, *command[1:]]
    assignments = {}
    while command and re.fullmatch(r"[A-Z_]+=\S*", command[0]):
        name, _, value = command.pop(0).partition("=")
        assignments[name] = value.replace("/app", str(workdir))
    subprocess.run(command, cwd=workdir, env={**env, **assignments}, check=True, timeout=STEP_TIMEOUT_SECONDS)


def exercise(dockerfile: Path, scratch: Path) -> None:
    workdir = scratch
    env = {key: value for key, value in os.environ.items() if key not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    for number, keyword, arguments in instructions(dockerfile):
        began = time.monotonic()
        if keyword == "WORKDIR":
            workdir = scratch  # the image's WORKDIR is the scratch directory
        elif keyword == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(arguments)))
        elif keyword == "COPY":
            *sources, destination = shlex.split(arguments)
            target = workdir / destination
            for source in sources:
                into_directory = (ROOT / source).is_file() and (destination.endswith("/") or target.is_dir())
                copy_into(ROOT / source, target / Path(source).name if into_directory else target)
            if (ROOT / "bot" / "models").is_dir() and (workdir / "bot").is_dir():
                shutil.copytree(ROOT / "bot" / "models", workdir / "bot" / "models", dirs_exist_ok=True)
        elif keyword == "RUN":
            for command in commands(arguments):
                run_command(command, workdir, env)
        else:
            continue
        print(f"{dockerfile.name}:{number} {keyword} {arguments[:70]}: {time.monotonic() - began:.0f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--dockerfile", type=Path, default=ROOT / "deploy" / "Dockerfile")
    arguments = parser.parse_args()
    problems = check(arguments.dockerfile)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    if arguments.check:
        print(f"{arguments.dockerfile}: every COPY source exists, every RUN step is known")
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="exercise-dockerfile-"))
    began = time.monotonic()
    try:
        exercise(arguments.dockerfile, scratch)
    except (StepError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        print(f"step failed: {error} (scratch: {scratch})", file=sys.stderr)
        return 1
    finally:
        if not arguments.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"every step ran in {time.monotonic() - began:.0f} s")
    return 0


sys.exit(main())
PY
