"""HotRows: the bounded, thread-safe memory of conflicts behind ``lock="auto"``'s choice."""

from __future__ import annotations

import threading

import pytest

from portfolio_core import ConcurrencyService, HotRows, ValidationError
from portfolio_core.units import Seconds


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now: Seconds = 0.0

    def __call__(self) -> Seconds:
        return self.now


def test_a_conflict_makes_a_portfolio_hot_and_only_that_one() -> None:
    rows = HotRows()
    rows.note_conflict("a")

    assert (rows.is_hot("a"), rows.is_hot("b")) == (True, False)


def test_locked_commits_in_a_row_make_one_call_probe() -> None:
    rows = HotRows(cool_after_commits=3)
    rows.note_conflict("a")
    rows.note_commit("a", locked=True)
    rows.note_commit("a", locked=True)
    assert rows.is_hot("a")
    rows.note_commit("a", locked=True)

    assert [rows.is_hot("a"), rows.is_hot("a")] == [False, True]  # one probe, others lock


def test_a_probe_that_commits_makes_it_cold() -> None:
    rows = HotRows(cool_after_commits=1)
    rows.note_conflict("a")
    rows.note_commit("a", locked=True)
    assert not rows.is_hot("a")

    rows.note_commit("a", locked=False)

    assert rows.hot_portfolios() == []
    assert not rows.is_hot("a")


def test_a_probe_that_conflicts_makes_it_hot_again() -> None:
    rows = HotRows(cool_after_commits=1)
    rows.note_conflict("a")
    rows.note_commit("a", locked=True)
    assert not rows.is_hot("a")

    rows.note_conflict("a")

    assert rows.is_hot("a")


def test_a_conflict_restarts_the_count_of_locked_commits() -> None:
    rows = HotRows(cool_after_commits=2)
    rows.note_conflict("a")
    rows.note_commit("a", locked=True)
    rows.note_conflict("a")
    rows.note_commit("a", locked=True)

    assert rows.is_hot("a")


def test_time_without_a_conflict_makes_one_call_probe() -> None:
    clock = Clock()
    rows = HotRows(cool_after=5.0, clock=clock)
    rows.note_conflict("a")
    clock.now = 4.9
    assert rows.is_hot("a")

    clock.now = 5.0

    assert [rows.is_hot("a"), rows.is_hot("a")] == [False, True]


def test_a_probe_that_never_reports_is_retried_after_the_cool_down_time() -> None:
    clock = Clock()
    rows = HotRows(cool_after=5.0, clock=clock)
    rows.note_conflict("a")
    clock.now = 5.0
    assert not rows.is_hot("a")  # the probe, which then fails some other way

    clock.now = 9.9
    assert rows.is_hot("a")
    clock.now = 10.0
    assert not rows.is_hot("a")


def test_an_unlocked_commit_of_a_portfolio_not_probed_changes_nothing() -> None:
    rows = HotRows()
    rows.note_conflict("a")
    rows.note_commit("a", locked=False)

    assert rows.is_hot("a")


def test_the_memory_is_bounded_forgetting_the_least_recently_heated() -> None:
    rows = HotRows(capacity=2)
    for pid in ("a", "b", "a", "c"):
        rows.note_conflict(pid)

    assert rows.hot_portfolios() == ["a", "c"]


def test_a_commit_on_a_cold_portfolio_is_ignored() -> None:
    rows = HotRows()
    rows.note_commit("a", locked=True)
    rows.note_commit("a", locked=False)

    assert rows.hot_portfolios() == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("capacity", 0),
        ("capacity", True),
        ("cool_after_commits", 0),
        ("cool_after_commits", 1.5),
        ("cool_after", 0.0),
        ("cool_after", float("nan")),
    ],
)
def test_bad_settings_are_refused(name: str, value: object) -> None:
    with pytest.raises(ValidationError):
        HotRows(**{name: value})  # type: ignore[arg-type]


def test_threads_noting_conflicts_keep_the_bound() -> None:
    rows = HotRows(capacity=50)
    start = threading.Barrier(8)

    def heat(worker: int) -> None:
        start.wait()
        for n in range(500):
            rows.note_conflict((worker, n))
            rows.note_commit((worker, n), locked=True)
            rows.is_hot((worker, n))

    threads = [threading.Thread(target=heat, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(rows.hot_portfolios()) == 50


def test_each_service_has_its_own_memory_unless_given_one() -> None:
    shared = HotRows()

    assert ConcurrencyService().hot_rows is not ConcurrencyService().hot_rows
    assert ConcurrencyService(hot_rows=shared).hot_rows is shared
