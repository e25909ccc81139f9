"""`python -m flowspec lint` checks flows/; `python -m flowspec compile` writes the Rasa files."""

from __future__ import annotations

import sys

from flowspec.compile_rasa import compile_all
from flowspec.lint import lint


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    if command == "lint":
        problems = lint()
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"flow lint: {len(problems)} problem(s)")
        return 1 if problems else 0
    if command == "compile":
        for path in compile_all():
            print(f"wrote {path}")
        return 0
    print("usage: python -m flowspec lint|compile", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
