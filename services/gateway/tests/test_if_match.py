"""``If-Match`` on PATCH and DELETE: which header values name a version, which fail the precondition (412),
and which are bad requests (400), both for the parser alone and through the gateway over in-memory fakes."""

from __future__ import annotations

import falcon
import falcon.testing
import pytest

from tq_gateway.resources import if_match
from tq_gateway.testing import client_over_fakes
from tqcore.domain.errors import PreconditionFailed
from tqcore.testing import InMemoryTaskStore

pytestmark = pytest.mark.unit

ALICE = {"Authorization": "Bearer dev-alice"}
#: A task scheduled an hour ahead: it stays put (and PATCHable) for the whole test.
SCHEDULED = {"type": "echo", "group": "team-a", "payload": {"v": 1}, "schedule": {"at": "2026-01-05T09:00:00Z"}}

#: Values that are not one task version: a bad request, whatever the task's version.
NOT_A_VERSION = [
    pytest.param("\u00b3", id="superscript-three"),  # str.isdigit() says yes, int() refuses it
    pytest.param("\u0663", id="arabic-indic-three"),  # int() reads it as 3
    pytest.param("\uff13", id="fullwidth-three"),  # int() reads it as 3
    pytest.param('"3", "4"', id="list-of-tags"),
    pytest.param("3, 4", id="list-of-versions"),
    pytest.param("abc", id="word"),
    pytest.param('"abc"', id="quoted-word"),
    pytest.param("-1", id="negative"),
    pytest.param("3.0", id="decimal"),
    pytest.param("0x3", id="hex"),
    pytest.param('""', id="empty-tag"),
    pytest.param('"3', id="unclosed-quote"),
    pytest.param('3"', id="unopened-quote"),
    pytest.param("1" * 19, id="too-long"),
]


def request(value: str | None) -> falcon.Request:
    """A bare request carrying ``If-Match: value`` (no header for ``None``)."""
    headers = {} if value is None else {"If-Match": value}
    return falcon.Request(falcon.testing.create_environ(path="/v1/tasks/t-1", method="PATCH", headers=headers))


class Api:
    """The gateway over fakes, holding one scheduled task ``t-1``."""

    def __init__(self) -> None:
        self.store = InMemoryTaskStore()
        self.http = client_over_fakes(store=self.store)
        created = self.http.simulate_post("/v1/tasks", json=SCHEDULED, headers=ALICE)
        assert created.status_code == 201
        self.version = self.store.get("t-1").version

    def patch(self, value: str) -> falcon.testing.Result:
        return self.http.simulate_patch(
            "/v1/tasks/t-1", json={"payload": {"v": 2}}, headers={**ALICE, "If-Match": value}
        )

    def delete(self, value: str) -> falcon.testing.Result:
        return self.http.simulate_delete("/v1/tasks/t-1", headers={**ALICE, "If-Match": value})

    def unchanged(self) -> bool:
        task = self.store.get("t-1")
        return task.version == self.version and task.payload == {"v": 1}


# ----------------------------------------------------------------------------------------------- the parser
@pytest.mark.parametrize("value", [None, "*", " * "])
def test_no_header_or_a_star_matches_any_version(value: str | None) -> None:
    # Given / When a request without If-Match, or with If-Match: *
    # Then it names no version: the change applies to whatever version is current
    assert if_match(request(value)) is None


@pytest.mark.parametrize("value", ["3", '"3"', " 3 ", '"123456789012345678"'])
def test_a_plain_or_quoted_version_is_that_version(value: str) -> None:
    # Given / When a request naming a version, bare or as a strong entity tag
    # Then that version is the precondition
    assert if_match(request(value)) == int(value.strip().strip('"'))


@pytest.mark.parametrize("value", ['W/"3"', 'W/"123"'])
def test_a_weak_tag_fails_the_precondition(value: str) -> None:
    # Given / When a request with a weak entity tag
    # Then it never matches (If-Match compares strongly): the precondition fails
    with pytest.raises((PreconditionFailed, falcon.HTTPPreconditionFailed)):
        if_match(request(value))


@pytest.mark.parametrize("value", NOT_A_VERSION)
def test_anything_else_is_a_bad_request(value: str) -> None:
    # Given / When a request whose If-Match is not one version
    # Then it is refused as a bad request, never mistaken for a version (nor a crash)
    with pytest.raises(falcon.HTTPBadRequest):
        if_match(request(value))


# --------------------------------------------------------------------------------------- through the gateway
@pytest.mark.parametrize("quote", ["", '"'], ids=["plain", "quoted"])
def test_patch_with_the_current_version_applies(quote: str) -> None:
    # Given a task at some version
    api = Api()
    # When it is PATCHed with If-Match naming that version
    response = api.patch(f"{quote}{api.version}{quote}")
    # Then the change applies, and the new version comes back as a strong tag
    assert response.status_code == 200
    assert response.json["payload"] == {"v": 2}
    assert response.headers["etag"] == f'"{api.version + 1}"'


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_a_weak_tag_of_the_current_version_is_refused_with_412(method: str) -> None:
    # Given a task at some version
    api = Api()
    # When it is changed with a weak tag of that very version
    response = getattr(api, method)(f'W/"{api.version}"')
    # Then the precondition fails and nothing changes
    assert response.status_code == 412
    assert response.headers["content-type"] == "application/problem+json"
    assert api.unchanged()


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_a_stale_version_is_refused_with_412(method: str) -> None:
    # Given a task that has moved past version 1
    api = Api()
    assert api.version > 1
    # When it is changed with If-Match: "1"
    response = getattr(api, method)('"1"')
    # Then the precondition fails and nothing changes
    assert response.status_code == 412
    assert api.unchanged()


@pytest.mark.parametrize("value", NOT_A_VERSION)
def test_a_malformed_if_match_is_refused_with_400(value: str) -> None:
    # Given a task
    api = Api()
    # When it is PATCHed with an If-Match that is not one version
    response = api.patch(value)
    # Then the request is refused as bad and nothing changes
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert api.unchanged()
