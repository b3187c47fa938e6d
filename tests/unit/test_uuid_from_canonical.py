"""uuid_from_canonical: the same UUID as ``UUID(text)`` for PostgreSQL's canonical text."""

from __future__ import annotations

import copy
import pickle
from uuid import UUID, SafeUUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portfolio_core.persistence.snapshot_rows import uuid_from_canonical


@given(st.uuids())
def test_it_equals_uuid_parsing_in_every_observable_way(expected: UUID) -> None:
    made = uuid_from_canonical(str(expected))

    assert type(made) is UUID
    assert made == expected
    assert hash(made) == hash(expected)
    assert (made.int, made.is_safe) == (expected.int, SafeUUID.unknown)
    assert str(made) == str(expected)
    assert repr(made) == repr(expected)
    assert pickle.loads(pickle.dumps(made)) == expected
    assert copy.deepcopy(made) == expected


def test_the_edges_of_the_range_and_a_random_one() -> None:
    for expected in (UUID(int=0), UUID(int=2**128 - 1), uuid4()):
        assert uuid_from_canonical(str(expected)) == expected


def test_it_stays_immutable() -> None:
    made = uuid_from_canonical(str(uuid4()))
    with pytest.raises(TypeError):
        made.int = 1  # type: ignore[misc]
