"""Knowledge base figures for `make bench`: the retriever on the held-out test split
(tests/knowledge/held_out.yaml) with the real embedding model, and what a question costs.

- top-1 / top-3 over in-KB questions (the threshold ignored), right and wrong answers with it;
- "I don't know" precision and recall (a refusal is right for an out-of-KB question);
- building the index from scratch (every phrasing and answer embedded), loading the model, and the
  CPU (process time, all threads) and wall time of `Retriever.answer` one question at a time.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stats import percentile
from knowledge.evaluation import figures as held_out_figures
from knowledge.evaluation import load_held_out, score
from knowledge.retrieval import Retriever


def figures() -> dict[str, Any]:
    held_out = load_held_out("test")
    with tempfile.TemporaryDirectory() as scratch:
        started, cpu_started = time.perf_counter(), time.process_time()
        retriever = Retriever(index_dir=Path(scratch))  # no index on disk: embeds every phrasing and answer
        build_seconds, build_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        accuracy = held_out_figures(score(retriever, held_out), retriever.settings.weights,
                                    retriever.settings.threshold)
        fresh = Retriever(index_dir=Path(scratch))  # the index from disk, the model not loaded yet
        started = time.perf_counter()
        fresh.answer("你好", "chat")
        load_seconds = time.perf_counter() - started
        questions = [query for query, _ in held_out.in_kb] + held_out.out_of_kb
        cpu, wall = [], []
        for question in questions:
            cpu_before, wall_before = time.process_time(), time.perf_counter()
            fresh.answer(question, "voice")
            cpu.append(1000 * (time.process_time() - cpu_before))
            wall.append(1000 * (time.perf_counter() - wall_before))
    return {
        "engine": fresh.query_engine.key,
        "entries": len(fresh.index.entries),
        "threshold": retriever.settings.threshold,
        **{key: value for key, value in accuracy.items() if key != "confusions"},
        "index_build_seconds": round(build_seconds, 1),
        "index_build_cpu_seconds": round(build_cpu, 1),
        "model_load_seconds": round(load_seconds, 2),
        "questions_timed": len(questions),
        "cpu_ms_per_question_mean": round(statistics.mean(cpu), 2),
        "cpu_ms_per_question_p95": round(percentile(cpu, 0.95), 2),
        "wall_ms_per_question_p50": round(statistics.median(wall), 2),
    }


def report_row(figures: dict[str, Any]) -> tuple[str, str]:
    """The row of docs/benchmarks.md's table (bench/run.py writes it)."""
    return (f"Knowledge base, {figures['in_kb_questions']} held-out questions over {figures['entries']} entries "
            f"+ {figures['out_of_kb_questions']} out-of-KB: top-1 / top-3 (target top-1 ≥ 0.85) / "
            "\"I don't know\" precision, recall / CPU per question",
            f"{figures['top1']:.3f} / {figures['top3']:.3f} / {figures['dont_know_precision']:.2f}, "
            f"{figures['dont_know_recall']:.2f} / {figures['cpu_ms_per_question_mean']} ms ({figures['engine']})")
