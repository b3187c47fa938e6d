"""Exactly-once changes: commit outcome resolution with idempotency keys.

A connection lost while COMMIT was in flight leaves the outcome unknown: the
server may have committed and only the reply was lost. ``UnitOfWork.commit``
raises CommitOutcomeUnknownException then, and :func:`run_resolving_outcome`,
wrapped around the *whole* retried unit of work (``PortfolioStore`` does it),
decides what happened:

* without an idempotency key: CommitOutcomeUnknownException at once, never a
  blind retry (it could apply the change twice);
* with a key, it looks the key up on a fresh connection (the key row is
  committed in the same transaction as the change, so it exists if and only
  if the change committed):

  - found: the change committed; its stored result is returned (after
    checking the stored fingerprint is this request's);
  - not found: PostgreSQL is atomic, nothing committed; the unit of work is
    run again from scratch (at most ``policy.max_retries`` times);
  - database unreachable for the whole retry policy (attempts and deadline):
    CommitOutcomeUnknownException carrying the key, so the caller can resolve it
    later with the same key.

A late COMMIT can not make a retry apply twice either: the retry INSERTs the
same key, which waits for any transaction still holding it and then finds it
taken (the retry ends up returning the stored result).

It also holds what a key does inside the unit of work, on a plain sync
``Session`` (so an async twin can call it through ``run_sync``):
:func:`execute_with_key`, :func:`stored_result`, :func:`repeated_execute`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from tenacity import AsyncRetrying, Retrying, retry_if_exception_type

from portfolio_core.concurrency.metrics import log_event
from portfolio_core.concurrency.retry import RetryPolicy
from portfolio_core.domain import snapshot
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.replay import replay
from portfolio_core.errors import (
    CommitOutcomeUnknownException,
    IdempotencyConflictError,
    PortfolioCoreError,
)
from portfolio_core.persistence import idempotency
from portfolio_core.persistence.events import events_with_key, load_history
from portfolio_core.persistence.idempotency import StoredKey, find_key

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine
    from sqlalchemy.orm import Session

T = TypeVar("T")


def _outcome_unknown(key: str, entity_id: object) -> CommitOutcomeUnknownException:
    return CommitOutcomeUnknownException(
        f"connection lost during COMMIT and the database stayed unreachable: "
        f"whether idempotency key {key!r} committed is unknown; retry with the same key",
        entity_type="Portfolio",
        entity_id=entity_id,
        idempotency_key=key,
    )


def lookup_key_on_fresh_connection(
    engine: Engine, key: str, policy: RetryPolicy, *, entity_id: object = None
) -> StoredKey | None:
    """Find ``key`` on a new connection, retrying while the database is unreachable.

    A disconnect invalidates the engine's whole pool, so each checkout here is
    a new connection. CommitOutcomeUnknownException (with the key) when the policy
    runs out before the database answers.
    """
    retrying = Retrying(
        stop=policy.stop(),
        wait=policy.wait(),
        sleep=policy.sleep,
        retry=retry_if_exception_type(DBAPIError),
        reraise=True,
    )

    def find() -> StoredKey | None:
        with engine.connect() as connection:
            return find_key(connection, key)

    try:
        return retrying(find)
    except DBAPIError as error:
        raise _outcome_unknown(key, entity_id) from error


async def lookup_key_on_fresh_connection_async(
    engine: AsyncEngine, key: str, policy: RetryPolicy, *, entity_id: object = None
) -> StoredKey | None:
    """:func:`lookup_key_on_fresh_connection` on an AsyncEngine (the same find_key)."""
    retrying = AsyncRetrying(
        stop=policy.stop(),
        wait=policy.wait(),
        sleep=policy.async_sleeper(),
        retry=retry_if_exception_type(DBAPIError),
        reraise=True,
    )

    async def find() -> StoredKey | None:
        async with engine.connect() as connection:
            return await connection.run_sync(find_key, key)

    try:
        return await retrying(find)
    except DBAPIError as error:
        raise _outcome_unknown(key, entity_id) from error


class _Resolution:
    """What a lost COMMIT turned out to be, decided the same way for sync and async."""

    def __init__(
        self,
        key: str,
        policy: RetryPolicy,
        request_fingerprint: Callable[[], str | None],
        entity_id: object,
    ) -> None:
        self.key = key
        self.policy = policy
        self.request_fingerprint = request_fingerprint
        self.entity_id = entity_id
        self.resolutions = 0

    def stored_result(self, stored: StoredKey | None, lost: CommitOutcomeUnknownException) -> Any:
        """The stored result if the key committed; MISSING_RESULT to run again; or raise."""
        log_event(
            "commit_outcome_resolved",
            entity_type="Portfolio",
            entity_id=self.entity_id,
            idempotency_key=self.key,
            committed=stored is not None,
        )
        if stored is not None:
            ours = self.request_fingerprint()
            if ours is None:  # no attempt stored this request with the key: another one did
                raise IdempotencyConflictError(
                    self.key,
                    stored_fingerprint=stored.fingerprint,
                    reason="a request this call never stored with it",
                ) from lost
            if ours != stored.fingerprint:
                raise IdempotencyConflictError(
                    self.key, stored_fingerprint=stored.fingerprint, request_fingerprint=ours
                ) from lost
            return stored.result
        self.resolutions += 1
        if self.resolutions > self.policy.max_retries:
            raise CommitOutcomeUnknownException(
                f"COMMIT of idempotency key {self.key!r} was lost {self.resolutions} times",
                entity_type="Portfolio",
                entity_id=self.entity_id,
                idempotency_key=self.key,
            ) from lost
        return _RUN_AGAIN


_RUN_AGAIN: Any = object()


def run_resolving_outcome(
    run: Callable[[], T],
    *,
    engine: Engine,
    policy: RetryPolicy,
    key: str | None,
    request_fingerprint: Callable[[], str | None],
    entity_id: object = None,
) -> T:
    """``run()`` (a whole retried unit of work), resolving a lost COMMIT through ``key``.

    ``request_fingerprint()`` gives the fingerprint the last attempt stored
    with the key (None if it did not get that far).
    """
    if key is None:
        return run()
    resolution = _Resolution(key, policy, request_fingerprint, entity_id)
    while True:
        try:
            return run()
        except CommitOutcomeUnknownException as lost:
            stored = lookup_key_on_fresh_connection(engine, key, policy, entity_id=entity_id)
            result = resolution.stored_result(stored, lost)
            if result is not _RUN_AGAIN:
                return result  # type: ignore[no-any-return]


async def run_resolving_outcome_async(
    run: Callable[[], Awaitable[T]],
    *,
    engine: AsyncEngine,
    policy: RetryPolicy,
    key: str | None,
    request_fingerprint: Callable[[], str | None],
    entity_id: object = None,
) -> T:
    """:func:`run_resolving_outcome` for asyncio: the same decisions, awaited."""
    if key is None:
        return await run()
    resolution = _Resolution(key, policy, request_fingerprint, entity_id)
    while True:
        try:
            return await run()
        except CommitOutcomeUnknownException as lost:
            stored = await lookup_key_on_fresh_connection_async(
                engine, key, policy, entity_id=entity_id
            )
            result = resolution.stored_result(stored, lost)
            if result is not _RUN_AGAIN:
                return result  # type: ignore[no-any-return]


MISSING: Any = object()
"""What stored_result returns when the key is not stored yet."""


def stored_result(session: Session, key: str, request_fingerprint: str) -> Any:
    """The stored result for ``key`` if it was used for this request, else MISSING.

    IdempotencyConflictError if the key was used for another request.
    """
    stored = idempotency.find_key(session, key)
    if stored is None:
        return MISSING
    if stored.fingerprint != request_fingerprint:
        raise IdempotencyConflictError(
            key, stored_fingerprint=stored.fingerprint, request_fingerprint=request_fingerprint
        )
    return stored.result


def execute_with_key(
    session: Session,
    key: str,
    pid: UUID,
    portfolio: Portfolio,
    operation: Callable[[Portfolio], T],
    check: Callable[[], object] = lambda: None,
) -> tuple[T, str]:
    """Apply ``operation`` under ``key``; return its result and the request's fingerprint.

    A key already stored returns its stored result (see :func:`repeated_execute`).
    Otherwise ``check()`` runs (the caller's expected version: a repeat of a
    committed request still gets its stored result), ``operation`` is applied
    to ``portfolio`` and the key claimed with the fingerprint of the
    operations it performed; the caller then commits, and keeps the
    fingerprint for commit outcome resolution.
    """
    stored = idempotency.find_key(session, key)
    if stored is not None:
        return repeated_execute(session, stored, pid, operation), stored.fingerprint
    check()
    prior_state = snapshot.capture(portfolio)
    recorded = len(portfolio.pending_operations())
    result = operation(portfolio)
    performed = portfolio.pending_operations()[recorded:]
    request = idempotency.operations_request(pid, performed)
    fingerprint = idempotency.fingerprint(request)
    idempotency.claim_key(session, key, fingerprint, result, [pid], prior_state)
    return result, fingerprint


def repeated_execute(
    session: Session, stored: StoredKey, pid: UUID, operation: Callable[[Portfolio], T]
) -> T:
    """The stored result of a repeated ``execute`` key, once the request is known to match.

    The callable is applied again, to a copy of the portfolio as it stood
    just before the keyed change (restored from the state stored with the
    key, so a repeat costs the same whatever the history's length; replayed
    from the audit trail for keys stored without it), and the operations it
    performs are fingerprinted. Nothing in the session is touched.
    """
    if pid not in stored.portfolio_ids:
        raise IdempotencyConflictError(
            stored.key, stored_fingerprint=stored.fingerprint, reason="another portfolio"
        )
    portfolio = (
        _replayed_before(session, stored, pid)
        if stored.prior_state is None
        else snapshot.restore(stored.prior_state)
    )
    try:
        operation(portfolio)
    except PortfolioCoreError as error:
        raise IdempotencyConflictError(
            stored.key,
            stored_fingerprint=stored.fingerprint,
            reason=f"a request that fails where it ran ({type(error).__name__})",
        ) from error
    performed = portfolio.pending_operations()
    request = idempotency.fingerprint(idempotency.operations_request(pid, performed))
    if request != stored.fingerprint:
        raise IdempotencyConflictError(
            stored.key, stored_fingerprint=stored.fingerprint, request_fingerprint=request
        )
    result: T = stored.result
    return result


def _replayed_before(session: Session, stored: StoredKey, pid: UUID) -> Portfolio:
    """The portfolio before the keyed change, replayed (keys stored before prior_state)."""
    # Pinned to the portfolio: one distribution key on Citus (docs/scaling.md).
    versions = [version for _, version in events_with_key(session, stored.key, pid)]
    before = versions[0] - 1 if versions else None
    history = load_history(session, pid, until_version=before)
    return replay(pid, history, before)
