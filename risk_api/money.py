"""Money is stored in integer fen (no float drift) and exchanged as yuan with two decimals."""
from __future__ import annotations


def yuan(fen: int) -> float:
    return round(fen / 100, 2)


def to_fen(amount_yuan: float) -> int:
    return round(amount_yuan * 100)


def yuan_text(fen: int) -> str:
    """12.50 -> "12.5", 300.00 -> "300": how the assistant says an amount."""
    return f"{fen / 100:.2f}".rstrip("0").rstrip(".")
