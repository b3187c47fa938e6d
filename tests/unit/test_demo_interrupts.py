"""The demo's worker loop turns Ctrl-C and SIGTERM into a flag it checks itself."""

from __future__ import annotations

import signal
import threading

import pytest

from portfolio_core.demo.runner import INTERRUPTS, _interrupts_as_flag


@pytest.mark.parametrize("number", INTERRUPTS)
def test_a_signal_during_the_run_sets_the_flag_instead_of_raising(number: int) -> None:
    before = signal.getsignal(number)
    with _interrupts_as_flag() as interrupted:
        assert not interrupted.is_set()
        signal.raise_signal(number)  # its Python handler has run when this returns
        assert interrupted.is_set()
    assert signal.getsignal(number) is before


def test_outside_the_main_thread_nothing_is_installed() -> None:
    seen: list[bool] = []

    def run() -> None:
        with _interrupts_as_flag() as interrupted:
            seen.append(interrupted.is_set())

    before = {number: signal.getsignal(number) for number in INTERRUPTS}
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=10)
    assert seen == [False]
    assert {number: signal.getsignal(number) for number in INTERRUPTS} == before
