"""Retry policies (tenacity), PostgreSQL advisory locks and concurrency metrics."""

from portfolio_core.concurrency.hot_rows import HotRows
from portfolio_core.concurrency.metrics import METRIC_NAMES, ConcurrencyMetrics
from portfolio_core.concurrency.retry import RetryPolicy
from portfolio_core.concurrency.service import ConcurrencyService

__all__ = ["METRIC_NAMES", "ConcurrencyMetrics", "ConcurrencyService", "HotRows", "RetryPolicy"]
