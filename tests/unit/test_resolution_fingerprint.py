"""Resolving a lost COMMIT through a key: a found key this call never stored is a conflict."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from portfolio_core.concurrency.retry import RetryPolicy
from portfolio_core.errors import CommitOutcomeUnknownException, IdempotencyConflictError
from portfolio_core.exactly_once import _Resolution
from portfolio_core.persistence.idempotency import StoredKey

STORED = StoredKey("K", "stored-fp", (), Decimal("101"), datetime.now(UTC), None)
LOST = CommitOutcomeUnknownException("lost")


def test_a_found_key_without_a_request_fingerprint_is_a_conflict_not_a_match() -> None:
    resolution = _Resolution("K", RetryPolicy(), lambda: None, None)
    with pytest.raises(IdempotencyConflictError) as raised:
        resolution.stored_result(STORED, LOST)
    assert raised.value.stored_fingerprint == "stored-fp"


def test_a_found_key_with_the_same_fingerprint_is_its_stored_result() -> None:
    resolution = _Resolution("K", RetryPolicy(), lambda: "stored-fp", None)
    assert resolution.stored_result(STORED, LOST) == Decimal("101")


def test_a_found_key_with_another_fingerprint_is_a_conflict() -> None:
    resolution = _Resolution("K", RetryPolicy(), lambda: "mine", None)
    with pytest.raises(IdempotencyConflictError):
        resolution.stored_result(STORED, LOST)
