"""TLS and mutual TLS for HTTP and gRPC, with a certificate authority this test creates.

A real ``modelport serve --tls-cert --tls-key --tls-client-ca --grpc-port`` is called by httpx
and by tritonclient's gRPC client over SSL: with a client certificate the CA signed, calls
succeed; without one, or with one from another CA, the handshake is refused.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from conftest import Home, Server, free_port, launch, sum_example, sum_model
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tritonclient.utils import InferenceServerException


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
           issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
           server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_key.public_key()), critical=False)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Path:
    path.with_suffix(".key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("modelport test CA", ca_key, _name("modelport test CA"), ca_key, ca=True)
    _write(d / "ca.pem", ca, ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    _write(d / "server.pem", _issue("localhost", server_key, ca.subject, ca_key, server=True),
           server_key)
    client_key = ec.generate_private_key(ec.SECP256R1())
    _write(d / "client.pem", _issue("checkout", client_key, ca.subject, ca_key), client_key)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _issue("other CA", other_key, _name("other CA"), other_key, ca=True)
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    _write(d / "stranger.pem", _issue("stranger", stranger_key, other.subject, other_key),
           stranger_key)
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem",
               d / "client.key", d / "stranger.pem", d / "stranger.key")


def _context(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[tuple[Server, str]]:
    tmp = tmp_path_factory.mktemp("tls")
    home = Home(tmp / "home")
    home.register(sum_model(), "sum", sum_example())
    grpc_port = free_port()
    server = launch(home, tmp, "sum", "--tls-cert", str(pki.server_cert), "--tls-key",
                    str(pki.server_key), "--tls-client-ca", str(pki.ca), "--grpc-port",
                    str(grpc_port), ready=False)
    server.url = server.url.replace("http://", "https://")
    context = _context(pki, pki.client_cert, pki.client_key)
    deadline = time.monotonic() + 120
    while True:
        assert server.proc.poll() is None, server.output()
        try:
            if httpx.get(server.url + "/v2/health/ready", verify=context).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.2)
    yield server, f"localhost:{grpc_port}"
    server.stop()


def test_https_with_a_client_certificate(served: tuple[Server, str], pki: Pki) -> None:
    context = _context(pki, pki.client_cert, pki.client_key)
    r = httpx.post(served[0].url + "/predict/sum", json={"a": 1.0, "b": 2.0}, verify=context)
    assert r.status_code == 200 and r.json()["prediction"] == 3.0


def test_https_refuses_clients_without_a_certificate_of_the_ca(
        served: tuple[Server, str], pki: Pki) -> None:
    for context in (_context(pki), _context(pki, pki.stranger_cert, pki.stranger_key)):
        with pytest.raises(httpx.HTTPError):
            httpx.get(served[0].url + "/v2/health/live", verify=context)
    with pytest.raises(httpx.HTTPError):  # plain HTTP to the TLS port
        httpx.get(served[0].url.replace("https://", "http://") + "/v2/health/live")


def _client(target: str, pki: Pki, cert: Path | None = None,
            key: Path | None = None) -> triton_grpc.InferenceServerClient:
    return triton_grpc.InferenceServerClient(
        target, ssl=True, root_certificates=str(pki.ca),
        private_key=str(key) if key else None, certificate_chain=str(cert) if cert else None)


def test_grpc_over_mutual_tls(served: tuple[Server, str], pki: Pki) -> None:
    client = _client(served[1], pki, pki.client_cert, pki.client_key)
    assert client.is_server_ready()
    inputs = []
    for name in ("a", "b"):
        tensor = triton_grpc.InferInput(name, [1], "FP64")
        tensor.set_data_from_numpy(np.array([2.0]))
        inputs.append(tensor)
    result = client.infer("sum", inputs)
    assert result.as_numpy(result.get_response().outputs[0].name).tolist() == [4.0]
    client.close()
    for cert, key in ((None, None), (pki.stranger_cert, pki.stranger_key)):
        stranger = _client(served[1], pki, cert, key)
        with pytest.raises(InferenceServerException) as refused:
            stranger.is_server_live()
        assert refused.value.status() == "StatusCode.UNAVAILABLE"
        stranger.close()
