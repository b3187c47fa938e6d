"""The app factory: ``create_app(database)`` and the lifespan that owns the store.

The engine is made inside the lifespan, on the event loop that serves the
app (asyncpg connections belong to one loop), and disposed when the app
stops; an AsyncEngine passed in is used as is and left to its owner.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from examples.portfolio_service import metrics, routes
from examples.portfolio_service.errors import install_error_handlers
from portfolio_core import ConcurrencyService, RetryPolicy, create_async_engine
from portfolio_core.async_store import AsyncPortfolioStore
from portfolio_core.observability import add_listener
from portfolio_core.observability.prometheus import PrometheusListener

DEFAULT_RETRY_AFTER_SECONDS = 1
"""``Retry-After`` of a 503: contention or an unreachable database usually clears quickly."""


def create_app(
    database: str | AsyncEngine,
    *,
    policy: RetryPolicy | None = None,
    retry_after_seconds: int = DEFAULT_RETRY_AFTER_SECONDS,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """The portfolio service on ``database`` (a URL, or an AsyncEngine of yours).

    ``policy`` is the store's retry policy (the library's default if None).
    ``registry`` receives the library's Prometheus metrics, served at
    ``/metrics`` (a registry of the app's own if None). The database must be
    migrated already (``portfolio-core migrate``). Nothing connects before
    the app starts.
    """
    registry = CollectorRegistry() if registry is None else registry
    listener = PrometheusListener(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(database) if isinstance(database, str) else database
        service = ConcurrencyService(async_engine=engine, policy=policy)
        app.state.store = AsyncPortfolioStore(engine, service)
        unsubscribe = add_listener(listener)
        try:
            yield
        finally:
            unsubscribe()
            del app.state.store
            if engine is not database:
                await engine.dispose()

    app = FastAPI(title="portfolio service (portfolio_core example)", lifespan=lifespan)
    app.state.metrics_registry = registry
    app.include_router(routes.router)
    app.include_router(metrics.router)
    install_error_handlers(app, retry_after_seconds)
    return app
