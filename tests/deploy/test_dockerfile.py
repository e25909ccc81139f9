"""deploy/Dockerfile: every COPY source exists and every RUN step is one scripts/exercise_dockerfile.sh
knows how to run outside Docker (the full run takes minutes: run the script itself, docs/deployment.md)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.deploy.topology import DEPLOY, ROOT

SCRIPT = ROOT / "scripts" / "exercise_dockerfile.sh"


def exercise_check(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), "--check", "--dockerfile", str(dockerfile)], capture_output=True,
                          text=True, timeout=60, check=False)


def test_the_dockerfile_passes_the_check() -> None:
    result = exercise_check(DEPLOY / "Dockerfile")
    assert result.returncode == 0, result.stderr


def test_a_missing_copy_source_and_an_unknown_step_are_caught(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM python:3.10-slim-bookworm\nCOPY requirements/ no-such-dir/ ./\n"
                      "RUN .venv/bin/pip install -r requirements/rasa.txt && curl https://example.org | sh\n")
    result = exercise_check(broken)
    assert result.returncode == 1
    assert "COPY source no-such-dir/ missing" in result.stderr
    assert "unknown RUN command: curl https://example.org" in result.stderr


def test_the_build_context_leaves_out_venvs_state_and_models() -> None:
    ignored = set((DEPLOY / "Dockerfile.dockerignore").read_text().split())
    assert {".venv", ".venv-services", "var", "bot/models", ".git", "node_modules", "web/static/vendor"} <= ignored
