"""TLS probes for the nginx_mtls proxy: real handshakes, real certificates."""

from __future__ import annotations

import datetime
import http.client
import json
import pathlib
import ssl
import time
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes
    chunk_times: list = field(default_factory=list)

    def json(self):
        return json.loads(self.body)


def context(ca: pathlib.Path, cert: pathlib.Path | None = None, key: pathlib.Path | None = None, tls_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    if tls_version is not None:
        ctx.set_ciphers("DEFAULT@SECLEVEL=0")
        ctx.minimum_version = tls_version
        ctx.maximum_version = tls_version
    return ctx


def request(
    endpoint: str,
    ctx: ssl.SSLContext,
    method: str = "GET",
    path: str = "/v1/models",
    *,
    api_key: str | None = None,
    body: dict | bytes | None = None,
    headers: dict | None = None,
    timeout: float = 30.0,
) -> Reply:
    """One request on a fresh connection; a streamed body is read chunk by chunk with arrival times."""
    host, port = endpoint.rsplit(":", 1)
    # The server certificate carries IP:127.0.0.1, so the address is verified too.
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=timeout)
    hdrs = dict(headers or {})
    if api_key is not None:
        hdrs["Authorization"] = f"Bearer {api_key}"
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        chunks, times = [], []
        while True:
            piece = resp.read1(65536)
            if not piece:
                break
            chunks.append(piece)
            times.append(time.monotonic())
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, b"".join(chunks), times)
    finally:
        conn.close()


def write_pem(path: pathlib.Path, key, cert) -> tuple[pathlib.Path, pathlib.Path]:
    key_path = path.with_suffix(".key")
    cert_path = path.with_suffix(".crt")
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def issue(
    common_name: str,
    issuer_cert: x509.Certificate | None,
    issuer_key,
    *,
    ca: bool = False,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
):
    """A certificate signed by issuer_key (self-signed when issuer_cert is None)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after or now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    cert = builder.sign(issuer_key if issuer_cert else key, hashes.SHA256())
    return key, cert
