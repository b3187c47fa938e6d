"""OpenTelemetry spans of real store calls, sync and async, recorded by the SDK's
in-memory exporter; and a listener that raises breaks no store call.

Conflicts are forced (another writer commits between the load and the
commit), so the attempts are exactly known.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from portfolio_core import OptimisticLockException, VersionMismatchError
from portfolio_core.observability import remove_listener
from portfolio_core.observability.otel import instrument_opentelemetry
from tests.integration.contract_api import Flavour
from tests.integration.observability_tools import Overtaken, Recorder, subscribed
from tests.unit.test_observability_hooks import Raising

pytestmark = pytest.mark.asyncio


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Spans of store calls, recorded for the test (its own TracerProvider, not the global)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    listener = instrument_opentelemetry(provider)
    yield exporter
    remove_listener(listener)
    provider.shutdown()


def spans_of(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def children(exporter: InMemorySpanExporter, parent: ReadableSpan) -> list[ReadableSpan]:
    """``parent``'s child spans, in the order they ended."""
    assert parent.context is not None
    return [
        span
        for span in exporter.get_finished_spans()
        if span.parent is not None and span.parent.span_id == parent.context.span_id
    ]


async def test_a_retried_call_is_one_span_with_a_child_per_attempt(
    flavour: Flavour, engine: Engine, exporter: InMemorySpanExporter, database_url: str
) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))

    await flavour.store.execute(pid, Overtaken(engine, conflicts=1), lock="optimistic")

    [call] = spans_of(exporter, "execute portfolios")
    assert call.kind is SpanKind.CLIENT
    assert call.status.status_code is StatusCode.UNSET
    attributes = dict(call.attributes or {})
    url = make_url(database_url)
    assert attributes == {
        "db.system.name": "postgresql",
        "db.operation.name": "execute",
        "db.collection.name": "portfolios",
        "db.namespace": url.database,
        **({"server.address": url.host} if url.host else {}),
        **({"server.port": url.port} if url.port else {}),
        "portfolio_core.lock_mode": "optimistic",
        "portfolio_core.idempotent": False,
        "portfolio_core.portfolio_ids": (str(pid),),
        "portfolio_core.attempts": 2,
        "portfolio_core.outcome": "ok",
        "portfolio_core.retry_causes": ("version_conflict",),
    }
    first, second = children(exporter, call)
    assert (first.name, second.name) == ("execute attempt", "execute attempt")
    assert first.kind is second.kind is SpanKind.INTERNAL
    assert dict(first.attributes or {}) == {
        "portfolio_core.attempt": 1,
        "portfolio_core.outcome": "error:StaleDataException",
        "portfolio_core.cause": "version_conflict",
        "error.type": "portfolio_core.errors.StaleDataException",
    }
    assert first.status.status_code is StatusCode.ERROR
    assert [event.name for event in first.events] == ["exception"]
    assert dict(second.attributes or {}) == {
        "portfolio_core.attempt": 2,
        "portfolio_core.retry_cause": "version_conflict",
        "portfolio_core.outcome": "ok",
    }
    assert second.status.status_code is StatusCode.UNSET
    assert call.context is not None
    assert first.context is not None
    assert first.context.trace_id == call.context.trace_id
    [create] = spans_of(exporter, "create_portfolio portfolios")
    assert len(children(exporter, create)) == 1


async def test_exhaustion_and_a_version_mismatch_end_their_spans_in_error(
    flavour: Flavour, engine: Engine, exporter: InMemorySpanExporter
) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))
    with pytest.raises(OptimisticLockException):
        await flavour.store.execute(pid, Overtaken(engine, conflicts=1_000), lock="optimistic")
    version = (await flavour.store.get(pid)).version
    with pytest.raises(VersionMismatchError):
        await flavour.store.execute(
            pid, lambda p: p.deposit(Decimal("1")), expected_version=version - 1
        )

    exhausted, mismatch = spans_of(exporter, "execute portfolios")
    for span, outcome, error, attempts in (
        (exhausted, "retries_exhausted", "OptimisticLockException", 6),
        (mismatch, "error:VersionMismatchError", "VersionMismatchError", 1),
    ):
        attributes = span.attributes or {}
        assert attributes["portfolio_core.outcome"] == outcome
        assert attributes["portfolio_core.attempts"] == attempts
        assert attributes["error.type"] == f"portfolio_core.errors.{error}"
        assert span.status.status_code is StatusCode.ERROR
        [event] = span.events
        assert event.name == "exception"
        assert str((event.attributes or {})["exception.type"]).endswith(error)
        assert len(children(exporter, span)) == attempts
    assert (exhausted.attributes or {})["portfolio_core.retry_causes"] == ("version_conflict",) * 5
    assert (mismatch.attributes or {})["portfolio_core.retry_causes"] == ()


async def test_a_raising_listener_breaks_no_store_call(
    flavour: Flavour, engine: Engine, exporter: InMemorySpanExporter
) -> None:
    recorder = Recorder()
    with subscribed(Raising()), subscribed(recorder):
        pid = await flavour.store.create_portfolio("alpha", Decimal("100"))
        assert await flavour.store.execute(pid, Overtaken(engine, conflicts=1)) == 2
        await flavour.store.transfer(pid, await flavour.store.create_portfolio("beta"), "5")

    assert (await flavour.store.get(pid)).cash_balance == Decimal("100") + 1 + 10 - 5
    assert [(c.outcome, c.attempts) for c in recorder.finished("execute")] == [("ok", 2)]
    [transfer] = recorder.finished("transfer")
    assert (transfer.outcome, transfer.call.lock_mode) == ("ok", "wait")
    assert len(transfer.call.portfolio_ids) == 2
    assert len(spans_of(exporter, "execute portfolios")) == 1
