"""The coalescers' wake-ups and the lane's hand-over, without a database.

Threads wake on a one-shot bare lock (``threads.Signal``); tasks await a
Future that the leader resolves (True) or a timer (False) when the bound runs
out; a caller still owed an outcome after that waits on a fresh Future.
The lane hands the lead over apart from settling the batch (at the COMMIT point).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any
from uuid import uuid4

import pytest

from portfolio_core.coalescing import tasks, threads
from portfolio_core.coalescing.tickets import CoalescedCall, Lane, Ticket
from portfolio_core.store_call import StoreCall


def _ticket() -> Ticket[Any]:
    call: StoreCall[Any] = StoreCall(lambda repository: None, None)
    return Ticket(CoalescedCall(call, uuid4(), lambda portfolio: None, None, 1.0))


def test_a_thread_signal_wakes_its_waiter_once() -> None:
    signal = threads.Signal()
    assert not signal.wait(0)  # not set: the bound runs out
    woke = threading.Event()
    waiter = threading.Thread(target=lambda: woke.set() if signal.wait(None) else None)
    waiter.start()
    signal.set()
    waiter.join(30)
    assert woke.is_set()


def test_the_lane_hands_the_lead_over_apart_from_settling() -> None:
    lane: Lane[str] = Lane()
    taken, first, second = _ticket(), _ticket(), _ticket()
    lane.enqueue(taken, "taken")
    assert lane.take(1, lambda ticket: True) == [taken]
    lane.enqueue(first, "first")
    lane.enqueue(second, "second")
    assert lane.pass_lead() == "first"
    assert first.promoted
    assert not second.promoted
    assert list(lane.queue) == [second]
    assert lane.settled([taken]) == ["taken"]
    assert lane.settled([taken]) == []  # each signal is handed out once
    assert lane.release([]) == (["second"], False)
    assert lane.pass_lead() is None  # nobody queued: the lane closes


@pytest.mark.asyncio
async def test_a_task_wait_is_woken_or_runs_out() -> None:
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[bool] = loop.create_future()
    loop.call_soon(tasks._wake, [woken])
    assert await tasks._waited(woken, 30.0)
    assert not await tasks._waited(loop.create_future(), 0.0)


@pytest.mark.asyncio
async def test_a_waiter_still_owed_an_outcome_waits_on_a_fresh_future() -> None:
    loop = asyncio.get_running_loop()
    lane: Lane[asyncio.Future[bool]] = Lane()
    ticket = _ticket()
    own: asyncio.Future[bool] = loop.create_future()
    lane.enqueue(ticket, own)
    assert tasks._rearmed(lane, ticket) is own  # still pending: the same one
    own.cancel()  # its task was cancelled (or its timer ran out)
    fresh = tasks._rearmed(lane, ticket)
    assert fresh is not None
    assert fresh is not own
    assert not fresh.done()
    assert lane.settled([ticket]) == [fresh]  # the leader wakes the fresh one
    assert tasks._rearmed(lane, ticket) is None  # woken: nothing more to wait for
