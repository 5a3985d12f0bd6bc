"""Task documents as stored JSON text: a listing reads the few fields it pages and filters by, and serves the
rest (payload and result above all) as the text it is, never parsed into Python objects.

A stored document is ``task_to_dict``'s output; the gateway cuts it to the fields its view shows (values copied
as their text) and splices it into the response. 256 KiB of ``[{},{},...]`` parses into 6 MiB of Python
objects; read with ``msgspec.Raw`` values it costs about its own size.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import msgspec

from tqcore.domain.codec import progress_to_dict, task_from_dict, task_to_dict, ts
from tqcore.domain.model import Progress, Status

#: A document's top-level fields, each kept as its JSON text (the gateway's view cuts listed documents with it).
FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])
#: The smallest task today's codec accepts; its resource's keys are the shape a document read as-is must have.
_MINIMAL = {
    "id": "t",
    "type": "t",
    "group": "g",
    "owner": "o",
    "priority": "normal",
    "status": "queued",
    "version": 1,
    "attempts": 0,
    "retry": {"max_retries": 0, "backoff_base_s": 1.0, "backoff_max_s": 1.0},
    "timeout_s": 1,
    "overlap": "skip",
    "created_at": "2026-01-01T00:00:00.000Z",
}
RESOURCE_KEYS = frozenset(task_to_dict(task_from_dict(_MINIMAL)))


@dataclass(frozen=True)
class ListedTask:
    """One item of a listing: what paging and filtering need, and the task resource as JSON text (``doc``)."""

    id: str
    status: Status
    type: str
    #: The task's ``name`` (the listing's ``name`` filter reads it).
    name: str | None
    claim_seq: int | None
    finished_at: str | None
    #: The stored task document, UTF-8 JSON (the gateway serves its view of it).
    doc: bytes

    @classmethod
    def from_doc(cls, doc: str | bytes) -> ListedTask:
        """Read a stored document; ``ValueError`` if it is not a task's.

        A document in an older shape (fields added to the resource since it was written) is read the slow way,
        through the codec, so it is served with today's fields.
        """
        try:
            fields = FIELDS.decode(doc)
            if fields.keys() != RESOURCE_KEYS:
                doc = json.dumps(task_to_dict(task_from_dict(json.loads(doc))), ensure_ascii=False)
                fields = FIELDS.decode(doc)
            return cls(
                id=msgspec.json.decode(fields["id"], type=str),
                status=Status(msgspec.json.decode(fields["status"], type=str)),
                type=msgspec.json.decode(fields["type"], type=str),
                name=msgspec.json.decode(fields["name"], type=str | None),
                claim_seq=msgspec.json.decode(fields["claim_seq"], type=int | None),
                finished_at=msgspec.json.decode(fields["finished_at"], type=str | None),
                doc=doc.encode() if isinstance(doc, str) else bytes(doc),
            )
        except (msgspec.DecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a task document: {error}") from None

    @property
    def dlq_position(self) -> str:
        """Where a dead letter sits in the newest-first order of its group (the ``dlq`` index's sort key)."""
        return f"{self.finished_at}#{self.id}"

    def with_lease(self, claim_seq: int, expires_at: datetime) -> ListedTask:
        """The task with its lease's current expiry, when the lease belongs to its current claim (heartbeats
        move the lease without a new snapshot)."""
        if claim_seq != self.claim_seq:
            return self
        fields = FIELDS.decode(self.doc)
        fields["lease_expires_at"] = msgspec.Raw(msgspec.json.encode(ts(expires_at)))
        return replace(self, doc=msgspec.json.encode(fields))

    def with_progress(self, progress: Progress | None) -> ListedTask:
        """The task with the progress its item holds (the executor writes it beside the document)."""
        fields = FIELDS.decode(self.doc)
        value = msgspec.json.encode(progress_to_dict(progress))
        if bytes(fields.get("progress", b"")) == value:
            return self
        fields["progress"] = msgspec.Raw(value)
        return replace(self, doc=msgspec.json.encode(fields))


def page_json(docs: Sequence[bytes], next_cursor: str | None) -> bytes:
    """A listing's response body, ``{"items": [task, ...], "next_cursor": ...}``, with each document spliced in."""
    cursor = msgspec.json.encode(next_cursor)
    return b"".join((b'{"items":[', b",".join(docs), b'],"next_cursor":', cursor, b"}"))
