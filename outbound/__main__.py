"""`python -m outbound`: run the dialler (docs/outbound.md).
`python -m outbound check [DIR]`: check the campaign files and the policy, then exit (0: fine)."""

from __future__ import annotations

import asyncio
import sys

from flowspec.model import FlowError, load_flowset
from ivr_config.environment import SettingsError
from ivr_config.loader import ConfigError
from outbound.campaigns import CAMPAIGNS_DIR, load_campaigns, load_policy
from outbound.queue import QueueSchemaError
from outbound.service import OutboundSettings, serve
from telephony.ami import AmiLoginError
from trust.log_format import configure_logging


def check(directory: str) -> int:
    try:
        campaigns = load_campaigns(load_flowset(), directory)
        load_policy(directory)
    except (ConfigError, FlowError) as error:
        print(f"outbound: {error}", file=sys.stderr)
        return 2
    for campaign in campaigns.values():
        print(f"{campaign.id}: {'enabled' if campaign.enabled else 'disabled'}, flow {campaign.flow}, "
              f"{campaign.selection.describe()}, {campaign.window.start:%H:%M}-{campaign.window.end:%H:%M}")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["check"]:
        return check(argv[1] if len(argv) > 1 else str(CAMPAIGNS_DIR))
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        configure_logging("outbound")  # a number never reaches a log line, whoever writes it
        settings = OutboundSettings.from_env()
        asyncio.run(serve(settings))
    except (SettingsError, ConfigError, FlowError, QueueSchemaError, AmiLoginError) as error:
        print(f"outbound: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
