"""``GET /metrics``: the library's Prometheus metrics of store calls, for this app.

Each app counts into a registry of its own (a fresh CollectorRegistry
unless one is given), so two apps in one process, such as the tests' apps,
never share counters. The library reports store calls to process-wide
listeners: the app subscribes its PrometheusListener while it runs (in its
lifespan) and unsubscribes it when it stops. Two apps running at once in one
process would each count the other's calls too.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

router = APIRouter()


def registry_of(request: Request) -> CollectorRegistry:
    """The app's metrics registry (set by create_app)."""
    registry = getattr(request.app.state, "metrics_registry", None)
    if not isinstance(registry, CollectorRegistry):
        raise RuntimeError("the app has no metrics registry: build it with create_app")
    return registry


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """The app's registry in the text format the scraper asks for (``Accept``)."""
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(registry_of(request)), headers={"Content-Type": content_type})
