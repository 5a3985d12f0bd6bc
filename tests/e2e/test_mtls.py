"""Mutual TLS: the real gunicorn gateway with a throwaway CA; only clients with a certificate from it connect."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tqcore.bootstrap import bootstrap
from tqcore.settings import CoreSettings
from tqdev.procs import Proc, free_port, wait_until
from tqdev.stack import BIN, unique_prefix

pytestmark = pytest.mark.e2e


class Authority:
    """A certificate authority made for one test."""

    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            self._builder(self.name, self.key.public_key())
            .issuer_name(self.name)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, common_name: str, *, server: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A leaf certificate: a server's for 127.0.0.1, or a client's."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        builder = (
            self._builder(name, key.public_key())
            .issuer_name(self.name)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            )
        return builder.sign(self.key, hashes.SHA256()), key

    @staticmethod
    def _builder(name: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
        )


def write_pair(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    """Write a certificate and its key as PEM files; their paths."""
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


class Pki:
    """The files of one test's PKI: our CA, the gateway's certificate, a good client and a stranger's client."""

    def __init__(self, directory: Path) -> None:
        ours, theirs = Authority("tq test CA"), Authority("someone else's CA")
        self.ca = str(directory / "ca.crt")
        Path(self.ca).write_bytes(ours.cert.public_bytes(serialization.Encoding.PEM))
        self.server = write_pair(directory, "server", *ours.issue("127.0.0.1", server=True))
        self.client = write_pair(directory, "client", *ours.issue("alice-laptop", server=False))
        self.stranger = write_pair(directory, "stranger", *theirs.issue("mallory", server=False))

    def context(self, client: tuple[str, str] | None) -> ssl.SSLContext:
        """A client context trusting our CA, presenting ``client`` (cert, key) if given."""
        context = ssl.create_default_context(cafile=self.ca)
        if client:
            context.load_cert_chain(*client)
        return context


@pytest.fixture(scope="module")
def gateway(emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Pki]]:
    """The real ``tq-gateway`` (gunicorn) serving mutual TLS over fresh resources; its URL and the PKI."""
    directory = tmp_path_factory.mktemp("mtls")
    pki = Pki(directory)
    prefix, port = unique_prefix(), free_port()
    bootstrap(CoreSettings(endpoint_url=emulator, prefix=prefix))
    env = {
        **os.environ,
        "TQ_PREFIX": prefix,
        "TQ_ENDPOINT_URL": emulator,
        "TQ_GATEWAY_PORT": str(port),
        "TQ_GATEWAY_WORKERS": "1",
        "TQ_AUTH": "dev",
        "TQ_TLS_CERT": pki.server[0],
        "TQ_TLS_KEY": pki.server[1],
        "TQ_TLS_CLIENT_CA": pki.ca,
    }
    proc = Proc("gateway", [str(BIN / "tq-gateway")], env, directory / "gateway.log")
    url = f"https://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: proc.alive() and httpx.get(f"{url}/healthz", verify=pki.context(pki.client)).status_code == 200,
            30,
            f"the TLS gateway on {url} (log: {proc.log_path})",
        )
        yield url, pki
    finally:
        proc.stop()


def test_a_client_with_a_certificate_from_our_ca_is_served(gateway: tuple[str, Pki]) -> None:
    url, pki = gateway
    with httpx.Client(base_url=url, verify=pki.context(pki.client), timeout=10) as client:
        assert client.get("/healthz").status_code == 200
        # Bearer authentication still applies on top of the certificate
        assert client.get("/v1/tasks", params={"group": "team-a"}).status_code == 401
        listed = client.get("/v1/tasks", params={"group": "team-a"}, headers={"Authorization": "Bearer dev-alice"})
        assert listed.status_code == 200, listed.text
        assert listed.json()["items"] == []


@pytest.mark.parametrize("who", ["no certificate", "a certificate from another CA"])
def test_a_client_without_a_certificate_from_our_ca_fails_the_handshake(gateway: tuple[str, Pki], who: str) -> None:
    url, pki = gateway
    context = pki.context(None if who == "no certificate" else pki.stranger)
    # The server's TLS alert (certificate required, unknown CA) ends the handshake before any HTTP
    with (
        httpx.Client(base_url=url, verify=context, timeout=10) as client,
        pytest.raises(httpx.TransportError, match=r"(?i)alert|certificate|handshake"),
    ):
        client.get("/healthz")


def test_plain_http_is_not_served(gateway: tuple[str, Pki]) -> None:
    url, _ = gateway
    with pytest.raises(httpx.TransportError):
        httpx.get(url.replace("https://", "http://") + "/healthz", timeout=10)
