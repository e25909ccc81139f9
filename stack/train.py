"""Train the Rasa model only when its inputs changed.

The model file is named after a hash of everything training reads (config, components, generated
domain and data, Jieba dictionary, and the Rasa environment's lock file, which pins the sentence
embedding model's package), so "is the model stale?" is "does bot/models/<hash>.tar.gz exist?".
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from stack.services import MODELS_DIR, RASA_VENV, ROOT

BOT = ROOT / "bot"
TRAINING_INPUTS = ["config.yml", "components.py", "embeddings.py", "domain.yml", "data/nlu.yml", "data/rules.yml",
                   "jieba/userdict.txt", "../requirements/rasa.lock"]


def inputs_hash() -> str:
    digest = hashlib.sha256()
    for relative in TRAINING_INPUTS:
        digest.update(relative.encode())
        digest.update((BOT / relative).read_bytes())
    return digest.hexdigest()[:16]


def train(out_dir: Path, name: str, quiet: bool = False, cache_dir: Path | None = None) -> int:
    """`rasa train` into out_dir/<name>.tar.gz; the exit code.

    `cache_dir` replaces Rasa's component cache (bot/.rasa/cache) and the cache of training
    sentence embeddings (var/nlu-embeddings), e.g. an empty one to time a training from scratch.
    """
    command = [str(RASA_VENV / "bin" / "rasa"), "train", "--fixed-model-name", name, "--out", str(out_dir)]
    # PYTHONPATH: the pipeline names a custom component, bot.components.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if cache_dir:
        env["RASA_CACHE_DIRECTORY"] = str(cache_dir)
        env["NLU_EMBEDDING_CACHE"] = str(cache_dir / "embeddings")
    result = subprocess.run(command, cwd=BOT, check=False, capture_output=quiet, env=env)
    return result.returncode


def main() -> int:
    name = inputs_hash()
    model = MODELS_DIR / f"{name}.tar.gz"
    if model.exists():
        print(f"model up to date: {model.relative_to(ROOT)}")
        return 0
    print(f"training {model.relative_to(ROOT)} (inputs changed)", flush=True)
    code = train(MODELS_DIR, name)
    if code != 0:
        return code
    for stale in MODELS_DIR.glob("*.tar.gz"):
        if stale != model:
            stale.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
