"""The fast way through a batch: every operation applied in Python, then written at once.

:class:`Grouped` applies the batch's operations to the loaded aggregate
without flushing and keeps, per changing operation, what it performed; then
one UPDATE takes the portfolio from version v to v + N (the session's own
bump is told the row already moved) and the N events go in at v + 1 .. v + N,
ascending, unnested from three arrays (each with its own key; migration
pc0004 admits events below the version the transaction wrote when each
continues the newest one, so a portfolio whose version v has no event, one
from before pc0002, falls back). When only portfolio columns changed (cash:
the common batch) the UPDATE and the events are one statement, row_flush's
combined write (``session.flush_with_batch_events``); otherwise the ORM
flushes (positions too) and one INSERT writes the events. One multi-row
INSERT claims the keys; the keys of the batch are looked up with one SELECT
(none when no ticket has a key).

Anything unusual ends the fast way with :class:`Fallback` (the unit of work
is rolled back and the batch runs again flushing per operation, which
attributes every failure to its own operation, see ``batch``): an operation
that raises (its state would have to be undone), a database error while
writing, or a key another transaction claimed meanwhile. So the fast way
only ever commits batches in which every operation succeeded, and every
caller's result comes from the unit of work that committed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Uuid, bindparam, cast, select
from sqlalchemy import insert as plain_insert
from sqlalchemy.dialects.postgresql import JSONB, insert

from portfolio_core.coalescing.detached import detached_copy
from portfolio_core.coalescing.tickets import Ticket
from portfolio_core.domain import snapshot
from portfolio_core.domain.events import PortfolioOperation
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.exactly_once import repeated_execute
from portfolio_core.persistence import idempotency
from portfolio_core.persistence.errors import translated
from portfolio_core.persistence.idempotency import StoredKey
from portfolio_core.persistence.repository import PostgreSQLPortfolioRepository
from portfolio_core.persistence.row_flush import EVENT_COLUMNS, EVENT_ROWS
from portfolio_core.persistence.schema import idempotency_keys, portfolio_events
from portfolio_core.persistence.session import flush_with_batch_events
from portfolio_core.persistence.transaction_state import transaction_state
from portfolio_core.store_call import check_version

# The batch's N events in one statement of fixed text (compiled once, whatever
# N), when the ORM flushed the rows (positions changed): see ``write``.
_INSERT_EVENTS = plain_insert(portfolio_events).from_select(
    EVENT_COLUMNS,
    select(
        cast(bindparam("pid", type_=Uuid(as_uuid=True)), Uuid(as_uuid=True)),
        EVENT_ROWS.c.version,
        cast(EVENT_ROWS.c.operations, JSONB),
        EVENT_ROWS.c.key,
    ),
)


class Fallback(Exception):
    """Leave the fast way: roll back and run the batch again, flushing per operation."""


@dataclass(eq=False)
class _Claim:
    """A key this batch claims: the row it will INSERT and what a repeat compares with."""

    stored: StoredKey
    row: dict[str, Any]


class Grouped:
    """One batch on the fast way: :meth:`apply` each ticket, then :meth:`write` them all."""

    def __init__(self, repository: PostgreSQLPortfolioRepository, portfolio: Portfolio) -> None:
        self.repository = repository
        self.portfolio = portfolio
        self.portfolio_id: UUID = portfolio.id
        self.base_version = portfolio.version
        self.changes: list[tuple[tuple[PortfolioOperation, ...], str | None]] = []
        self.stored: dict[str, StoredKey | None] = {}
        self.claims: dict[str, _Claim] = {}

    def look_up(self, tickets: list[Ticket[Any]]) -> None:
        """Fetch the stored keys of ``tickets`` not looked up yet (one SELECT)."""
        keys = {t.request.call.key for t in tickets if t.request.call.key is not None}
        keys -= set(self.stored)
        if not keys:
            return
        for key in keys:
            self.stored[key] = None
        statement = select(idempotency_keys).where(idempotency_keys.c.key.in_(sorted(keys)))
        try:
            with translated(entity_type="Portfolio", entity_id=self.portfolio_id):
                rows = self.repository.session.execute(statement).mappings().all()
        except Exception as error:
            raise Fallback(str(error)) from error
        for row in rows:
            self.stored[row["key"]] = StoredKey(
                key=row["key"],
                fingerprint=row["fingerprint"],
                portfolio_ids=tuple(row["portfolio_ids"]),
                result=idempotency.decode_result(row["result"]["value"]),
                created_at=row["created_at"],
                prior_state=row["prior_state"],
            )

    def apply(self, ticket: Ticket[Any]) -> None:
        """Apply one ticket's operation (Fallback if it raises)."""
        try:
            self._apply(ticket)
        except Exception as error:
            raise Fallback(str(error)) from error

    def _apply(self, ticket: Ticket[Any]) -> None:
        portfolio, request, pid = self.portfolio, ticket.request, self.portfolio_id
        key = request.call.key
        if key is not None:
            claim = self.claims.get(key)
            stored = claim.stored if claim is not None else self.stored.get(key)
            if stored is not None:  # a repeat: its stored result, nothing written
                result = repeated_execute(self.repository.session, stored, pid, request.operation)
                request.call.fingerprint = stored.fingerprint
                self._done(ticket, result)
                return
        check_version(pid, request.expected, portfolio.version)
        prior = snapshot.capture(portfolio) if key is not None else None
        recorded = len(portfolio.pending_operations())
        result = request.operation(portfolio)
        performed = portfolio.pending_operations()[recorded:]
        if key is not None:
            fingerprint = idempotency.fingerprint(idempotency.operations_request(pid, performed))
            encoded = {"value": idempotency.encode_result(result)}
            request.call.fingerprint = fingerprint
            row = {
                "key": key,
                "fingerprint": fingerprint,
                "portfolio_ids": [pid],
                "result": encoded,
                "prior_state": prior,
            }
            decoded = idempotency.decode_result(encoded["value"])
            stored_now = StoredKey(key, fingerprint, (pid,), decoded, datetime.now(UTC), prior)
            self.claims[key] = _Claim(stored_now, row)
        if performed:
            self.changes.append((performed, key))
            # The version this operation leads to: what the next one sees (and checks).
            portfolio._version = self.base_version + len(self.changes)
        self._done(ticket, result)

    def _done(self, ticket: Ticket[Any], result: object) -> None:
        # A copy: the operations after this one go on changing the live objects.
        ticket.result, ticket.version = detached_copy(result), self.portfolio.version
        ticket.request.version = ticket.version

    def write(self) -> None:
        """One UPDATE (v -> v + N), the N events and the keys; Fallback on any database error."""
        session, pid = self.repository.session, self.portfolio_id
        state = transaction_state(session)
        try:
            with translated(entity_type="Portfolio", entity_id=pid):
                if self.changes:
                    # The row moves from the loaded version to the last one in
                    # one UPDATE: the session's once-per-transaction bump is
                    # told it already happened.
                    state.start_versions[pid] = self.base_version
                    first = self.base_version + 1
                    events = {
                        "_event_versions": list(range(first, first + len(self.changes))),
                        "_event_operations": [
                            json.dumps([op.to_json() for op in operations])
                            for operations, _ in self.changes
                        ],
                        "_event_keys": [key for _, key in self.changes],
                    }
                    # Only portfolio columns changed: the row and its events in
                    # one statement; else the ORM's flush, then the events.
                    if not flush_with_batch_events(session, {pid: events}):
                        session.connection().execute(_INSERT_EVENTS, {"pid": pid, **events})
                state.events_written = True  # written above: COMMIT adds none
                if self.claims:
                    self._claim_keys()
        except Fallback:
            raise
        except Exception as error:
            raise Fallback(str(error)) from error

    def _claim_keys(self) -> None:
        rows = [claim.row for claim in self.claims.values()]
        statement = (
            insert(idempotency_keys)
            .values(rows)
            .on_conflict_do_nothing(index_elements=[idempotency_keys.c.key])
            .returning(idempotency_keys.c.key)
        )
        claimed = self.repository.session.execute(statement).scalars().all()
        if len(claimed) != len(rows):
            raise Fallback("a key of the batch was claimed by another transaction meanwhile")
