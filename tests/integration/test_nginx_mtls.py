"""The nginx_mtls role, probed through real TLS against a converged target.

Run by molecule's verify step (molecule/nginx_mtls/verify.yml), which sets:
  NGINX_MTLS_ENDPOINT   127.0.0.1:PORT published by the container
  NGINX_MTLS_PKI_DIR    the controller PKI directory the role managed
  NGINX_MTLS_INVENTORY  molecule's inventory (to converge again)
  NGINX_MTLS_CONTAINER  the podman container (to read logs, stop upstreams)
Without NGINX_MTLS_ENDPOINT the module is skipped (the integration stage:
tests/skip_allowlist.txt says why); with it, a missing PKI fails the run, and
verify sets LLMOPS_NO_SKIPS=1 so that no skip can turn the scenario green.
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import json
import os
import pathlib
import ssl
import subprocess
import sys
import threading
import time

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12


REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "nginx_mtls"))
from mtls_probe import context, issue, request, write_pem  # noqa: E402

ENDPOINT = os.environ.get("NGINX_MTLS_ENDPOINT", "")
PKI = pathlib.Path(os.environ.get("NGINX_MTLS_PKI_DIR", "/nonexistent"))
INVENTORY = os.environ.get("NGINX_MTLS_INVENTORY", "")
CONTAINER = os.environ.get("NGINX_MTLS_CONTAINER", "nginx-mtls-instance")

if not ENDPOINT:
    pytest.skip("needs a converged nginx_mtls target: run `molecule test -s nginx_mtls`", allow_module_level=True)
for _needed in (PKI / "ca" / "ca.crt", PKI / "ca" / "ca.key", PKI / "clients"):
    if not _needed.exists():
        pytest.fail(f"NGINX_MTLS_PKI_DIR={PKI} has no {_needed.relative_to(PKI)}: the role's PKI is not where verify looks", pytrace=False)

VARS = yaml.safe_load((REPO / "tests/integration/nginx_mtls/scenario_vars.yml").read_text())
KEYS = {c["name"]: c["api_key"] for c in VARS["nginx_mtls_clients"]}
CA = PKI / "ca" / "ca.crt"
CLIENTS = PKI / "clients"
CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def ctx_for(name: str | None = None, **kw) -> ssl.SSLContext:
    if name is None:
        return context(CA, **kw)
    return context(CA, CLIENTS / f"{name}.crt", CLIENTS / f"{name}.key", **kw)


def in_container(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", "exec", CONTAINER, *cmd], capture_output=True, text=True, check=check, timeout=120)


def converge(*extra: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(REPO / ".cache" / "collections"),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
        # Plain, unwrapped output (molecule's environment wraps long lines).
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
        ANSIBLE_CALLBACK_RESULT_FORMAT="json",
        COLUMNS="100000",
    )
    return subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, str(REPO / "molecule/nginx_mtls/converge.yml"), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=REPO,
        check=False,
    )


def assert_openai_error(reply, status: int, code: str) -> None:
    assert reply.status == status, (reply.status, reply.body)
    assert reply.headers["content-type"].startswith("application/json")
    err = reply.json()["error"]
    assert set(err) == {"message", "type", "code"}
    assert err["code"] == code, err


# --- who gets in -------------------------------------------------------------


def test_valid_certificate_and_key_reach_the_model():
    reply = request(ENDPOINT, ctx_for("alice"), api_key=KEYS["alice"])
    assert reply.status == 200, reply.body
    assert reply.json()["data"][0]["id"] == "test-model"
    # vLLM gets the proxy's own credential, never the client's key.
    assert reply.headers["x-fake-saw-authorization"] == f"Bearer {VARS['nginx_mtls_upstream_api_key']}"
    assert reply.headers["strict-transport-security"].startswith("max-age=")
    assert reply.headers["server"] == "nginx"  # no version


def test_no_client_certificate_is_refused():
    assert_openai_error(request(ENDPOINT, ctx_for(None), api_key=KEYS["alice"]), 403, "client_certificate_required")


def test_certificate_from_another_ca_is_refused(tmp_path):
    other_key, other_ca = issue("some other CA", None, None, ca=True)
    key, cert = issue("alice", other_ca, other_key)
    cert_path, key_path = write_pem(tmp_path / "alice-other", key, cert)
    reply = request(ENDPOINT, context(CA, cert_path, key_path), api_key=KEYS["alice"])
    assert_openai_error(reply, 403, "client_certificate_invalid")


def test_expired_certificate_from_our_ca_is_refused(tmp_path):
    ca_cert = x509.load_pem_x509_certificate((PKI / "ca" / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((PKI / "ca" / "ca.key").read_bytes(), None)
    now = datetime.datetime.now(datetime.timezone.utc)
    key, cert = issue("alice", ca_cert, ca_key, not_before=now - datetime.timedelta(days=10), not_after=now - datetime.timedelta(days=1))
    cert_path, key_path = write_pem(tmp_path / "alice-expired", key, cert)
    reply = request(ENDPOINT, context(CA, cert_path, key_path), api_key=KEYS["alice"])
    assert_openai_error(reply, 403, "client_certificate_invalid")


def test_valid_certificate_without_key_gets_401():
    reply = request(ENDPOINT, ctx_for("alice"))
    assert_openai_error(reply, 401, "invalid_api_key")
    assert reply.headers["www-authenticate"].startswith("Bearer")


def test_valid_certificate_with_wrong_key_gets_401():
    assert_openai_error(request(ENDPOINT, ctx_for("alice"), api_key="sk-" + "0" * 40), 401, "invalid_api_key")


def test_key_of_another_client_is_refused():
    reply = request(ENDPOINT, ctx_for("alice"), api_key=KEYS["carol"])
    assert_openai_error(reply, 403, "key_certificate_mismatch")


def test_tls_1_1_is_refused():
    ctx = ctx_for("alice", tls_version=ssl.TLSVersion.TLSv1_1)
    with pytest.raises(ssl.SSLError) as err:
        request(ENDPOINT, ctx, api_key=KEYS["alice"])
    # The server's alert, not a client that refused to offer TLS 1.1.
    assert "PROTOCOL_VERSION" in str(err.value).upper(), err.value
    ok = request(ENDPOINT, ctx_for("alice", tls_version=ssl.TLSVersion.TLSv1_2), api_key=KEYS["alice"])
    assert ok.status == 200


def test_tls_1_1_is_refused_by_openssl_s_client():
    host, port = ENDPOINT.rsplit(":", 1)
    out = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"{host}:{port}",
            "-tls1_1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
            "-CAfile",
            str(CA),
            "-cert",
            str(CLIENTS / "alice.crt"),
            "-key",
            str(CLIENTS / "alice.key"),
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode != 0
    assert "Cipher is (NONE)" in out.stdout  # no session was established
    assert "alert protocol version" in out.stderr, out.stderr


def test_mozilla_intermediate_profile_with_sslyze():
    """sslyze (tests/integration/nginx_mtls/sslyze_mozilla.py) against Mozilla's intermediate profile.

    One exception, and only this one: the chain does not validate against the
    public trust stores, since a private CA signed it. It must validate
    against that CA, and nothing else may be wrong (versions, ciphers, curves,
    key, signature, certificate lifespan, vulnerabilities).
    """
    python = os.environ.get("NGINX_MTLS_SSLYZE_PYTHON", str(REPO / ".cache" / "sslyze-venv" / "bin" / "python"))
    scanner = REPO / "tests" / "integration" / "nginx_mtls" / "sslyze_mozilla.py"
    out = subprocess.run([python, str(scanner), ENDPOINT, "--ca", str(CA)], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["profile"] == "intermediate"
    private_ca_only = {"certificate_path_validation"}
    assert set(report["issues"]) == private_ca_only, report["issues"]
    public = [store for store in report["trust_stores"] if store["name"] != "private CA"]
    assert public and not any(store["ok"] for store in public), report["trust_stores"]
    assert [store["ok"] for store in report["trust_stores"] if store["name"] == "private CA"] == [True], report["trust_stores"]
    assert report["lifespan_days"] <= 90


# --- what gets through -------------------------------------------------------


def test_streaming_completion_arrives_in_several_chunks():
    body = dict(CHAT, stream=True, max_tokens=12, fake_token_delay=0.1)
    reply = request(ENDPOINT, ctx_for("alice"), "POST", "/v1/chat/completions", api_key=KEYS["alice"], body=body)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = [line for line in reply.body.decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) == 13
    assert json.loads(events[0][6:])["choices"][0]["delta"]["content"] == "tok0 "
    # Unbuffered: the events arrive spread over the ~1.1 s the upstream takes.
    assert len(reply.chunk_times) >= 6, len(reply.chunk_times)
    assert reply.chunk_times[-1] - reply.chunk_times[0] > 0.6


def test_rate_limit_per_key_answers_429():
    statuses, limited = [], None
    ctx = ctx_for("carol")
    for _dummy in range(80):  # 10 r/s with a burst of 20 for this scenario
        reply = request(ENDPOINT, ctx, api_key=KEYS["carol"])
        statuses.append(reply.status)
        if reply.status == 429:
            limited = reply
    assert statuses.count(200) >= 20 and limited is not None, statuses
    assert_openai_error(limited, 429, "rate_limit_exceeded")
    assert limited.headers["retry-after"] == "1"


def test_concurrent_streams_per_key_are_capped():
    time.sleep(1.0)
    results: list[int] = []
    body = dict(CHAT, stream=True, max_tokens=30, fake_token_delay=0.1)

    def one():
        results.append(request(ENDPOINT, ctx_for("alice"), "POST", "/v1/chat/completions", api_key=KEYS["alice"], body=body).status)

    threads = [threading.Thread(target=one) for _dummy in range(7)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(60)
    assert sorted(results).count(200) <= 4 and 429 in results and 200 in results, results


def test_request_body_limit_answers_413():
    body = dict(CHAT, messages=[{"role": "user", "content": "x" * 100_000}])
    assert_openai_error(request(ENDPOINT, ctx_for("alice"), "POST", "/v1/chat/completions", api_key=KEYS["alice"], body=body), 413, "request_too_large")


def test_health_needs_no_credentials_and_leaks_nothing():
    reply = request(ENDPOINT, ctx_for(None), path="/health")
    assert reply.status == 200
    assert reply.body in (b"", b'{"status":"ok"}')
    assert reply.headers["server"] == "nginx"


def test_metrics_refused_from_a_non_allowlisted_address():
    assert_openai_error(request(ENDPOINT, ctx_for("alice"), path="/metrics"), 403, "forbidden")


def test_metrics_served_to_an_allowlisted_scraper():
    for name in ("alice.crt", "alice.key", "ca.crt"):
        subprocess.run(["podman", "cp", str(CLIENTS / name), f"{CONTAINER}:/tmp/{name}"], check=True, timeout=60)
    out = in_container(
        "curl",
        "-sS",
        "--cacert",
        "/tmp/ca.crt",
        "--cert",
        "/tmp/alice.crt",
        "--key",
        "/tmp/alice.key",
        "--resolve",
        "localhost:443:127.0.0.1",
        "https://localhost/metrics/127.0.0.1:8002",
    )
    assert "vllm:num_requests_running" in out.stdout, out


def test_upstream_down_answers_502_json():
    in_container("systemctl", "stop", "fake-vllm@8001", "fake-vllm@8002")
    try:
        reply = request(ENDPOINT, ctx_for("alice"), api_key=KEYS["alice"])
        assert_openai_error(reply, 502, "upstream_unavailable")
        assert request(ENDPOINT, ctx_for(None), path="/health").status == 503
    finally:
        in_container("systemctl", "start", "fake-vllm@8001", "fake-vllm@8002")
    time.sleep(1)


def test_access_log_is_json_without_secrets():
    log = in_container("cat", "/var/log/nginx/llm_access.json").stdout
    entries = [json.loads(line) for line in log.splitlines()]
    assert any(e["client"] == "alice" and e["cert_cn"] == "alice" and e["status"] == 200 for e in entries)
    assert "Bearer" not in log
    for key in KEYS.values():
        assert key not in log
    assert VARS["nginx_mtls_upstream_api_key"] not in log


def test_secrets_are_root_only_on_the_target():
    out = in_container(
        "stat", "-c", "%n %U %a", "/etc/nginx/llmops/api_keys.map", "/etc/nginx/llmops/upstream_auth.conf", "/etc/nginx/llmops/tls/server.key"
    ).stdout.split("\n")
    for line in filter(None, out):
        _dummy, owner, mode = line.split()
        assert owner == "root" and mode == "600", line


def test_pkcs12_bundle_opens_with_its_passphrase():
    key, cert, extra = pkcs12.load_key_and_certificates((CLIENTS / "alice.p12").read_bytes(), VARS["nginx_mtls_pkcs12_passphrase"].encode())
    assert cert.subject.rfc4514_string() == "CN=alice"
    assert [c.subject for c in extra] == [x509.load_pem_x509_certificate(CA.read_bytes()).subject]


# --- changes: a bad template never lands; revocation and renewal by reload ---


def live_config_digest() -> str:
    out = in_container("sh", "-c", "cat /etc/nginx/nginx.conf /etc/nginx/llmops/llm_proxy.conf").stdout
    return hashlib.sha256(out.encode()).hexdigest()


def test_broken_template_keeps_the_old_configuration_serving():
    before = live_config_digest()
    run = converge("-e", json.dumps({"nginx_mtls_extra_server_directives": ["this_is_not_a_directive on;"]}))
    assert run.returncode != 0
    output = " ".join((run.stdout + run.stderr).split())  # failures may go to stderr
    assert "nginx rejected the new configuration" in output, output[-3000:]
    assert "this_is_not_a_directive" in output
    assert live_config_digest() == before
    assert request(ENDPOINT, ctx_for("alice"), api_key=KEYS["alice"]).status == 200


def mallory_on_crl() -> bool:
    crl = x509.load_pem_x509_crl((PKI / "ca" / "crl.pem").read_bytes())
    serial = x509.load_pem_x509_certificate((CLIENTS / "mallory.crt").read_bytes()).serial_number
    return crl.get_revoked_certificate_by_serial_number(serial) is not None


def served_certificate_serial() -> int:
    host, port = ENDPOINT.rsplit(":", 1)
    pem = ssl.get_server_certificate((host, int(port)))
    return x509.load_pem_x509_certificate(pem.encode()).serial_number


def test_revocation_and_renewal_apply_by_reload_without_dropping_streams():
    # A fresh scenario proves the change (200 before, refused after); a second
    # `molecule verify` finds mallory already revoked by the first one.
    before = request(ENDPOINT, ctx_for("mallory"), api_key=KEYS["mallory"])
    if before.status != 200:
        assert_openai_error(before, 403, "client_certificate_invalid")
    serial_before = served_certificate_serial()
    master_before = in_container("cat", "/run/nginx.pid").stdout.strip()

    # A long stream that is in flight while nginx reloads; it records when each chunk arrives.
    times: list[float] = []
    stop = threading.Event()
    failure: list[BaseException] = []

    def long_stream():
        host, port = ENDPOINT.rsplit(":", 1)
        conn = http.client.HTTPSConnection(host, int(port), context=ctx_for("alice"), timeout=60)
        try:
            conn.request(
                "POST",
                "/v1/chat/completions",
                json.dumps(dict(CHAT, stream=True, max_tokens=2000, fake_token_delay=0.25)),
                {"Authorization": f"Bearer {KEYS['alice']}", "Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            assert resp.status == 200
            while not stop.is_set() and resp.read1(65536):
                times.append(time.monotonic())
        except BaseException as exc:  # noqa: BLE001
            failure.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=long_stream, daemon=True)
    thread.start()
    # Revoke mallory and force renewal of every certificate (threshold beyond their lifetime).
    run = converge("-e", "nginx_mtls_test_mallory_state=revoked", "-e", "nginx_mtls_renew_before_days=100000")
    assert run.returncode == 0, run.stdout[-3000:]
    reloaded_at = time.monotonic()
    assert in_container("cat", "/run/nginx.pid").stdout.strip() == master_before  # reloaded, not restarted
    assert served_certificate_serial() != serial_before
    assert mallory_on_crl()
    assert_openai_error(request(ENDPOINT, ctx_for("mallory"), api_key=KEYS["mallory"]), 403, "client_certificate_invalid")
    assert request(ENDPOINT, ctx_for("alice"), api_key=KEYS["alice"]).status == 200  # renewed alice certificate
    # ...and the stream that was open during the reload kept flowing.
    time.sleep(2)
    stop.set()
    thread.join(30)
    assert not failure, failure
    assert times and times[0] < reloaded_at - 5 and times[-1] > reloaded_at, (len(times), failure)
