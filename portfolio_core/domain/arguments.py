"""Validation of the stores' non-money arguments, shared by the sync and async stores.

Each function returns the checked value or raises :class:`ValidationError`
before any SQL runs, so a bad argument never reaches the driver (where it
would surface as a raw DataError, or worse, be stored). Amounts, prices and
quantities are checked by :mod:`portfolio_core.domain.money`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Final, TypeAlias
from uuid import UUID

from portfolio_core.errors import ValidationError
from portfolio_core.units import Seconds

MAX_LOCK_TIMEOUT: Final[Seconds] = 2_147_483.647
"""PostgreSQL's largest ``lock_timeout``: INT_MAX milliseconds, in seconds."""

MAX_VERSION: Final = 2**31 - 1
"""The largest version the ``version`` columns (INTEGER) can hold."""

MAX_RETENTION: Final = timedelta(days=365 * 1000)
"""The longest idempotency-key retention accepted (older cut-offs leave the timestamp range)."""

MAX_RESULT_DEPTH: Final = 32
"""How deeply a result stored with an idempotency key may nest lists, tuples and dicts."""

MAX_RESULT_ITEMS: Final = 10_000
"""How many values (containers, their items and leaves) such a result may hold in all."""

MAX_RESULT_TEXT: Final = 1_000_000
"""How many characters its strings (values and dict keys) may hold in all."""


def clean_text(value: str, field: str) -> str:
    """``value`` if PostgreSQL can store it as text: no NUL, no lone surrogate (not UTF-8)."""
    if "\x00" in value:
        raise ValidationError(field, value, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(field, value, "must be valid Unicode (no lone surrogates)") from None
    return value


def _seconds(value: object, field: str, *, allow_zero: bool) -> Seconds:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(field, value, "must be a number of seconds (int or float)")
    seconds = float(value) if isinstance(value, float) else value  # float-ok: a timeout
    if isinstance(seconds, float) and not math.isfinite(seconds):
        raise ValidationError(field, value, "must be finite")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValidationError(field, value, "must be >= 0" if allow_zero else "must be > 0")
    if seconds > MAX_LOCK_TIMEOUT:
        raise ValidationError(field, value, f"must be at most {MAX_LOCK_TIMEOUT} (PostgreSQL's)")
    return seconds


def lock_timeout(value: object, field: str = "lock_timeout") -> Seconds | None:
    """A row-lock timeout in seconds: None (wait as long as it takes) or 0 < t <= the maximum.

    Checked in every lock mode, including those that ignore it, so a bad
    value is refused the same way whatever the mode.
    """
    return None if value is None else _seconds(value, field, allow_zero=False)


def lock_wait(value: object, field: str = "timeout") -> Seconds | None:
    """An advisory-lock wait in seconds: None (no limit), 0 (try once) or up to the maximum."""
    return None if value is None else _seconds(value, field, allow_zero=True)


def version(value: object, field: str, *, minimum: int = 0) -> int | None:
    """A portfolio version: None, or an int from ``minimum`` to MAX_VERSION (never a bool or float).

    ``history(since_version=0)`` means every event; a portfolio exists from
    version 1 on, so ``replay`` asks for ``minimum=1``.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, value, "must be an int or None")
    if not minimum <= value <= MAX_VERSION:
        raise ValidationError(field, value, f"must be from {minimum} to {MAX_VERSION}")
    return value


def retention(value: object, field: str = "older_than") -> timedelta:
    """An idempotency-key retention: a timedelta from zero to MAX_RETENTION."""
    if not isinstance(value, timedelta) or not timedelta(0) <= value <= MAX_RETENTION:
        raise ValidationError(
            field, value, f"must be a timedelta from 0 to {MAX_RETENTION.days} days"
        )
    return value


PortfolioId: TypeAlias = UUID | str
"""A portfolio id as the stores take it: a UUID or its string form (checked before any SQL)."""


def portfolio_id(value: object, field: str = "portfolio_id") -> UUID:
    """A UUID from a UUID or its string form."""
    if isinstance(value, UUID):
        return value
    if isinstance(value, str) and len(value) <= 64:
        try:
            return UUID(value)
        except ValueError:
            pass
    raise ValidationError(field, value, "is not a UUID")


def distinct_portfolio_ids(keys: Iterable[object], field: str = "updates") -> list[UUID]:
    """The keys as UUIDs; refused if two of them (a UUID and its string) name one portfolio."""
    seen: list[UUID] = []
    for key in keys:
        pid = portfolio_id(key, field)
        if pid in seen:
            raise ValidationError(field, key, f"names portfolio {pid} twice")
        seen.append(pid)
    return seen


def mapping(value: object, field: str) -> Mapping[object, object]:
    """``value`` if it is a Mapping (a dict, ...), else ValidationError."""
    if not isinstance(value, Mapping):
        raise ValidationError(field, value, "must be a mapping (a dict)")
    return value


def storable_result(value: object, field: str = "result") -> None:
    """Refuse a result too deep, too large or holding text PostgreSQL can not store.

    Walked iteratively, so a 5,000-deep nesting is refused instead of raising
    RecursionError; the types allowed are checked by the encoder itself.
    """
    items = text_length = 0
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        current, depth = pending.pop()
        items += 1
        if items > MAX_RESULT_ITEMS:
            raise ValidationError(field, value, f"holds more than {MAX_RESULT_ITEMS} values")
        if depth > MAX_RESULT_DEPTH:
            raise ValidationError(field, value, f"nests deeper than {MAX_RESULT_DEPTH} levels")
        children: list[object] | tuple[object, ...] = ()
        if isinstance(current, str):
            text_length += len(current)
            if text_length > MAX_RESULT_TEXT:
                raise ValidationError(field, value, f"holds more than {MAX_RESULT_TEXT} characters")
            clean_text(current, field)
        elif isinstance(current, list | tuple):
            children = current
        elif isinstance(current, dict):
            children = [*current.keys(), *current.values()]
        if items + len(pending) + len(children) > MAX_RESULT_ITEMS:
            raise ValidationError(field, value, f"holds more than {MAX_RESULT_ITEMS} values")
        pending.extend((child, depth + 1) for child in children)
