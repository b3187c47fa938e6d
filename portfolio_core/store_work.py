"""The units of work of the stores, as :class:`StoreCall` objects over a sync repository.

Each PortfolioStore method builds its StoreCall here and runs it in a
UnitOfWork (``unit_of_work.run_in_own_unit_of_work``); AsyncPortfolioStore
runs the very same call in an AsyncUnitOfWork (``run_sync``), so the two stores
cannot drift apart: which rows are locked, in which order, and how, and what
an idempotency key stores and checks. ``open_position_transactional`` of the
repositories runs :func:`open_position` the same way.

The call itself, the argument checks and the load for a change are in
``portfolio_core.store_call``. A body that finds its idempotency key already
used returns the stored result without touching the session (``portfolio_core.exactly_once``), so
the commit its runner performs next has nothing to write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TypeVar
from uuid import UUID

from portfolio_core.concurrency.hot_rows import HotRows
from portfolio_core.domain import arguments, money
from portfolio_core.domain.arguments import PortfolioId
from portfolio_core.domain.events import PortfolioEvent
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import Position, PositionRequest
from portfolio_core.domain.price_list import validated_prices
from portfolio_core.errors import (
    ValidationError,
)
from portfolio_core.exactly_once import MISSING, execute_with_key, stored_result
from portfolio_core.persistence import idempotency
from portfolio_core.persistence.repository import PostgreSQLPortfolioRepository, as_portfolio_id
from portfolio_core.persistence.snapshot_rows import detached_snapshot
from portfolio_core.store_call import (
    LockMode,
    StoreCall,
    check_version,
    checked_expected,
    checked_key,
    checked_lock_mode,
    load_for_change,
    locked_version,
)
from portfolio_core.units import Seconds

T = TypeVar("T")


def create_portfolio(name: str, cash_balance: money.AmountLike) -> StoreCall[UUID]:
    """``create_portfolio``: a new portfolio with an opening cash balance, added."""
    portfolio = Portfolio(name, cash_balance)

    def body(repository: PostgreSQLPortfolioRepository) -> UUID:
        repository.add(portfolio)
        return portfolio.id

    return StoreCall(body, portfolio.id, operation="create_portfolio")


def snapshot(portfolio_id: PortfolioId) -> StoreCall[Portfolio]:
    """``get``: the portfolio with all its positions, detached from the session."""
    pid = as_portfolio_id(portfolio_id)

    def body(repository: PostgreSQLPortfolioRepository) -> Portfolio:
        # Built from rows, never attached: no ORM load and expunge per position.
        return detached_snapshot(repository.session, pid)

    return StoreCall(body, pid, commit=False, operation="get")


def execute(
    portfolio_id: PortfolioId,
    operation: Callable[[Portfolio], T],
    lock: str,
    lock_timeout: Seconds | None,
    idempotency_key: str | None,
    expected_version: int | None = None,
    wait_lock_timeout: Seconds | None = None,
    hot_rows: HotRows | None = None,
) -> StoreCall[T]:
    """``execute``: load per ``lock``, check ``expected_version``, call ``operation``.

    ``lock="wait"`` without a ``lock_timeout`` waits at most ``wait_lock_timeout``
    (the store passes its policy's). ``lock="auto"`` reads optimistically; an attempt
    after a version conflict takes the row lock (FOR UPDATE, same bound), and so
    does the first attempt while ``hot_rows`` (told of every conflict) says the
    portfolio is hot.

    The expected version is compared with the version loaded, so an
    optimistic attempt that loses a race is retried and then fails the check;
    a key already stored wins over the check (a repeat returns its result).

    With a key: a key already stored returns its result (after checking the
    request, see ``exactly_once.execute_with_key``); otherwise the operations
    ``operation`` performed are fingerprinted (into the call, for commit
    outcome resolution) and the key is claimed in the same transaction.
    """
    pid = as_portfolio_id(portfolio_id)
    mode = checked_lock_mode(lock)
    key = checked_key(idempotency_key)
    if mode in ("wait", "auto") and lock_timeout is None:
        lock_timeout = wait_lock_timeout
    lock_timeout = arguments.lock_timeout(lock_timeout)
    expected = checked_expected(expected_version)

    def body(repository: PostgreSQLPortfolioRepository) -> T:
        call.locked_first = (
            mode == "auto" and not call.conflicts and hot_rows is not None and hot_rows.is_hot(pid)
        )
        locks = mode == "auto" and (call.conflicts > 0 or call.locked_first)
        attempt_mode: LockMode = "wait" if locks else mode
        portfolio = call.portfolio = load_for_change(repository, pid, attempt_mode, lock_timeout)

        def check() -> None:
            check_version(pid, expected, portfolio.version)

        if key is None:
            check()
            return operation(portfolio)
        result, call.fingerprint = execute_with_key(
            repository.session, key, pid, portfolio, operation, check
        )
        return result

    call = StoreCall(body, pid, key=key, operation="execute", lock_mode=mode, hot_rows=hot_rows)
    return call


def transfer_arguments(
    from_id: PortfolioId, to_id: PortfolioId, amount: money.AmountLike
) -> tuple[UUID, UUID, Decimal]:
    """Validated (source, target, amount) of a transfer, before any SQL."""
    source, target = as_portfolio_id(from_id), as_portfolio_id(to_id)
    if source == target:
        raise ValidationError("to_id", to_id, "must differ from from_id")
    return source, target, money.positive(amount, "amount")


def transfer_expected(
    expected_version: Mapping[UUID, int] | None, source: UUID, target: UUID
) -> dict[UUID, int]:
    """``transfer``'s expected versions by portfolio id: either leg, both or none."""
    if expected_version is None:
        return {}
    arguments.mapping(expected_version, "expected_version")
    checked: dict[UUID, int] = {}
    for portfolio_id, version in expected_version.items():
        pid = as_portfolio_id(portfolio_id)
        if pid not in (source, target):
            raise ValidationError("expected_version", portfolio_id, "is not a leg of the transfer")
        checked_version = arguments.version(version, f"expected_version[{pid}]", minimum=1)
        if checked_version is None:
            raise ValidationError("expected_version", version, "must be an int")
        checked[pid] = checked_version
    return checked


def transfer(
    from_id: PortfolioId,
    to_id: PortfolioId,
    amount: money.AmountLike,
    idempotency_key: str | None,
    expected_version: Mapping[UUID, int] | None = None,
) -> StoreCall[None]:
    """``transfer``: both rows locked in primary-key order, then the cash moved.

    The legs are recorded as ``transfer_out``/``transfer_in``. With a key a
    transfer already made is not made again. ``expected_version`` maps a leg's
    portfolio id to the version it must still be at (checked once locked).
    """
    source, target, value = transfer_arguments(from_id, to_id, amount)
    key = checked_key(idempotency_key)
    expected = transfer_expected(expected_version, source, target)
    request = idempotency.fingerprint(
        {"request": "transfer", "from": source, "to": target, "amount": value}
    )

    def body(repository: PostgreSQLPortfolioRepository) -> None:
        locked = {p.id: p for p in repository.get_portfolios_for_update([source, target])}
        if key is not None and stored_result(repository.session, key, request) is not MISSING:
            return
        for pid, version in sorted(expected.items()):
            check_version(pid, version, locked[pid].version)
        locked[source].transfer_out(value, target)
        locked[target].transfer_in(value, source)
        if key is not None:
            idempotency.claim_key(repository.session, key, request, None, [source, target])

    return StoreCall(
        body, (source, target), key=key, fingerprint=request, operation="transfer", lock_mode="wait"
    )


def reprice_request(portfolio_id: PortfolioId, prices: Mapping[str, money.AmountLike]) -> str:
    """The fingerprint an idempotency key of ``update_all_prices`` is stored with."""
    validated = validated_prices(arguments.mapping(prices, "prices"))
    return idempotency.fingerprint(
        {"request": "update_all_prices", "portfolio_id": portfolio_id, "prices": dict(validated)}
    )


def update_all_prices(
    portfolio_id: PortfolioId,
    prices: Mapping[str, money.AmountLike],
    idempotency_key: str | None,
    expected_version: int | None = None,
) -> StoreCall[int]:
    """``update_all_prices`` (a repeated key returns the stored count).

    The prices are validated once, here, before any SQL. With
    ``expected_version`` the row is locked and its version checked first.
    """
    pid = as_portfolio_id(portfolio_id)
    key = checked_key(idempotency_key)
    expected = checked_expected(expected_version)
    validated = validated_prices(arguments.mapping(prices, "prices"))
    request = "" if key is None else reprice_request(pid, validated)

    def body(repository: PostgreSQLPortfolioRepository) -> int:
        if key is not None:
            stored = stored_result(repository.session, key, request)
            if stored is not MISSING:
                return int(stored)
        if expected is not None:
            actual = locked_version(repository, pid)
            if actual is not None:  # a missing portfolio is reported by the update
                check_version(pid, expected, actual)
        updated = repository.update_all_prices(pid, validated)
        if key is not None:
            idempotency.claim_key(repository.session, key, request, updated, [pid])
        return updated

    return StoreCall(body, pid, key=key, fingerprint=request, operation="update_all_prices")


def batch(updates: Mapping[UUID, Callable[[Portfolio], T]]) -> StoreCall[dict[UUID, T]]:
    """``batch_update``: every portfolio locked in key order, all or nothing."""
    arguments.distinct_portfolio_ids(arguments.mapping(updates, "updates"))
    return StoreCall(
        lambda repository: repository.batch_update_portfolios(updates),
        tuple(updates),
        operation="batch_update",
        lock_mode="wait",
    )


def open_position(portfolio_id: PortfolioId, request: PositionRequest) -> StoreCall[Position]:
    """``open_position_transactional``: load the portfolio, open the position."""
    pid = as_portfolio_id(portfolio_id)
    return StoreCall(
        lambda repository: repository.get(pid).open_position(request),
        pid,
        operation="open_position_transactional",
    )


def history(
    portfolio_id: PortfolioId, since_version: int | None
) -> StoreCall[list[PortfolioEvent]]:
    """``history`` (a read): the audit trail after ``since_version``."""
    pid = as_portfolio_id(portfolio_id)
    arguments.version(since_version, "since_version")
    return StoreCall(
        lambda repository: repository.history(pid, since_version),
        pid,
        commit=False,
        operation="history",
    )


def replay(portfolio_id: PortfolioId, version: int | None) -> StoreCall[Portfolio]:
    """``replay`` (a read): the portfolio rebuilt from its events up to ``version``."""
    pid = as_portfolio_id(portfolio_id)
    arguments.version(version, "version", minimum=1)
    return StoreCall(
        lambda repository: repository.replay(pid, version),
        pid,
        commit=False,
        operation="replay",
    )
