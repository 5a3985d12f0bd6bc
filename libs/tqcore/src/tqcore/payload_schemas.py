"""Checking a payload against the JSON schema its handler's model declares (what a submit gets 422 for)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

import jsonschema_rs

from tqcore.domain.errors import InvalidPayload

log = logging.getLogger(__name__)

#: At most this many of a payload's errors are reported (a payload can break a schema in many places at once).
MAX_ERRORS = 20


class PayloadSchemas:
    """Compiled validators by type, recompiled when the type's published schema changes."""

    def __init__(self) -> None:
        self._validators: dict[str, tuple[str, Any]] = {}
        self._lock = threading.Lock()

    def check(self, type_name: str, schema: Mapping[str, Any], payload: Any) -> None:
        """Raise ``InvalidPayload`` listing each error's location (``["payload", "width"]``) and message.

        A schema that does not compile checks nothing here (logged once per version of it): the executor still
        validates the payload into its model, and fails the attempt for good if it does not fit.
        """
        validator = self._validator(type_name, schema)
        if validator is None:
            return
        errors = [_error(e) for _, e in zip(range(MAX_ERRORS), validator.iter_errors(payload), strict=False)]
        if errors:
            raise InvalidPayload(
                f"the payload does not fit task type {type_name!r}'s model: {errors[0]['msg']}", errors=errors
            )

    def _validator(self, type_name: str, schema: Mapping[str, Any]) -> Any:
        text = json.dumps(schema, sort_keys=True)
        with self._lock:
            cached = self._validators.get(type_name)
        if cached is not None and cached[0] == text:
            return cached[1]
        try:  # outside the lock: compiling one type's schema holds up no other type's submits
            validator = jsonschema_rs.validator_for(dict(schema), retriever=_no_remote_references)
        except Exception:  # noqa: BLE001 - whatever a bad schema raises, submits must not fail with 500
            log.warning("task type %r published a payload schema that does not compile", type_name)
            validator = None
        with self._lock:
            self._validators[type_name] = (text, validator)
        return validator


def _no_remote_references(uri: str) -> Any:
    """The schemas' resolver: a schema may refer only within itself (``#/$defs/...``), never make the gateway
    fetch a URL (a request forgery, and a slow server would hold up submits)."""
    raise ValueError(f"a payload schema may not refer to {uri}: only to its own definitions")


def _error(error: Any) -> dict[str, Any]:
    """A schema error as the API's validation errors read: ``loc`` from ``payload`` down to the field (a missing
    required field is located at its own name, as pydantic does), and ``msg``."""
    loc: list[str | int] = ["payload", *error.instance_path]
    if isinstance(error.kind, jsonschema_rs.ValidationErrorKind.Required):
        loc.append(error.kind.property)
    return {"loc": loc, "msg": error.message}
