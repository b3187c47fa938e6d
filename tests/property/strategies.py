"""This project's mixes of the kit's strategies (portfolio_core.testing.strategies)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

from portfolio_core.testing import strategies as pcst

SYMBOLS = pcst.DEFAULT_SYMBOLS


def scaled(max_units: int, max_places: int = 8) -> st.SearchStrategy[Decimal]:
    """A positive Decimal up to ``max_units`` with at most ``max_places`` places."""
    return pcst.decimals_at_scale(Decimal(1).scaleb(-max_places), max_units, max_places=max_places)


quantities = pcst.quantities()
"""Quantities: up to 4 places, so most products still fit 8 places."""
prices = st.one_of(pcst.prices(), pcst.prices(max_value=10**4, max_places=8))
"""Prices: mostly up to 4 places, sometimes the full 8 (then some products are refused)."""
cash_amounts = st.one_of(pcst.amounts(max_value=10**8, max_places=2), pcst.amounts())
"""Deposits and withdrawals, down to the smallest unit."""
symbols = pcst.symbols(SYMBOLS)
