"""An example HTTP service on portfolio_core's async store (FastAPI on uvicorn).

``create_app(database_url_or_engine)`` builds the app; ``python -m
examples.portfolio_service`` runs it (README.md, "An example service").
It shows how a service maps HTTP onto the library: ``ETag`` is the
portfolio's version and ``If-Match`` its ``expected_version``,
``Idempotency-Key`` is the library's ``idempotency_key`` (the response body
is the stored result, so a repeat gets the very same response), the
library's errors become status codes in one table (``errors.py``), money
travels as exact decimal strings, and ``/metrics`` serves the library's
Prometheus metrics.

Modules: ``app`` (factory, lifespan), ``routes`` (endpoints), ``bodies``
(request bodies), ``representation`` (portfolio -> JSON),
``preconditions`` (ETag / If-Match), ``errors`` (error -> response),
``metrics`` (``/metrics``),
``__main__`` (uvicorn, embedded PostgreSQL when no URL is given).
"""

from examples.portfolio_service.app import create_app

__all__ = ["create_app"]
