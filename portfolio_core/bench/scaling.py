"""Scaling rows (d): one operation's cost at a small and at a large scale, library next to raw.

* ``deposit``: one deposit into one of 64 vs one of 100,000 portfolios (the
  100,000 inserted in bulk, with their "created" events, by one statement each);
* ``positions``: opening then closing one position, and re-pricing one, on a
  portfolio holding 1 vs 10,000 open positions; and ``get`` of that portfolio
  next to a raw SELECT of its rows made into plain dicts (a read of every
  position: no flat target, its row reports the cost against raw).

(The keyed repeat at 10 vs 10,000 events is ``keyed_repeat``.) Each cost is the
median of single-thread operations in ms, the raw psycopg2 and the library
operation timed alternately (the positions rows: both scales too, op by op),
in the same process on the same database. A row
reports the library's scale ratio (large / small; the target: within 1.5x)
and its cost relative to raw at each scale. What each side committed is
checked: the cash comes back to where it started, the versions moved.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import partial
from statistics import median
from typing import Any, Final, NamedTuple
from uuid import UUID

from portfolio_core.bench import raw
from portfolio_core.bench.scenarios import AMOUNT, OPENING_CASH, Bench
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import PositionRequest
from portfolio_core.units import Milliseconds, Ratio

SMALL_PORTFOLIOS: Final = 64
SCALE_TARGET: Final[Ratio] = 1.5
_CREATED_EVENT: Final = (
    '[{"kind": "created", "arguments": {"name": "scale", "cash_balance": "%s"}}]'
)

Op = Callable[[int], object]

_OPEN: Final = (
    "INSERT INTO positions (portfolio_id, id, symbol, quantity, cost_basis, current_price, "
    "version) VALUES (%s, gen_random_uuid(), %s, 1, 1, 1, 1)"
)
_CLOSE: Final = (
    "UPDATE positions SET closed_at = now(), exit_price = 1, current_price = 1, "
    "version = version + 1 WHERE portfolio_id = %s AND symbol = %s AND closed_at IS NULL"
)
_PRICE: Final = (
    "UPDATE positions SET current_price = %s, version = version + 1 "
    "WHERE portfolio_id = %s AND symbol = %s AND closed_at IS NULL"
)
_CASH: Final = (
    "UPDATE portfolios SET cash_balance = cash_balance + %s, version = version + 1, "
    "last_updated = now() WHERE id = %s"
)
_POSITIONS: Final = (
    "SELECT id, portfolio_id, symbol, quantity, cost_basis, current_price, realized_pnl, "
    "exit_price, opened_at, closed_at, version FROM positions WHERE portfolio_id = %s "
    "ORDER BY opened_at, id"
)


def bulk_portfolios(bench: Bench, count: int) -> list[str]:
    """``count`` portfolios with OPENING_CASH and their "created" events, two statements."""
    with bench.admin.cursor() as cursor:
        cursor.execute(
            "WITH made AS (INSERT INTO portfolios (id, name, cash_balance, initial_cash, version) "
            "SELECT gen_random_uuid(), 'scale-' || g, %s, %s, 1 "
            "FROM generate_series(1, %s) AS g RETURNING id) "
            "INSERT INTO portfolio_events (portfolio_id, version, operations) "
            "SELECT id, 1, %s::jsonb FROM made RETURNING portfolio_id",
            (OPENING_CASH, OPENING_CASH, count, _CREATED_EVENT % OPENING_CASH),
        )
        ids = [str(row[0]) for row in cursor.fetchall()]
        cursor.execute("ANALYZE portfolios")
    bench.created.extend(ids)
    return ids


def _timed_each(ops: list[Op], count: int, warmup: int) -> list[Milliseconds]:
    """Median ms of each of ``ops``, run in turn op by op (so load drift hits every one alike)."""
    for i in range(warmup):
        for op in ops:
            op(-1 - i)
    times: list[list[Milliseconds]] = [[] for _ in ops]
    for i in range(count):
        for op, into in zip(ops, times, strict=True):
            started = time.perf_counter()
            op(i)
            into.append((time.perf_counter() - started) * 1000)
    return [median(each) for each in times]


def _timed(raw_op: Op, library_op: Op, ops: int, warmup: int) -> tuple[Milliseconds, Milliseconds]:
    """Median ms of each op, run alternately (so load drift hits both alike)."""
    raw_ms, library_ms = _timed_each([raw_op, library_op], ops, warmup)
    return raw_ms, library_ms


def _row(
    name: str,
    unit: str,
    small: int,
    large: int,
    costs: Mapping[int, tuple[Milliseconds, Milliseconds]],
    target: Ratio | None = SCALE_TARGET,
) -> dict[str, Any]:
    (raw_small, lib_small), (raw_large, lib_large) = costs[small], costs[large]
    scale = round(lib_large / lib_small, 3)
    return {
        "operation": name,
        "unit": unit,
        "small": small,
        "large": large,
        "raw_ms": {"small": round(raw_small, 3), "large": round(raw_large, 3)},
        "library_ms": {"small": round(lib_small, 3), "large": round(lib_large, 3)},
        "scale_ratio": scale,
        "raw_scale_ratio": round(raw_large / raw_small, 3),
        "x_raw": {
            "small": round(lib_small / raw_small, 2),
            "large": round(lib_large / raw_large, 2),
        },
        "target": target,
        "met": None if target is None else scale <= target,
    }


def _deposit(portfolio: Portfolio) -> None:
    portfolio.deposit(AMOUNT)


def _deposit_costs(bench: Bench, count: int, ops: int) -> tuple[Milliseconds, Milliseconds]:
    make = bench.portfolios if count == SMALL_PORTFOLIOS else partial(bulk_portfolios, bench)
    raw_ids = make(count)
    library_ids = [UUID(pid) for pid in make(count)]
    connection, rng = bench.connections[0], random.Random(13)
    return _timed(
        lambda i: raw.deposit_optimistic(connection, rng.choice(raw_ids), AMOUNT),
        lambda i: bench.store.execute(rng.choice(library_ids), _deposit),
        ops,
        warmup=5,
    )


def deposit_scaling(bench: Bench, large: int, ops: int) -> dict[str, Any]:
    """A deposit into a random one of SMALL_PORTFOLIOS vs of ``large`` portfolios."""
    costs = {count: _deposit_costs(bench, count, ops) for count in (SMALL_PORTFOLIOS, large)}
    return _row("deposit", "portfolios", SMALL_PORTFOLIOS, large, costs)


def _raw_trade(
    connection: raw.Connection, pid: str, statements: list[tuple[str, tuple[Any, ...]]]
) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT version FROM portfolios WHERE id = %s FOR UPDATE", (pid,))
        for statement, params in statements:
            cursor.execute(statement, params)
    connection.commit()


def _raw_get(connection: raw.Connection, pid: str) -> int:
    """The portfolio's row and its positions as plain dicts, by psycopg2; how many."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM portfolios WHERE id = %s", (pid,))
        raw.fetch_row(cursor)
        cursor.execute(_POSITIONS, (pid,))
        names = [column.name for column in cursor.description or ()]
        held = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    connection.commit()
    return len(held)


