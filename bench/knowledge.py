"""Knowledge base figures for `make bench`: the retriever on the held-out test split
(tests/knowledge/held_out.yaml) with the real embedding model, and what a question costs.

- top-1 / top-3 over in-KB questions (the threshold ignored), right and wrong answers with it;
- "I don't know" precision and recall (a refusal is right for an out-of-KB question);
- a flow's request asked as one question (提前还款要手续费吗): of the questions the NLU sends to a
  flow that asks for identity first, how many the knowledge base answers at the flow's start, and how
  many of the flows' own one-question held-out phrasings (tests/nlu/held_out/) it answers instead;
- building the index from scratch (every phrasing and answer embedded), loading the model, and the
  CPU (process time, all threads) and wall time of `Retriever.answer` one question at a time.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.nlu import held_out_examples, parse_in_rasa
from bench.stats import percentile
from bot.actions.conversation import NOT_VERIFIED
from bot.actions.flow_engine import answers_alone, is_one_question
from flowspec.model import repository_flowset
from knowledge.evaluation import HeldOut, load_held_out, score
from knowledge.evaluation import figures as held_out_figures
from knowledge.retrieval import Retriever


def figures() -> dict[str, Any]:
    held_out = load_held_out("test")
    with tempfile.TemporaryDirectory() as scratch:
        started, cpu_started = time.perf_counter(), time.process_time()
        retriever = Retriever(index_dir=Path(scratch))  # no index on disk: embeds every phrasing and answer
        build_seconds, build_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        accuracy = held_out_figures(score(retriever, held_out), retriever.settings.weights,
                                    retriever.settings.threshold)
        asked_alone = questions_asked_alone(retriever, held_out)
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
        "asked_alone": asked_alone,
        "index_build_seconds": round(build_seconds, 1),
        "index_build_cpu_seconds": round(build_cpu, 1),
        "model_load_seconds": round(load_seconds, 2),
        "questions_timed": len(questions),
        "cpu_ms_per_question_mean": round(statistics.mean(cpu), 2),
        "cpu_ms_per_question_p95": round(percentile(cpu, 0.95), 2),
        "wall_ms_per_question_p50": round(statistics.median(wall), 2),
    }


def questions_asked_alone(retriever: Retriever, held_out: HeldOut) -> dict[str, Any]:
    """The flow engine's `_question_alone` on held-out text, with the trained NLU model: the
    in-KB questions (answer entries, not flow pointers) the NLU sends to a flow that asks for identity
    first, answered right / wrong at that flow's start; and the flows' one-question held-out phrasings
    the NLU gets right, answered instead of starting their flow (a customer who wanted the flow is
    offered it after the answer)."""
    flows = repository_flowset().flows
    asks_identity = {flow.id for flow in flows.values() if flow.required_level != NOT_VERIFIED}
    answer_entries = {entry.id for entry in retriever.index.entries if not entry.flow}
    questions = [(query, entry_id) for query, entry_id in held_out.in_kb
                 if entry_id in answer_entries and is_one_question(query)]
    phrasings = [(text, intent) for text, intent in held_out_examples()
                 if intent in asks_identity and is_one_question(text)]
    with tempfile.TemporaryDirectory() as scratch:
        texts = Path(scratch) / "texts.json"
        texts.write_text(json.dumps([text for text, _ in questions + phrasings], ensure_ascii=False), "utf-8")
        intents = parse_in_rasa(texts)
    sent = [(query, entry_id) for (query, entry_id), intent in zip(questions, intents[:len(questions)], strict=True)
            if intent in asks_identity]
    answered = [(answer.entry_id, entry_id) for query, entry_id in sent
                if answers_alone(answer := retriever.consult(query, "chat").answer)]
    routed = [text for (text, want), intent in zip(phrasings, intents[len(questions):], strict=True) if intent == want]
    return {
        "kb_questions_sent_to_identity_flows": len(sent),
        "answered_right": sum(got == want for got, want in answered),
        "answered_wrong": sum(got != want for got, want in answered),
        "flow_questions_routed_right": len(routed),
        "flow_questions_answered_instead": sum(answers_alone(retriever.consult(text, "chat").answer)
                                               for text in routed),
    }


def report_rows(figures: dict[str, Any]) -> list[tuple[str, str]]:
    """The rows of docs/benchmarks.md's table (bench/run.py writes them)."""
    rows = [(f"Knowledge base, {figures['in_kb_questions']} held-out questions over {figures['entries']} entries "
             f"+ {figures['out_of_kb_questions']} out-of-KB: top-1 / top-3 (target top-1 ≥ 0.85) / "
             "\"I don't know\" precision, recall / CPU per question",
             f"{figures['top1']:.3f} / {figures['top3']:.3f} / {figures['dont_know_precision']:.2f}, "
             f"{figures['dont_know_recall']:.2f} / {figures['cpu_ms_per_question_mean']} ms ({figures['engine']})")]
    if alone := figures.get("asked_alone"):
        rows.append(("A flow's request asked as one question (提前还款要手续费吗) before identity: held-out FAQ "
                     "questions the NLU sends to such a flow answered at its start right / wrong; the flows' own "
                     "one-question phrasings answered (and the flow offered) instead",
                     f"{alone['answered_right']} / {alone['answered_wrong']} of "
                     f"{alone['kb_questions_sent_to_identity_flows']}; {alone['flow_questions_answered_instead']} "
                     f"of {alone['flow_questions_routed_right']}"))
    return rows
