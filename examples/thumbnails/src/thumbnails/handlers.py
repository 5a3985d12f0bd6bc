"""Thumbnail task types, one of each kind tq offers: a function with a typed payload, a class set up once per
handler process, an ``async def``, one reporting progress, one failing for good with ``Permanent``.

The image work itself is left out (this example depends on ``tq-sdk`` only): each handler computes what a real
one would return, so its tests run in milliseconds with ``tq.testing``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from typing import Any

from pydantic import BaseModel, Field

from tq import Permanent, TaskContext, handler

#: Leading bytes of the image formats ``thumbnails.check`` recognises.
MAGIC = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg", b"GIF8": "gif", b"RIFF": "webp"}


class Resize(BaseModel):
    """A resize request. Declared as the payload model, the gateway answers 422 to a submit that does not fit
    (with each error's location, e.g. ``payload.width``) and the handler gets a ``Resize``."""

    url: str = Field(pattern=r"^(s3|https)://\S+$")
    width: int = Field(gt=0, le=4096)
    height: int = Field(gt=0, le=4096)


class Album(BaseModel):
    """Many images, thumbnailed one after another (``delay_s`` stands in for the work on each)."""

    images: list[str] = Field(min_length=1, max_length=1000)
    delay_s: float = Field(default=0.0, ge=0, le=10)


@handler("thumbnails.resize", max_retries=3, timeout_s=60, payload=Resize)
def resize(ctx: TaskContext) -> dict[str, Any]:
    """A function handler: its result (JSON) becomes the task's ``result``."""
    request: Resize = ctx.payload
    ctx.log(f"resizing {request.url} to {request.width}x{request.height}")
    return {"key": f"thumbs/{_digest(request.url)}-{request.width}x{request.height}", "width": request.width}


@handler("thumbnails.check", max_retries=5)
def check(ctx: TaskContext) -> dict[str, str]:
    """Tell an upload's format from its first bytes (``{"head": base64}``). Bytes that are no image will not
    become one on a retry: ``Permanent`` fails the task at once (dead-lettered, ``retryable: false``)."""
    try:
        head = base64.b64decode(ctx.payload["head"], validate=True)
    except (KeyError, TypeError, binascii.Error) as error:
        raise Permanent(f"payload needs 'head', the upload's first bytes in base64: {error}") from None
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return {"format": kind}
    raise Permanent(f"not an image this service reads (starts with {head[:8].hex()})")


@handler("thumbnails.watermark", timeout_s=120)
class Watermark:
    """A class handler: one instance per handler process (each executor thread has one), ``setup()`` before
    its first task (load a model, open a connection pool), ``teardown()`` when the process ends."""

    def __init__(self) -> None:
        self.setups = 0
        self.stamp = b""

    def setup(self) -> None:
        """Stands for loading something expensive, once."""
        self.setups += 1
        self.stamp = hashlib.sha256(b"watermark").digest()

    def teardown(self) -> None:
        """Release what ``setup()`` took."""
        self.stamp = b""

    def __call__(self, ctx: TaskContext) -> dict[str, Any]:
        """Stamp one image (by name)."""
        mark = hashlib.sha256(self.stamp + str(ctx.payload["url"]).encode()).hexdigest()[:16]
        return {"url": ctx.payload["url"], "mark": mark, "setups": self.setups}


@handler("thumbnails.probe", timeout_s=30, priority="high")
async def probe(ctx: TaskContext) -> dict[str, int]:
    """An ``async def`` handler (run on an event loop of its own): probe many images at once."""

    async def size_of(url: str) -> int:
        await asyncio.sleep(0)  # stands for an HTTP HEAD
        return int(_digest(url)[:6], 16)

    urls = list(ctx.payload["urls"])
    sizes = await asyncio.gather(*(size_of(u) for u in urls))
    return dict(zip(urls, sizes, strict=True))


@handler("thumbnails.album", timeout_s=3600, payload=Album)
def album(ctx: TaskContext) -> dict[str, Any]:
    """Report progress as it goes (``GET /v1/tasks/{id}`` shows the newest) and stop early when told to."""
    request: Album = ctx.payload
    done = 0
    for n, url in enumerate(request.images, start=1):
        if not ctx.sleep(request.delay_s):  # False: the task was cancelled
            ctx.log(f"stopped after {done} of {len(request.images)}")
            break
        ctx.log(f"thumbnailed {url}")
        done = n
        ctx.progress(n / len(request.images), f"{n}/{len(request.images)} images")
    return {"done": done, "of": len(request.images)}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