def _get_costs(
    bench: Bench, raw_pid: str, library_pid: UUID, count: int, ops: int
) -> tuple[Milliseconds, Milliseconds]:
    """``get`` of the portfolio vs the raw SELECT, each checked to hold ``count`` positions."""
    connection = bench.connections[0]
    if (
        _raw_get(connection, raw_pid) != count
        or len(bench.store.get(library_pid).positions) != count
    ):
        raise AssertionError(f"get at {count} positions: not every position was read")
    return _timed(
        lambda i: _raw_get(connection, raw_pid),
        lambda i: bench.store.get(library_pid),
        ops,
        warmup=2,
    )


class _Positions(NamedTuple):
    """Raw and library ops on two portfolios holding the same number of open positions."""

    trade: list[Op]
    """(raw, library) open then close one position."""
    price: list[Op]
    """(raw, library) re-price one position."""
    check: Callable[[], None]
    """Raises unless the library's trades added up."""
    read: tuple[Milliseconds, Milliseconds]
    """``get`` vs the raw SELECT, measured before the trades leave closed positions behind."""


def _positions(bench: Bench, count: int, ops: int) -> _Positions:
    """The ops on fresh portfolios holding ``count`` open positions (``get`` timed now)."""
    connection = bench.connections[0]
    raw_pid, library_pid = bench.big_portfolio(count), UUID(bench.big_portfolio(count))
    cash_before = bench.store.get(library_pid).cash_balance
    read = _get_costs(bench, raw_pid, library_pid, count, ops)

    def raw_open_close(i: int) -> None:
        symbol = f"T{i + 1000:06d}"
        _raw_trade(connection, raw_pid, [(_OPEN, (raw_pid, symbol)), (_CASH, (-1, raw_pid))])
        _raw_trade(connection, raw_pid, [(_CLOSE, (raw_pid, symbol)), (_CASH, (1, raw_pid))])

    def library_open_close(i: int) -> None:
        symbol = f"T{i + 1000:06d}"
        bench.store.execute(library_pid, lambda p: p.open_position(PositionRequest(symbol, 1, 1)))
        bench.store.execute(library_pid, lambda p: p.close_position(symbol, 1))

    def raw_price(i: int) -> None:
        _raw_trade(connection, raw_pid, [(_PRICE, (Decimal(11 + i % 7), raw_pid, "S000001"))])

    def library_price(i: int) -> None:
        price = Decimal(11 + i % 7)
        bench.store.execute(library_pid, lambda p: p.update_position_price("S000001", price))

    def check() -> None:
        after = bench.store.get(library_pid)
        if after.cash_balance != cash_before or len(after.positions) != count:
            raise AssertionError(f"positions scaling at {count}: the library's trades are off")

    return _Positions([raw_open_close, library_open_close], [raw_price, library_price], check, read)


def position_scaling(bench: Bench, large: int, ops: int) -> list[dict[str, Any]]:
    """Open+close one position, re-price one, and get all, on 1 vs ``large`` open positions.

    Both scales and both sides run in turn, op by op, once every portfolio is
    made and the table vacuumed: a drift of the machine (or autovacuum after
    the bulk insert) hits the small and the large scale alike.
    """
    sizes = (1, large)
    made = {count: _positions(bench, count, ops) for count in sizes}
    with bench.admin.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) positions")
    trade = _timed_each([op for count in sizes for op in made[count].trade], ops, warmup=3)
    price = _timed_each([op for count in sizes for op in made[count].price], ops, warmup=3)
    for count in sizes:
        made[count].check()

    def pairs(times: list[Milliseconds]) -> dict[int, tuple[Milliseconds, Milliseconds]]:
        return {count: (times[2 * k], times[2 * k + 1]) for k, count in enumerate(sizes)}

    return [
        _row("open+close one position", "open positions", 1, large, pairs(trade)),
        _row("re-price one position", "open positions", 1, large, pairs(price)),
        _row(
            "get",
            "open positions",
            1,
            large,
            {count: made[count].read for count in sizes},
            target=None,
        ),
    ]


def scaling_rows(bench: Bench, portfolios: int, positions: int, ops: int) -> list[dict[str, Any]]:
    """Every scaling row but the keyed repeat (``keyed_repeat``), in print order."""
    return [deposit_scaling(bench, portfolios, ops), *position_scaling(bench, positions, ops)]
