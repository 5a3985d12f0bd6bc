"""The gateway over tqcore's in-memory fakes, for unit tests of its HTTP behaviour (no I/O)."""

from __future__ import annotations

import itertools
from typing import Any

import falcon
import falcon.testing

from tq_gateway.app import build_app
from tq_gateway.settings import GatewaySettings
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskQueries, InMemoryTaskStore, RecordingQueue


def app_over_fakes(
    settings: GatewaySettings | None = None,
    *,
    store: InMemoryTaskStore | None = None,
    queue: RecordingQueue | None = None,
    registry: InMemoryRegistry | None = None,
    clock: FixedClock | None = None,
    **adapters: Any,
) -> falcon.App[Any, Any]:
    """``build_app`` over fresh fakes (or the given ones): type ``echo`` registered, ids ``t-1``, ``t-2``…;
    ``adapters`` go to ``build_app`` as they are (``logs``, ``api_keys``, ``replicas``...)."""
    store = store if store is not None else InMemoryTaskStore()
    ids = (f"t-{n}" for n in itertools.count(1))
    return build_app(
        settings or GatewaySettings(),
        store=store,
        queries=InMemoryTaskQueries(store),
        queue=queue if queue is not None else RecordingQueue(),
        registry=registry if registry is not None else InMemoryRegistry(["echo"]),
        clock=clock or FixedClock(),
        **{"new_id": lambda: next(ids), **adapters},
    )


def client_over_fakes(settings: GatewaySettings | None = None, **fakes: Any) -> falcon.testing.TestClient:
    """A test client of :func:`app_over_fakes`."""
    return falcon.testing.TestClient(app_over_fakes(settings, **fakes))
