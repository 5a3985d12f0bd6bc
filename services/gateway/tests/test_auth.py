"""Authentication: JWT validation, the API key cache, the chain of authenticators and the auth settings."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import falcon
import falcon.testing
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from tq_gateway.auth import BearerAuth, CachedApiKeys, DevTokens, authenticators
from tq_gateway.jwt_auth import InvalidToken, JwtTokens
from tq_gateway.settings import GatewaySettings
from tq_gateway.testing import client_over_fakes
from tqcore.api_keys import ApiKeys
from tqcore.domain.access import Principal
from tqcore.testing import (
    FixedClock,
    InMemoryApiKeyStore,
)

pytestmark = pytest.mark.unit

SECRET = "s" * 32
ISSUER = "https://idp.example"
AUDIENCE = "tq"
ECHO = {"type": "echo", "group": "team-a", "payload": {}}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def public_pem(rsa_key: rsa.RSAPrivateKey) -> str:
    return (
        rsa_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def claims(**overrides: Any) -> dict[str, Any]:
    base = {"sub": "alice", "groups": ["team-a"], "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300}
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


def hs256() -> JwtTokens:
    return JwtTokens(algorithm="HS256", key=SECRET.encode(), issuer=ISSUER, audience=AUDIENCE)


def rs256(public_pem: str) -> JwtTokens:
    settings = GatewaySettings(
        auth="jwt", jwt_algorithm="RS256", jwt_public_key=public_pem, jwt_issuer=ISSUER, jwt_audience=AUDIENCE
    )
    return JwtTokens.from_settings(settings)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"


# --- JWT -----------------------------------------------------------------------------------------------------


def test_a_valid_hs256_token_maps_sub_groups_and_admin() -> None:
    token = jwt.encode(claims(groups=["team-a", "team-b"], tq_admin=True), SECRET, algorithm="HS256")
    assert hs256().authenticate(token) == Principal("alice", frozenset({"team-a", "team-b"}), admin=True)


def test_a_valid_rs256_token_is_accepted_and_admin_needs_a_true_boolean(
    rsa_key: rsa.RSAPrivateKey, public_pem: str
) -> None:
    token = jwt.encode(claims(tq_admin="yes"), rsa_key, algorithm="RS256")
    assert rs256(public_pem).authenticate(token) == Principal("alice", frozenset({"team-a"}), admin=False)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (claims(iss="https://evil.example"), "issuer"),
        (claims(aud="other-api"), "audience"),
        (claims(exp=int(time.time()) - 10), "expired"),
        (claims(exp=None), "exp"),
        (claims(sub=None), "sub"),
        (claims(groups=None), "groups"),
        (claims(groups="team-a"), "groups"),
        (claims(groups=["team-a", 7]), "groups"),
    ],
)
def test_a_token_failing_a_check_is_refused(payload: dict[str, Any], reason: str) -> None:
    token = jwt.encode(payload, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken, match=rf"(?i){reason}"):
        hs256().authenticate(token)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    token = jwt.encode(claims(), "x" * 32, algorithm="HS256")
    with pytest.raises(InvalidToken, match=r"(?i)signature"):
        hs256().authenticate(token)


def test_alg_none_is_refused() -> None:
    token = unsigned({"alg": "none", "typ": "JWT"}, claims()) + "."
    with pytest.raises(InvalidToken, match=r"(?i)alg"):
        hs256().authenticate(token)


def test_hs256_signed_with_the_public_key_is_refused_when_rs256_is_configured(public_pem: str) -> None:
    # The classic algorithm confusion: the attacker uses the (public) RSA key as an HMAC secret.
    head_and_body = unsigned({"alg": "HS256", "typ": "JWT"}, claims(tq_admin=True))
    signature = hmac.new(public_pem.encode(), head_and_body.encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidToken, match=r"(?i)alg"):
        rs256(public_pem).authenticate(f"{head_and_body}.{b64(signature)}")


def test_rs256_signed_with_another_key_is_refused(public_pem: str) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(InvalidToken, match=r"(?i)signature"):
        rs256(public_pem).authenticate(jwt.encode(claims(), other, algorithm="RS256"))


def test_a_token_that_is_no_jwt_is_left_to_the_next_authenticator() -> None:
    assert hs256().authenticate("dev-alice") is None
    assert hs256().authenticate("tq_0123456789abcdef_" + "a" * 43) is None


def test_a_short_hs256_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        JwtTokens(algorithm="HS256", key=b"short", issuer=ISSUER, audience=AUDIENCE)


# --- settings ------------------------------------------------------------------------------------------------


def test_production_accepts_api_keys_only_by_default() -> None:
    assert GatewaySettings.model_fields["auth"].get_default(call_default_factory=True) == ["keys"]


def test_jwt_without_its_key_issuer_or_audience_is_a_configuration_error() -> None:
    with pytest.raises(ValidationError, match="TQ_JWT_SECRET"):
        GatewaySettings(auth="jwt", jwt_algorithm="HS256", jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    with pytest.raises(ValidationError, match="TQ_JWT_PUBLIC_KEY"):
        GatewaySettings(auth="keys,jwt", jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    with pytest.raises(ValidationError, match="TQ_JWT_ISSUER"):
        GatewaySettings(auth="jwt", jwt_algorithm="HS256", jwt_secret=SECRET, jwt_audience=AUDIENCE)


def test_an_unknown_auth_kind_or_half_a_tls_setup_is_a_configuration_error() -> None:
    with pytest.raises(ValidationError):
        GatewaySettings(auth="dev,ldap")
    with pytest.raises(ValidationError, match="TQ_TLS_KEY"):
        GatewaySettings(tls_cert="/tmp/cert.pem")


# --- the chain and the cache ---------------------------------------------------------------------------------


class Ticker:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api() -> tuple[ApiKeys, InMemoryApiKeyStore]:
    store = InMemoryApiKeyStore()
    return ApiKeys(store, FixedClock()), store


def test_the_cache_saves_lookups_and_a_revocation_takes_effect_after_its_ttl(
    api: tuple[ApiKeys, InMemoryApiKeyStore],
) -> None:
    keys, store = api
    ticker = Ticker()
    cached = CachedApiKeys(keys, ttl_s=10, monotonic=ticker)
    _, token = keys.create("alice", ["team-a"])
    key_id = keys.all()[0].key_id
    alice = Principal("alice", frozenset({"team-a"}))
    # Given a key looked up once
    assert cached.authenticate(token) == alice
    assert cached.authenticate(token) == alice
    assert store.finds == 1
    # When it is revoked, it still works from the cache until the TTL runs out, then never again
    keys.revoke(key_id)
    ticker.now += 9.9
    assert cached.authenticate(token) == alice
    ticker.now += 0.2
    assert cached.authenticate(token) is None
    assert cached.authenticate(token) is None  # the refusal is remembered too
    assert store.finds == 2


def test_refusals_are_cached_briefly_and_a_full_cache_stays_bounded(
    api: tuple[ApiKeys, InMemoryApiKeyStore],
) -> None:
    keys, store = api
    ticker = Ticker()
    cached = CachedApiKeys(keys, max_entries=2, monotonic=ticker, refused_ttl_s=2)
    tokens = [keys.create(f"u{n}", ["g"])[1] for n in range(3)]
    wrong = tokens[0][:-1] + ("A" if tokens[0][-1] != "A" else "B")
    assert cached.authenticate(wrong) is None
    assert cached.authenticate(wrong) is None
    assert store.finds == 1
    ticker.now += 2.1
    assert cached.authenticate(wrong) is None
    assert store.finds == 2
    assert all(cached.authenticate(token) is not None for token in tokens)
    assert len(cached._cache) <= 2


def test_a_full_cache_evicts_its_oldest_refusal_and_a_flood_of_refusals_keeps_good_keys(
    api: tuple[ApiKeys, InMemoryApiKeyStore],
) -> None:
    keys, store = api
    cached = CachedApiKeys(keys, max_entries=3, monotonic=Ticker(), refused_ttl_s=2)
    _, token = keys.create("alice", ["team-a"])
    assert cached.authenticate(token) is not None
    bad = [f"tq_{n:016x}_{'A' * 43}" for n in range(4)]  # well-formed, of no key: each costs a lookup
    # Given a cache of 3 that refused 4 tokens in turn (the first was pushed out by the fourth)
    for wrong in bad:
        assert cached.authenticate(wrong) is None
    finds = store.finds
    # Then the three newest refusals and the good key are still cached: no lookup for them
    for wrong in bad[1:]:
        assert cached.authenticate(wrong) is None
    assert cached.authenticate(token) is not None
    assert store.finds == finds
    # and the oldest refusal is looked up again
    assert cached.authenticate(bad[0]) is None
    assert store.finds == finds + 1


def test_the_chain_asks_each_authenticator_until_one_knows_the_token(
    api: tuple[ApiKeys, InMemoryApiKeyStore],
) -> None:
    keys, _ = api
    _, token = keys.create("alice", ["team-a"])
    chain = BearerAuth([CachedApiKeys(keys), hs256(), DevTokens()])
    assert chain.principal(token).name == "alice"
    assert chain.principal(jwt.encode(claims(sub="jane"), SECRET, algorithm="HS256")).name == "jane"
    assert chain.principal("dev-bob").name == "bob"
    with pytest.raises(falcon.HTTPUnauthorized):
        chain.principal("nobody")


def test_the_chain_follows_the_auth_setting(api: tuple[ApiKeys, InMemoryApiKeyStore]) -> None:
    keys, _ = api
    kinds = [type(a).__name__ for a in authenticators(GatewaySettings(auth="keys,dev,keys"), keys)]
    assert kinds == ["CachedApiKeys", "DevTokens"]
    with pytest.raises(ValueError, match="API key store"):
        authenticators(GatewaySettings(auth="keys"), None)


def app_client(api_keys: ApiKeys | None, **settings: Any) -> falcon.testing.TestClient:
    return client_over_fakes(GatewaySettings(**settings), api_keys=api_keys)


def test_dev_tokens_are_refused_unless_dev_is_enabled(api: tuple[ApiKeys, InMemoryApiKeyStore]) -> None:
    keys, _ = api
    _, token = keys.create("alice", ["team-a"])
    client = app_client(keys, auth="keys", rate_limit_rps=0)
    # Given a gateway that accepts API keys only
    refused = client.simulate_post("/v1/tasks", json=ECHO, headers={"Authorization": "Bearer dev-alice"})
    # Then a dev token is an unknown token, and the key works
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.headers["content-type"] == "application/problem+json"
    accepted = client.simulate_post("/v1/tasks", json=ECHO, headers={"Authorization": f"Bearer {token}"})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json["owner"] == "alice"
    forbidden = client.simulate_post(
        "/v1/tasks", json={**ECHO, "group": "team-b"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert forbidden.status_code == 403


def test_a_refused_jwt_is_a_401_saying_why_without_the_token() -> None:
    client = app_client(
        None, auth="jwt", jwt_algorithm="HS256", jwt_secret=SECRET, jwt_issuer=ISSUER, jwt_audience=AUDIENCE
    )
    token = jwt.encode(claims(exp=int(time.time()) - 10), SECRET, algorithm="HS256")
    response = client.simulate_get("/v1/tasks", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "expired" in response.json["detail"]
    assert token not in response.text
