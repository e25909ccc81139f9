"""`python -m quality`: run the inspection service (docs/quality.md).
`python -m quality check [RULES]`: check the rules and word lists, then exit (0: fine)."""

from __future__ import annotations

import asyncio
import sys

from flowspec.model import FlowError
from ivr_config.environment import SettingsError
from ivr_config.loader import ConfigError
from quality.rules import RULES_PATH, load_rules
from quality.service import QualitySettings, serve
from trust.log_format import configure_logging


def main(argv: list[str]) -> int:
    if argv[:1] == ["check"]:
        try:
            rules = load_rules(argv[1] if len(argv) > 1 else RULES_PATH)
        except ConfigError as error:
            print(f"quality: {error}", file=sys.stderr)
            return 2
        print(f"{len(rules.rules)} rules, alerts at {rules.alert_at}, "
              f"{sum(map(len, rules.forbidden.values()))} forbidden phrases")
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        configure_logging("quality")
        asyncio.run(serve(QualitySettings.from_env()))
    except (SettingsError, ConfigError, FlowError) as error:
        print(f"quality: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
