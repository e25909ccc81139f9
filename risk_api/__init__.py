"""Risk-check API: customer lookup, identity verification, risk decisions and account actions.

The contract is docs/risk-api.md; `python -m risk_api` serves it on 127.0.0.1:8400.
"""
