"""How well the retriever finds the right entry, on held-out questions nobody wrote into the entries.

tests/knowledge/held_out.yaml has two splits, each with in-KB questions (by the entry that answers
them) and out-of-KB questions (other companies' products, daily life) that must get "I don't know".
`calibrate` chooses the signal weights and the threshold on the validation split only; the test
split (tests/knowledge/test_retrieval.py, bench/knowledge.py) measures them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from flowspec.model import REPO_ROOT
from ivr_config.loader import load_yaml
from knowledge.model import KnowledgeError
from knowledge.retrieval import SETTINGS_PATH, Retriever, Signals

HELD_OUT_PATH = REPO_ROOT / "tests" / "knowledge" / "held_out.yaml"
SPLITS = ("validation", "test")
_QUESTIONS = {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 2}}
_SPLIT_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["in_kb", "out_of_kb"],
    "properties": {
        "in_kb": {"type": "object", "minProperties": 1, "additionalProperties": _QUESTIONS},
        "out_of_kb": _QUESTIONS,
    },
}
HELD_OUT_SCHEMA = {"type": "object", "additionalProperties": False, "required": list(SPLITS),
                   "properties": {split: _SPLIT_SCHEMA for split in SPLITS}}
# The weight grid calibration searches (phrasing, passage; lexical takes the rest).
_WEIGHT_STEPS = np.round(np.arange(0, 1.01, 0.1), 2)


@dataclass(frozen=True)
class HeldOut:
    in_kb: list[tuple[str, str]]  # (question, the entry id that answers it)
    out_of_kb: list[str]


def load_held_out(split: str, path: Path = HELD_OUT_PATH) -> HeldOut:
    data = load_yaml(path, HELD_OUT_SCHEMA, KnowledgeError)[split]
    return HeldOut(in_kb=[(query, entry_id) for entry_id, queries in data["in_kb"].items() for query in queries],
                   out_of_kb=list(data["out_of_kb"]))


@dataclass(frozen=True)
class Scored:
    """Every held-out question's signals against every served entry, computed once."""

    entry_ids: list[str]
    gold: np.ndarray  # the gold entry's column per in-KB question; -1 for out-of-KB questions
    signals: Signals


def score(retriever: Retriever, held_out: HeldOut) -> Scored:
    queries = [query for query, _ in held_out.in_kb] + held_out.out_of_kb
    index, signals = retriever.signals(queries)
    columns = {entry.id: column for column, entry in enumerate(index.entries)}
    missing = sorted({entry_id for _, entry_id in held_out.in_kb if entry_id not in columns})
    if missing:
        raise KnowledgeError(f"held-out questions name entries that are not served: {', '.join(missing)}")
    gold = np.array([columns[entry_id] for _, entry_id in held_out.in_kb] + [-1] * len(held_out.out_of_kb))
    return Scored(entry_ids=[entry.id for entry in index.entries], gold=gold, signals=signals)


def figures(scored: Scored, weights: dict[str, float], threshold: float) -> dict[str, Any]:
    """top-1/top-3 over in-KB questions (threshold ignored), and what the threshold does: in-KB
    questions answered right, answered wrong or refused; "I don't know" precision and recall
    (a refusal is right for an out-of-KB question)."""
    combined, out_of_scope = scored.signals.decide(weights)
    in_kb = scored.gold >= 0
    order = np.argsort(-combined, axis=1, kind="stable")[:, :3]
    top1 = order[:, 0] == scored.gold
    top3 = (order == scored.gold[:, None]).any(axis=1)
    refused = (combined.max(axis=1) < threshold) | out_of_scope
    right_refusals = int((refused & ~in_kb).sum())
    confusions: dict[tuple[str, str], int] = {}
    for row in np.flatnonzero(in_kb & ~top1):
        pair = (scored.entry_ids[scored.gold[row]], scored.entry_ids[order[row, 0]])
        confusions[pair] = confusions.get(pair, 0) + 1
    return {
        "in_kb_questions": int(in_kb.sum()),
        "out_of_kb_questions": int((~in_kb).sum()),
        "top1": round(float(top1[in_kb].mean()), 4),
        "top3": round(float(top3[in_kb].mean()), 4),
        "answered_right": round(float((top1 & ~refused)[in_kb].mean()), 4),
        "answered_wrong": round(float((~top1 & ~refused)[in_kb].mean()), 4),
        "in_kb_refused": round(float(refused[in_kb].mean()), 4),
        "dont_know_precision": round(right_refusals / max(1, int(refused.sum())), 4),
        "dont_know_recall": round(right_refusals / max(1, int((~in_kb).sum())), 4),
        "confusions": [{"gold": gold, "answered": answered, "count": count}
                       for (gold, answered), count in sorted(confusions.items(), key=lambda item: -item[1])],
    }


def _decisions_right(scored: Scored, combined: np.ndarray, out_of_scope: np.ndarray, threshold: float) -> int:
    """Right answers plus right refusals: what calibration maximises."""
    top = combined.argmax(axis=1)
    answered = (combined.max(axis=1) >= threshold) & ~out_of_scope
    return int((answered & (top == scored.gold)).sum() + (~answered & (scored.gold < 0)).sum())


def calibrate(scored: Scored) -> dict[str, Any]:
    """The weights and threshold with the most right decisions on these questions (ties: the better
    top-1). Thresholds tried: midway between neighbouring best scores, and 0 (always answer)."""
    best: tuple[tuple[int, float], dict[str, float], float] | None = None
    for phrasing, passage in itertools.product(_WEIGHT_STEPS, _WEIGHT_STEPS):
        lexical = round(1 - phrasing - passage, 2)
        if lexical < 0:
            continue
        weights = {"phrasing": float(phrasing), "passage": float(passage), "lexical": float(lexical)}
        combined, out_of_scope = scored.signals.decide(weights)
        top1 = float((combined.argmax(axis=1) == scored.gold)[scored.gold >= 0].mean())
        candidates = np.unique(np.round(combined.max(axis=1), 4))
        for threshold in [0.0, *((candidates[:-1] + candidates[1:]) / 2)]:
            key = (_decisions_right(scored, combined, out_of_scope, float(threshold)), top1)
            if best is None or key > best[0]:
                best = (key, weights, round(float(threshold), 4))
    assert best is not None  # the grid is never empty
    return {"weights": best[1], "threshold": best[2]}


def write_settings(weights: dict[str, float], threshold: float, calibration: dict[str, Any],
                   path: Path = SETTINGS_PATH) -> None:
    """Rewrite knowledge/retrieval.yaml with the calibrated weights and threshold."""
    current = yaml.safe_load(path.read_text(encoding="utf-8"))
    current.update(weights=weights, threshold=threshold, calibration=calibration)
    header = "".join(line + "\n" for line in path.read_text(encoding="utf-8").splitlines()
                     if line.startswith("#"))
    path.write_text(header + yaml.safe_dump(current, allow_unicode=True, sort_keys=False), encoding="utf-8")
