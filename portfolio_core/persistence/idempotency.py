"""Idempotency keys: a key, the request's fingerprint and its result, stored with the change.

``idempotency_keys`` gets one row per key, INSERTed in the same transaction as
the change it guards (and the change's events carry the key). So a key is
stored if and only if its change committed: after a lost COMMIT reply, looking
the key up tells whether the change happened.

* **Fingerprint**: SHA-256 of the canonical JSON of the request (its kind, the
  portfolio ids and arguments; amounts normalised, so ``"100"`` and
  ``"100.00"`` are the same request). For ``PortfolioStore.execute`` the
  request is the list of operations the callable performed.
* **Result**: JSON-able values only, encoded losslessly: None, bool, int, str
  as themselves; Decimal ``{"$decimal": "1.50"}`` (scale kept), UUID
  ``{"$uuid": ...}``, tuple ``{"$tuple": [...]}``, dict (str keys)
  ``{"$dict": {...}}``, list as a list. Anything else raises ValidationError
  before anything is written. The row stores ``{"value": <encoded>}``.
* **Claim**: ``INSERT ... ON CONFLICT DO NOTHING``. If a concurrent unit of
  work holds the same key, PostgreSQL makes this one wait for it; if that one
  committed, this one raises a retryable StaleDataException("IdempotencyKey")
  and its retry finds the stored key.
* **Retention**: rows carry ``created_at`` (database time);
  :func:`purge_keys` deletes those older than the caller's retention. A key
  purged can be used again, so keep keys longer than any client retries.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

from sqlalchemy import Interval, delete, func, literal, select
from sqlalchemy.dialects.postgresql import insert

from portfolio_core.domain.arguments import clean_text, retention, storable_result
from portfolio_core.domain.events import PortfolioOperation
from portfolio_core.domain.money import fixed
from portfolio_core.errors import StaleDataException, ValidationError
from portfolio_core.persistence.locking import Executes
from portfolio_core.persistence.schema import IDEMPOTENCY_KEY_MAX_LENGTH, idempotency_keys
from portfolio_core.persistence.transaction_state import set_idempotency_key

_TAGS: Final = frozenset({"$decimal", "$uuid", "$tuple", "$dict"})


@dataclass(frozen=True, slots=True)
class StoredKey:
    """An idempotency key as stored: its fingerprint, portfolios, decoded result and age."""

    key: str
    fingerprint: str
    portfolio_ids: tuple[UUID, ...]
    result: Any
    created_at: datetime
    prior_state: dict[str, Any] | None = None
    """The portfolio before a keyed ``execute`` (``domain.snapshot``); None otherwise."""


def validate_key(key: object) -> str:
    """A non-empty str of at most 200 characters, or ValidationError."""
    if not isinstance(key, str) or not key or len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise ValidationError(
            "idempotency_key", key, f"must be a str of 1-{IDEMPOTENCY_KEY_MAX_LENGTH} characters"
        )
    return clean_text(key, "idempotency_key")


# -- results -----------------------------------------------------------------------


def encode_result(value: object) -> Any:
    """The lossless JSON form of a result; ValidationError if it has none.

    The result is bounded first (``arguments.storable_result``: depth, size,
    text PostgreSQL can store), so the recursion below stays shallow.
    """
    storable_result(value)
    return _encode(value)


def _encode(value: object) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, UUID):
        return {"$uuid": str(value)}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if isinstance(value, tuple):
        return {"$tuple": [_encode(item) for item in value]}
    if isinstance(value, dict) and all(isinstance(name, str) for name in value):
        return {"$dict": {name: _encode(item) for name, item in value.items()}}
    raise ValidationError(
        "result",
        value,
        "can not be stored with an idempotency key: return None, bool, int, str, Decimal, "
        "UUID, or lists, tuples and str-keyed dicts of them",
    )


def decode_result(data: Any) -> Any:
    """The inverse of :func:`encode_result`."""
    if isinstance(data, list):
        return [decode_result(item) for item in data]
    if isinstance(data, dict):
        if len(data) != 1 or next(iter(data)) not in _TAGS:
            raise ValidationError("result", data, "is not an encoded result")
        tag, payload = next(iter(data.items()))
        if tag == "$decimal":
            return fixed(Decimal(payload))
        if tag == "$uuid":
            return UUID(payload)
        if tag == "$tuple":
            return tuple(decode_result(item) for item in payload)
        return {name: decode_result(item) for name, item in payload.items()}
    return data


# -- fingerprints --------------------------------------------------------------------


def canonical_amount(value: Decimal) -> str:
    """The same text for equal amounts: ``100``, ``100.0`` and ``1E+2`` all give ``"100"``."""
    return format(value.normalize(), "f")


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        return canonical_amount(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(name): _canonical(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    return value


def fingerprint(request: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the request's canonical JSON."""
    encoded = json.dumps(_canonical(request), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()


def operations_request(
    portfolio_id: UUID, operations: Sequence[PortfolioOperation]
) -> dict[str, Any]:
    """The request an ``execute`` callable made: the operations it performed on the portfolio."""
    return {
        "request": "execute",
        "portfolio_id": portfolio_id,
        "operations": [{"kind": op.kind, "arguments": dict(op.arguments)} for op in operations],
    }


# -- storage ---------------------------------------------------------------------------


def find_key(executor: Executes, key: str) -> StoredKey | None:
    """The stored key, or None. ``executor`` is a Session or a Connection."""
    row = (
        executor.execute(select(idempotency_keys).where(idempotency_keys.c.key == key))
        .mappings()
        .one_or_none()
    )
    if row is None:
        return None
    return StoredKey(
        key=row["key"],
        fingerprint=row["fingerprint"],
        portfolio_ids=tuple(row["portfolio_ids"]),
        result=decode_result(row["result"]["value"]),
        created_at=row["created_at"],
        prior_state=row["prior_state"],
    )


def claim_key(
    session: Any,
    key: str,
    request_fingerprint: str,
    result: object,
    portfolio_ids: Sequence[UUID],
    prior_state: Mapping[str, Any] | None = None,
) -> None:
    """Store the key with its fingerprint and result in this transaction; tag its events.

    ``session`` is a sync Session. StaleDataException("IdempotencyKey") if a
    concurrent unit of work committed the key first (retry: it will be found).
    """
    encoded = {"value": encode_result(result)}
    statement = (
        insert(idempotency_keys)
        .values(
            key=key,
            fingerprint=request_fingerprint,
            portfolio_ids=sorted(portfolio_ids),
            result=encoded,
            prior_state=None if prior_state is None else dict(prior_state),
        )
        .on_conflict_do_nothing(index_elements=[idempotency_keys.c.key])
        .returning(idempotency_keys.c.key)
    )
    if session.execute(statement).scalar_one_or_none() is None:
        raise StaleDataException("IdempotencyKey", key, None, None)
    set_idempotency_key(session, key)


def purge_keys(executor: Executes, older_than: timedelta) -> int:
    """Delete the keys created more than ``older_than`` ago (database time); return how many."""
    retention(older_than)
    cutoff = func.now() - literal(older_than, Interval())
    result = executor.execute(
        delete(idempotency_keys).where(idempotency_keys.c.created_at < cutoff)
    )
    return int(result.rowcount)
