"""OpenTelemetry spans of store calls (the ``otel`` extra: opentelemetry-api).

::

    from portfolio_core.observability.otel import instrument_opentelemetry

    instrument_opentelemetry()  # spans go to the global TracerProvider

Each store call is one CLIENT span named ``"{operation} portfolios"`` (the
database conventions' ``{db.operation.name} {target}``, the target being the
``portfolios`` collection), with one INTERNAL child span per attempt named
``"{operation} attempt"``. The attempt span is the current span while the
attempt runs, so spans of SQL instrumentation (SQLAlchemy's, psycopg's) nest
under the attempt that ran them.

Attributes follow OpenTelemetry's *stable* database semantic conventions
(semconv 1.33, where ``db.system.name`` replaced the experimental
``db.system`` and PostgreSQL's conventions became stable):
``db.system.name="postgresql"``, ``db.operation.name`` (the store method:
``execute``, ``transfer``...), ``db.collection.name="portfolios"``,
``db.namespace`` (the database name) and ``server.address``/``server.port``
when the engine URL names them; on failure ``error.type`` (the exception's
qualified class name), ``db.response.status_code`` (the SQLSTATE, when there
is one), ERROR status and the exception recorded as an event. The library's
own attributes are ``portfolio_core.*``: ``lock_mode``, ``idempotent``,
``portfolio_ids``, and at the end ``attempts``, ``outcome`` and
``retry_causes`` (outcomes and causes as in :mod:`portfolio_core.observability.hooks`);
an attempt has ``portfolio_core.attempt``, ``portfolio_core.retry_cause``,
``portfolio_core.outcome`` and ``portfolio_core.cause``.
"""

from __future__ import annotations

import threading
from contextvars import Token

from opentelemetry import context, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from portfolio_core.concurrency.metrics import failure_sqlstate
from portfolio_core.observability.hooks import (
    AttemptFinished,
    AttemptStarted,
    BaseStoreListener,
    StoreCallFinished,
    StoreCallInfo,
    add_listener,
)

__all__ = ["SCHEMA_URL", "OpenTelemetryListener", "instrument_opentelemetry"]

SCHEMA_URL = "https://opentelemetry.io/schemas/1.33.0"
"""The semantic conventions version the attribute names are those of."""

COLLECTION = "portfolios"


class _Open:
    """A span in progress and the token of the context it was made current in."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span, token: Token[context.Context]) -> None:
        self.span = span
        self.token = token

    def end(self) -> None:
        self.span.end()
        context.detach(self.token)


class OpenTelemetryListener(BaseStoreListener):
    """A StoreListener making a span per store call and a child span per attempt.

    ``tracer_provider`` None: the global one (``trace.set_tracer_provider``),
    also when it is set after this listener is made.
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        from portfolio_core import __version__

        self.tracer = trace.get_tracer(
            "portfolio_core", __version__, tracer_provider, schema_url=SCHEMA_URL
        )
        self._guard = threading.Lock()
        self._calls: dict[int, _Open] = {}
        self._attempts: dict[int, _Open] = {}

    def call_started(self, call: StoreCallInfo) -> None:
        """Start the call's span and make it current."""
        attributes: dict[str, AttributeValue] = {
            "db.system.name": "postgresql",
            "db.operation.name": call.operation,
            "db.collection.name": COLLECTION,
            "portfolio_core.idempotent": call.idempotent,
            "portfolio_core.portfolio_ids": [str(pid) for pid in call.portfolio_ids],
        }
        optional: dict[str, str | int | None] = {
            "db.namespace": call.database,
            "server.address": call.server_address,
            "server.port": call.server_port,
            "portfolio_core.lock_mode": call.lock_mode,
        }
        attributes.update({name: value for name, value in optional.items() if value is not None})
        span = self.tracer.start_span(
            f"{call.operation} {COLLECTION}", kind=SpanKind.CLIENT, attributes=attributes
        )
        self._opened(self._calls, call.call_id, span)

    def attempt_started(self, attempt: AttemptStarted) -> None:
        """Start the attempt's span, a child of the call's, and make it current."""
        with self._guard:
            parent = self._calls.get(attempt.call.call_id)
        if parent is None:  # the call started before this listener was subscribed
            return
        attributes: dict[str, AttributeValue] = {"portfolio_core.attempt": attempt.attempt}
        if attempt.retry_cause is not None:
            attributes["portfolio_core.retry_cause"] = attempt.retry_cause
        span = self.tracer.start_span(
            f"{attempt.call.operation} attempt",
            context=trace.set_span_in_context(parent.span),
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )
        self._opened(self._attempts, attempt.call.call_id, span)

    def attempt_finished(self, attempt: AttemptFinished) -> None:
        """End the attempt's span with its outcome (an error status if it failed)."""
        with self._guard:
            opened = self._attempts.pop(attempt.call.call_id, None)
        if opened is None:
            return
        opened.span.set_attribute("portfolio_core.outcome", attempt.outcome)
        if attempt.cause is not None:
            opened.span.set_attribute("portfolio_core.cause", attempt.cause)
        _record_error(opened.span, attempt.error)
        opened.end()

    def call_finished(self, call: StoreCallFinished) -> None:
        """End the call's span with its attempts, outcome and retry causes."""
        with self._guard:
            opened = self._calls.pop(call.call.call_id, None)
        if opened is None:
            return
        opened.span.set_attributes(
            {
                "portfolio_core.attempts": call.attempts,
                "portfolio_core.outcome": call.outcome,
                "portfolio_core.retry_causes": list(call.retry_causes),
            }
        )
        _record_error(opened.span, call.error)
        opened.end()

    def _opened(self, spans: dict[int, _Open], call_id: int, span: Span) -> None:
        token = context.attach(trace.set_span_in_context(span))
        with self._guard:
            spans[call_id] = _Open(span, token)


def _record_error(span: Span, error: BaseException | None) -> None:
    """Mark ``span`` failed with ``error`` (nothing for None), per the conventions."""
    if error is None:
        return
    kind = type(error)
    span.set_attribute("error.type", f"{kind.__module__}.{kind.__qualname__}")
    sqlstate = failure_sqlstate(error)
    if sqlstate is not None:
        span.set_attribute("db.response.status_code", sqlstate)
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{kind.__name__}: {error}"))


def instrument_opentelemetry(
    tracer_provider: TracerProvider | None = None,
) -> OpenTelemetryListener:
    """Create an :class:`OpenTelemetryListener` and subscribe it; return it.

    ``portfolio_core.observability.remove_listener(listener)`` unsubscribes it.
    """
    listener = OpenTelemetryListener(tracer_provider)
    add_listener(listener)
    return listener
