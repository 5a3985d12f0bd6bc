"""tq for user code: declare task types with ``@handler``; ``tq.testing`` runs them without a server.

```python
from tq import handler, TaskContext, Permanent

@handler("resize", max_retries=3, timeout_s=60)
def resize(ctx: TaskContext) -> dict:
    ctx.progress(0.5, "half way")
    return {"ok": True}
```
"""

from tq.handlers import HandlerRegistry, HandlerSpec, Permanent, Progress, TaskContext, handler, registry

__all__ = ["HandlerRegistry", "HandlerSpec", "Permanent", "Progress", "TaskContext", "handler", "registry"]
