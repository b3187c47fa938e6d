"""Hypothesis strategies for amounts that fit NUMERIC(24, 8) and for portfolio operations."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

SYMBOLS = ("AAA", "BBB", "CCC")


def scaled(max_units: int, max_places: int = 8) -> st.SearchStrategy[Decimal]:
    """A positive Decimal ``units * 10**-places`` with at most ``max_places`` places."""
    return st.builds(
        lambda units, places: Decimal(units).scaleb(-places),
        st.integers(min_value=1, max_value=max_units),
        st.integers(min_value=0, max_value=max_places),
    )


quantities = scaled(10**5, 4)
"""Quantities: mostly a few places, so most products still fit 8 places."""
prices = st.one_of(scaled(10**6, 4), scaled(10**4, 8))
"""Prices: mostly up to 4 places, sometimes the full 8 (then some products are refused)."""
cash_amounts = st.one_of(scaled(10**8, 2), scaled(10**12, 8))
"""Deposits and withdrawals, down to the smallest unit."""
symbols = st.sampled_from(SYMBOLS)
