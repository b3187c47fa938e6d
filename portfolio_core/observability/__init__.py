"""Observability of store calls: typed hooks, plus OpenTelemetry and Prometheus listeners.

Every PortfolioStore / AsyncPortfolioStore call is reported to the listeners
subscribed with :func:`add_listener` (see :mod:`portfolio_core.observability.hooks`
for the events and outcomes). Two listeners ship with the library, each behind
an extra so that the core install stays small:

* :mod:`portfolio_core.observability.prometheus` (``pip install
  'portfolio-core[prometheus]'``): ``instrument_prometheus()``;
* :mod:`portfolio_core.observability.otel` (``pip install 'portfolio-core[otel]'``):
  ``instrument_opentelemetry()``.

This package imports neither prometheus_client nor opentelemetry.
"""

from portfolio_core.observability.hooks import (
    CAUSES,
    OK,
    OUTCOME_UNKNOWN,
    RETRIES_EXHAUSTED,
    AttemptFinished,
    AttemptStarted,
    BaseStoreListener,
    StoreCallFinished,
    StoreCallInfo,
    StoreListener,
    add_listener,
    error_outcome,
    failure_cause,
    listeners,
    remove_listener,
)

__all__ = [
    "CAUSES",
    "OK",
    "OUTCOME_UNKNOWN",
    "RETRIES_EXHAUSTED",
    "AttemptFinished",
    "AttemptStarted",
    "BaseStoreListener",
    "StoreCallFinished",
    "StoreCallInfo",
    "StoreListener",
    "add_listener",
    "error_outcome",
    "failure_cause",
    "listeners",
    "remove_listener",
]
