"""Scenarios that need Rasa's own environment (`.venv`, Python 3.10; the services' Python cannot
import Rasa): run one as a script and read the JSON line it printed last."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from stack.services import RASA_VENV, ROOT

RASA_PYTHON = RASA_VENV / "bin" / "python"
needs_rasa = pytest.mark.skipif(not RASA_PYTHON.exists(), reason="needs Rasa's environment (make setup)")


def run_in_rasa(script: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 300) -> Any:
    """`script` run with `args` (and `env` over this environment), from the repository's root."""
    done = subprocess.run([str(RASA_PYTHON), str(script), *args], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
