"""Prometheus metrics of store calls (the ``prometheus`` extra: prometheus_client).

::

    from portfolio_core.observability.prometheus import instrument_prometheus

    instrument_prometheus()  # into prometheus_client's default registry

exposes, with the default namespace ``portfolio_core``:

* ``portfolio_core_calls_total{operation,outcome}``: store calls ended, by
  outcome (``ok``, ``retries_exhausted``, ``outcome_unknown``, ``error:<Class>``;
  see :mod:`portfolio_core.observability.hooks`);
* ``portfolio_core_retries_total{operation,cause}``: retries (attempts after
  the first), by the cause of the failure retried (``version_conflict``,
  ``deadlock``, ``lock_not_available``...);
* ``portfolio_core_call_duration_seconds{operation}``: a histogram of the
  calls' wall-clock duration, retries and backoff included;
* ``portfolio_core_call_attempts{operation}``: a histogram of attempts per call.

Label values come from small fixed sets (operation names, outcomes, causes),
never from ids. The counters of ``store.metrics()`` are unchanged and
independent of these.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from portfolio_core.observability.hooks import (
    AttemptStarted,
    BaseStoreListener,
    StoreCallFinished,
    add_listener,
)

__all__ = ["ATTEMPT_BUCKETS", "PrometheusListener", "instrument_prometheus"]

ATTEMPT_BUCKETS = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 11.0, 16.0)
"""Bucket bounds of the attempts histogram: one bucket per count up to a
default policy's 4 attempts and beyond, then coarser."""


class PrometheusListener(BaseStoreListener):
    """A StoreListener counting store calls into a prometheus_client registry.

    ``registry`` None: prometheus_client's default registry (what
    ``start_http_server``/``make_asgi_app`` expose by default). A registry takes
    one listener per ``namespace``: a second one raises ValueError (duplicated
    timeseries), so create it once per process (or pass a registry of your own).
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, namespace: str = "portfolio_core"
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        self.calls = Counter(
            "calls",
            "Store calls ended, by operation and outcome.",
            ["operation", "outcome"],
            namespace=namespace,
            registry=self.registry,
        )
        self.retries = Counter(
            "retries",
            "Store call retries (attempts after the first), by the cause retried.",
            ["operation", "cause"],
            namespace=namespace,
            registry=self.registry,
        )
        self.duration = Histogram(
            "call_duration_seconds",
            "Wall-clock duration of store calls, retries and backoff included.",
            ["operation"],
            namespace=namespace,
            registry=self.registry,
        )
        self.attempts = Histogram(
            "call_attempts",
            "Attempts (units of work run) per store call.",
            ["operation"],
            namespace=namespace,
            registry=self.registry,
            buckets=ATTEMPT_BUCKETS,
        )

    def attempt_started(self, attempt: AttemptStarted) -> None:
        """Count a retry, by its cause."""
        if attempt.retry_cause is not None:
            self.retries.labels(attempt.call.operation, attempt.retry_cause).inc()

    def call_finished(self, call: StoreCallFinished) -> None:
        """Count the call by outcome; observe its duration and attempts."""
        operation = call.call.operation
        self.calls.labels(operation, call.outcome).inc()
        self.duration.labels(operation).observe(call.duration)
        self.attempts.labels(operation).observe(call.attempts)


def instrument_prometheus(
    registry: CollectorRegistry | None = None, namespace: str = "portfolio_core"
) -> PrometheusListener:
    """Create a :class:`PrometheusListener` on ``registry`` and subscribe it; return it.

    ``portfolio_core.observability.remove_listener(listener)`` unsubscribes it
    (its metrics stay registered).
    """
    listener = PrometheusListener(registry, namespace)
    add_listener(listener)
    return listener
