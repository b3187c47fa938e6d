"""The example service (examples/portfolio_service) on uvicorn, in the test's own event loop,
and what its tests ask of it over HTTP.

The listening socket is bound (127.0.0.1, a free port) and listening before
uvicorn starts, so the port is known up front; the server is always told
to exit and awaited when the block ends, whatever happened in it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from portfolio_core.units import Seconds

_STARTUP_POLL: Seconds = 0.01
# uvicorn's start (the app's lifespan: an engine, no I/O) takes milliseconds;
# bound the wait so a server that never starts fails the test instead of hanging it.
_STARTUP_POLLS = 3000
_SHUTDOWN_TIMEOUT: Seconds = 30
# Generous: on a loaded machine, 60 queued requests share one pool of 20 connections.
_CLIENT_TIMEOUT: Seconds = 120


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Serve ``app`` on 127.0.0.1 for the block; yield an httpx client pointed at it."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    port = listener.getsockname()[1]
    # log_config=None: uvicorn leaves the logging configuration of the test run alone.
    config = uvicorn.Config(app, lifespan="on", log_config=None, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        for _ in range(_STARTUP_POLLS):
            if server.started or task.done():
                break
            await asyncio.sleep(_STARTUP_POLL)
        if not server.started:
            if task.done():
                task.result()  # the start-up error, if any
            raise RuntimeError("the example service did not start")
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=_CLIENT_TIMEOUT
        ) as client:
            yield client
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, _SHUTDOWN_TIMEOUT)
        listener.close()


async def no_sleep(seconds: Seconds) -> None:
    """Backoff that does not wait: retries run at once."""


async def create_portfolio(client: httpx.AsyncClient, cash: str, name: str = "alpha") -> str:
    """``POST /portfolios``; the new portfolio's id."""
    response = await client.post("/portfolios", json={"name": name, "cash_balance": cash})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


Sample = tuple[str, frozenset[tuple[str, str]]]
"""A Prometheus sample's name and labels."""


async def scrape(client: httpx.AsyncClient) -> dict[Sample, float]:
    """``GET /metrics`` parsed: (sample name, labels) -> value."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def calls(operation: str, outcome: str) -> Sample:
    """The ``portfolio_core_calls_total`` sample of ``operation`` ending with ``outcome``."""
    return (
        "portfolio_core_calls_total",
        frozenset({("operation", operation), ("outcome", outcome)}),
    )
