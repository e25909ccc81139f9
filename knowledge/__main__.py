"""`python -m knowledge lint` checks knowledge/entries/; `python -m knowledge index` builds the index the
action server answers from (`make train` runs it); `python -m knowledge calibrate` chooses the
retriever's weights and threshold on the held-out validation split and writes knowledge/retrieval.yaml;
`python -m knowledge ask QUESTION [--channel chat|voice]` answers one question (to try an edit)."""

from __future__ import annotations

import argparse
import json
import sys

from knowledge.lint import lint
from knowledge.model import CHANNELS


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m knowledge", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("lint", help="check every entries file")
    commands.add_parser("index", help="build the index of the current entries (kept on disk)")
    commands.add_parser("calibrate", help="choose weights and threshold on the validation split")
    ask = commands.add_parser("ask", help="answer one question")
    ask.add_argument("question")
    ask.add_argument("--channel", choices=CHANNELS, default="chat")
    arguments = parser.parse_args(argv)
    if arguments.command == "lint":
        problems = lint()
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"knowledge lint: {len(problems)} problem(s)")
        return 1 if problems else 0
    # The retriever loads the embedding model: only for the commands that need it.
    from knowledge.retrieval import Retriever

    retriever = Retriever()
    if arguments.command == "index":
        print(f"knowledge index: {len(retriever.index.entries)} entries, {retriever.index.content_hash}")
        return 0
    if arguments.command == "ask":
        answer = retriever.answer(arguments.question, arguments.channel)
        hits = [{"entry_id": hit.entry_id, "score": round(hit.score, 4)}
                for hit in retriever.search(arguments.question)]
        print(json.dumps({"answer": answer.__dict__ if answer else None, "best": hits}, ensure_ascii=False, indent=2))
        return 0
    from knowledge.evaluation import calibrate, figures, load_held_out, score, write_settings

    scored = score(retriever, load_held_out("validation"))
    chosen = calibrate(scored)
    seen = figures(scored, chosen["weights"], chosen["threshold"])
    write_settings(chosen["weights"], chosen["threshold"],
                   {"split": "validation", **{key: value for key, value in seen.items() if key != "confusions"}})
    print(json.dumps({**chosen, "validation": seen}, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
