"""tq for user code: declare task types with ``@handler``; ``tq.testing`` runs them without a server; ``tq.Client``
and ``tq.AsyncClient`` call the API.

```python
from tq import handler, TaskContext, Permanent

@handler("resize", max_retries=3, timeout_s=60)
def resize(ctx: TaskContext) -> dict:
    ctx.progress(0.5, "half way")
    return {"ok": True}
```

The client is imported on first use (``tq.Client``), so a handler process that only does ``import tq`` never
imports httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tq.handlers import HandlerRegistry, HandlerSpec, Permanent, Progress, TaskContext, handler, registry

if TYPE_CHECKING:
    from tq.async_client import AsyncClient
    from tq.client import Client
    from tq.errors import ApiError, NetworkError
    from tq.retries import Retries

#: Names imported from their module on first use: ``tq.Client`` -> ``tq.client.Client``.
_LAZY = {
    "Client": "tq.client",
    "AsyncClient": "tq.async_client",
    "ApiError": "tq.errors",
    "NetworkError": "tq.errors",
    "Retries": "tq.retries",
}

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "HandlerRegistry",
    "HandlerSpec",
    "NetworkError",
    "Permanent",
    "Progress",
    "Retries",
    "TaskContext",
    "handler",
    "registry",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tq' has no attribute {name!r}")
