"""Outbound campaigns: whom the dialler calls, when and how often, and what came of each call.

- `campaigns`: campaign files (`ivr_config/campaigns/*.yaml`) and the compliance policy file;
- `compliance`: the collection rules, enforced in code (a campaign can only be stricter);
- `queue`: the persistent job queue (SQLite or PostgreSQL) with exactly-once dialling;
- `directory`: the customers a campaign selects and their contact facts, from the risk API;
- `originator`: placing a call (AMI `Originate` into `ivr-outbound`);
- `dialer`: the loop tying them together; `service`: `python -m outbound`.

docs/outbound.md describes all of it.
"""
