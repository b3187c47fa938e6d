"""How a Portfolio finds an open position by symbol without reading every position.

A Portfolio made in Python holds all its positions in its list. One loaded by
persistence has not read them yet: persistence installs a :class:`PositionSource`
(``Portfolio._source``, set by ``persistence.mapping.start_mappers``) that
fetches the one open position of a symbol and attaches a new one, so a command
on one symbol costs the same with 1 or 10,000 open positions; reading them all
(``positions``, ``market_value``...) still loads the whole list.

:class:`PositionBook` indexes by symbol the positions a portfolio holds in
memory (its list, indexed incrementally, plus those fetched or attached one by
one), so a lookup is O(1) and opening N positions in one unit of work is O(N).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

from portfolio_core.domain.position import Position

if TYPE_CHECKING:
    from portfolio_core.domain.portfolio import Portfolio


FETCHES_BEFORE_FULL_LOAD: Final = 8
"""Symbols fetched one at a time before a command loads the whole list instead."""


class PositionSource(Protocol):
    """Where a portfolio's positions come from when its list is not in memory."""

    def loaded(self, portfolio: Portfolio) -> bool:
        """Whether reading ``portfolio._positions`` costs no I/O (or cannot be helped)."""
        ...

    def find_open(self, portfolio: Portfolio, symbol: str) -> Position | None:
        """The portfolio's open position in ``symbol`` (its list not loaded), if any."""
        ...

    def attach(self, portfolio: Portfolio, position: Position) -> None:
        """Make a new position part of the portfolio (its list not loaded)."""
        ...


class PositionBook:
    """The positions a portfolio holds in memory, indexed by symbol."""

    __slots__ = ("by_symbol", "collection", "fetches", "indexed", "singles")

    def __init__(self) -> None:
        self.fetches = 0
        """How many symbols were fetched one by one (past a few, the list is loaded)."""
        self.collection: list[Position] | None = None
        """The list object indexed so far (a reloaded list is a new object: reindexed)."""
        self.indexed = 0
        """How many items of ``collection`` are indexed (the list only grows)."""
        self.singles: list[Position] = []
        """Positions fetched or attached one by one, perhaps not (yet) in the list."""
        self.by_symbol: dict[str, Position] = {}

    def find_open(
        self, portfolio: Portfolio, source: PositionSource | None, symbol: str
    ) -> Position | None:
        """``portfolio``'s open position in ``symbol``: indexed, else fetched by ``source``."""
        if source is None or source.loaded(portfolio):
            self.sync(portfolio._positions)
            found = self.lookup(symbol)
        elif self.fetches >= FETCHES_BEFORE_FULL_LOAD:
            # Many symbols in one unit of work: one SELECT of the whole list
            # beats a round trip per symbol (opening N positions stays O(N)).
            self.sync(portfolio._positions)
            found = self.lookup(symbol)
        else:
            found = self.lookup(symbol)
            # One found closed stays the answer: this unit of work closed it.
            if found is None:
                self.fetches += 1
                found = source.find_open(portfolio, symbol)
                if found is not None:
                    self.remember(found)
        return found if found is not None and found.is_open else None

    def attach(
        self, portfolio: Portfolio, source: PositionSource | None, position: Position
    ) -> None:
        """Add a new position: to the list if it is in memory, else through ``source``."""
        if source is None or source.loaded(portfolio):
            portfolio._positions.append(position)
            self.sync(portfolio._positions)
        else:
            source.attach(portfolio, position)
            self.remember(position)

    def remember(self, position: Position) -> None:
        """Index a position fetched or attached on its own."""
        self.singles.append(position)
        self._index(position)

    def sync(self, collection: list[Position]) -> None:
        """Index the items of ``collection`` not indexed yet."""
        if self.collection is not collection:
            self.collection, self.indexed, self.by_symbol = collection, 0, {}
            for position in self.singles:
                self._index(position)
        for position in collection[self.indexed :]:
            self._index(position)
        self.indexed = len(collection)

    def lookup(self, symbol: str) -> Position | None:
        """The position indexed for ``symbol`` (open or closed), if any."""
        return self.by_symbol.get(symbol)

    def merged(self, collection: list[Position]) -> list[Position]:
        """``collection`` followed by the single positions it does not contain."""
        if not self.singles:
            return collection
        present = {id(position) for position in collection}
        return [*collection, *(p for p in self.singles if id(p) not in present)]

    def _index(self, position: Position) -> None:
        # One open position per symbol: an open one wins over a closed one.
        current = self.by_symbol.get(position.symbol)
        if current is None or position.is_open or not current.is_open:
            self.by_symbol[position.symbol] = position
