"""Monitoring on the real lab host: Prometheus, Alertmanager, exporters and mtail.

Uses the session's lab host (``lab_host`` in conftest.py: the root site.yml,
which ends with playbooks/monitoring.yml, converged once). In order:

1. playbooks/monitoring.yml again changes nothing;
2. a short load through the gateway with the lab client, then negative
   probes (no API key: 401, wrong key: 401, no certificate: 403, a burst
   over the per-key rate: 429);
3. every scrape target is up;
4. the per-client counters (mtail on the JSON access log) grew by exactly the
   responses the probes saw, status by status;
5. every PromQL expression of the alert rules and the dashboards returns data
   from the lab's Prometheus (the DCGM ones excepted: the lab has no GPU, see
   DCGM_EXPRESSIONS);
6. `systemctl stop` of the vLLM instance: VLLMInstanceDown fires and
   Alertmanager delivers it to a webhook receiver running on the lab host;
   started again, the alert resolves and the resolution is delivered too.
   The times are printed (kill to delivery); nothing asserts on them.
"""

from __future__ import annotations

import http.client
import json
import pathlib
import re
import ssl
import threading
import time

import pytest

from lab_host import changed_tasks, podman

HERE = pathlib.Path(__file__).resolve().parent / "monitoring"
MODEL = "smollm2-135m-instruct"
INSTANCE = "smollm2"
WEBHOOK_PORT = 9095  # inventories/lab/group_vars/all/monitoring.yml
WEBHOOK_LOG = "/tmp/llmops-mon-webhook.jsonl"

# Expressions on DCGM exporter metrics: no GPU on the lab, so no DCGM
# exporter (the role skips it with a note). They are checked by promtool's
# unit tests (test_monitoring_rules.py) instead. The list is explicit: an
# expression outside it that uses a DCGM metric fails the test.
DCGM_EXPRESSIONS = {
    "alert GPUTemperatureHigh",
    "alert GPUDoubleBitECCErrors",
    "alert GPURowRemapFailure",
    "alert GPUXidError",
    "dashboard llmops-hosts: GPU utilization",
    "dashboard llmops-hosts: GPU memory used",
    "dashboard llmops-hosts: GPU temperature",
    "dashboard llmops-hosts: GPU power",
}
EXPECTED_JOBS = {"prometheus", "alertmanager", "node", "vllm", "nginx", "mtail"}


# --- helpers -----------------------------------------------------------------
class Lab:
    """Prometheus API, files and services of the lab host, through podman exec."""

    def __init__(self, host):
        self.host = host

    def sh(self, script, check=True, timeout=300):
        return self.host.exec("sh", "-c", script, check=check, timeout=timeout)

    def api(self, path, **params):
        args = ["curl", "-sf", "--get", f"http://127.0.0.1:9090/api/v1/{path}"]
        for key, value in params.items():
            args += ["--data-urlencode", f"{key}={value}"]
        done = self.host.exec(*args, check=False, timeout=60)
        assert done.returncode == 0, f"{path} {params}: {done.stderr}"
        answer = json.loads(done.stdout)
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr):
        return self.api("query", query=expr)["result"]

    def now(self):
        return float(self.sh("date +%s.%N").stdout)


def wait_for(what, probe, timeout, interval=2.0):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Client:
    """HTTPS to the lab's gateway, with or without the lab client's certificate."""

    def __init__(self, lab_host, cert=True):
        pki = lab_host.pki_clients
        self.port = lab_host.https_port
        self.tls = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        if cert:
            self.tls.load_cert_chain(str(pki / "lab.crt"), str(pki / "lab.key"))
        self.conn = None

    def request(self, method, path, key=None, body=None):
        if self.conn is None:
            self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls, timeout=300)
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = self.conn.getresponse()
        response.read()
        if response.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        return response.status


def lab_counts(lab):
    """The lab client's requests at the gateway, by status, as mtail counts them."""
    return {r["metric"]["status"]: round(float(r["value"][1])) for r in lab.query('sum by (status) (llmops_gateway_requests_total{client="lab"})')}


def expressions(lab):
    """(name, PromQL) for every alert rule and dashboard query installed on the lab host."""
    found = []
    for group in lab.api("rules")["groups"]:
        for rule in group["rules"]:
            if rule["type"] != "alerting":
                continue
            # Each rule is QUERY OP THRESHOLD; `bool` keeps every series of
            # QUERY in the answer (0 or 1), so "returns data" means that the
            # watched quantity exists, whether or not it is over its threshold.
            match = re.fullmatch(r"(?s)(.*\S)\s*(==|!=|>=|<=|>|<)\s*(-?[0-9.]+)\s*", rule["query"])
            assert match, f"alert {rule['name']} is not QUERY OP THRESHOLD: {rule['query']}"
            found.append((f"alert {rule['name']}", f"({match[1]}) {match[2]} bool {match[3]}"))
    listing = lab.sh("ls /etc/llmops/dashboards").stdout.split()
    assert sorted(listing) == ["llmops-clients.json", "llmops-hosts.json", "llmops-models.json"]
    for name in listing:
        board = json.loads(lab.sh(f"cat /etc/llmops/dashboards/{name}").stdout)
        for variable in board["templating"]["list"]:
            found.append((f"dashboard {board['uid']}: variable {variable['name']}", variable["query"]["query"]))
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = (
                    target["expr"]
                    .replace("$__rate_interval", "1m")
                    .replace("$__range", "15m")
                    .replace('"$model"', '".+"')
                    .replace('"$client"', '".+"')
                    .replace('"$host"', '".+"')
                )
                found.append((f"dashboard {board['uid']}: {panel['title']}", expr))
    return found


def evaluate(lab, expr):
    """Series returned by EXPR (label_values(...) as Grafana does it: the series API)."""
    variable = re.fullmatch(r"label_values\((.+), (\w+)\)", expr)
    if variable:
        return lab.api(f"label/{variable[2]}/values", **{"match[]": variable[1]})
    return lab.query(expr)


# --- the test ----------------------------------------------------------------
@pytest.fixture(scope="module")
def lab(lab_host):
    return Lab(lab_host)


def test_monitoring_playbook_is_idempotent(lab_host):
    # Tests before this one may change what the role watches (the AWX client
    # access test issues and revokes client certificates, whose expiry the
    # role collects), so one run settles that; the next must change nothing.
    for _run in ("settle", "again"):
        done = lab_host.playbook("playbooks/monitoring.yml", timeout=900)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    recap = re.search(r"llmops-lab\s*:\s*ok=\d+\s+changed=(\d+)", done.stdout)
    assert recap and recap[1] == "0", "second run of monitoring.yml changed: %s" % changed_tasks(done.stdout)


def test_load_probes_targets_and_per_client_counts(lab_host, lab):
    lab.sh("systemctl is-active prometheus prometheus-alertmanager prometheus-node-exporter prometheus-nginx-exporter mtail")
    wait_for("every target up", lambda: all(t["health"] == "up" for t in lab.api("targets")["activeTargets"]), timeout=120)
    before = lab_counts(lab)
    seen = {}

    def saw(status):
        seen[str(status)] = seen.get(str(status), 0) + 1
        return status

    key = lab_host.proxy_api_key
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8}

    # A short load: 2 clients x 3 completions.
    statuses = []

    def worker():
        client = Client(lab_host)
        for _request in range(3):
            statuses.append(client.request("POST", "/v1/chat/completions", key=key, body=chat))

    threads = [threading.Thread(target=worker) for _worker in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 6
    for status in statuses:
        saw(status)

    # Negative probes of the lab client.
    with_cert = Client(lab_host)
    for _request in range(3):
        assert saw(with_cert.request("POST", "/v1/chat/completions", body=chat)) == 401
    for _request in range(2):
        assert saw(with_cert.request("POST", "/v1/chat/completions", key="not-" + key, body=chat)) == 401
    without_cert = Client(lab_host, cert=False)
    for _request in range(2):
        assert saw(without_cert.request("POST", "/v1/chat/completions", key=key, body=chat)) == 403
    # Over the per-key rate (10 r/s, burst 20 in the role's defaults).
    burst = [saw(with_cert.request("GET", "/v1/models", key=key)) for _request in range(45)]
    assert 429 in burst and 200 in burst, burst

    # Every response the probes saw is in the lab client's counters.
    expected = {status: before.get(status, 0) + count for status, count in seen.items()}

    def caught_up():
        now = lab_counts(lab)
        return now if all(now.get(status) == count for status, count in expected.items()) else None

    counts = wait_for("mtail's counters to reach the probes' counts", caught_up, timeout=90)
    print(f"\nper-client counts (client=lab): before {before}, probes saw {seen}, after {counts}")
    for status in ("200", "401", "403", "429"):
        assert counts[status] - before.get(status, 0) == seen[status]

    targets = lab.api("targets")["activeTargets"]
    print("scrape targets:", ", ".join(f"{t['labels']['job']} {t['scrapeUrl']} {t['health']}" for t in targets))
    assert {t["labels"]["job"] for t in targets} == EXPECTED_JOBS
    assert all(t["health"] == "up" for t in targets), [(t["scrapeUrl"], t["lastError"]) for t in targets]


def test_every_expression_returns_data(lab):
    found = expressions(lab)
    dcgm = {name for name, expr in found if "DCGM_" in expr}
    assert dcgm == DCGM_EXPRESSIONS
    # rate() and increase() need two samples of a series: the gateway's
    # counters first appear with the previous test's load, one scrape ago.
    wait_for("two scrapes of the gateway's counters", lambda: lab.query("rate(llmops_gateway_requests_total[1m])"), timeout=60)
    empty = []
    evaluated = 0
    for name, expr in found:
        if name in DCGM_EXPRESSIONS:
            continue
        evaluated += 1
        if not evaluate(lab, expr):
            empty.append(f"{name}: {expr}")
    print(f"\n{evaluated} expressions evaluated, {evaluated - len(empty)} returned data; {len(DCGM_EXPRESSIONS)} DCGM expressions not evaluated (no GPU)")
    assert not empty, "expressions without data:\n" + "\n".join(empty)


def test_stopped_instance_alerts_and_resolves(lab_host, lab):
    podman("cp", str(HERE / "webhook_receiver.py"), f"{lab_host.name}:/tmp/llmops-mon-webhook.py")
    lab.sh(
        f"rm -f {WEBHOOK_LOG}; systemctl stop llmops-mon-webhook 2>/dev/null; "
        f"systemd-run --unit llmops-mon-webhook --collect python3 /tmp/llmops-mon-webhook.py "
        f"{WEBHOOK_PORT} {WEBHOOK_LOG}"
    )

    def deliveries(status):
        text = lab.sh(f"cat {WEBHOOK_LOG} 2>/dev/null || true").stdout
        for line in text.splitlines():
            entry = json.loads(line)
            for alert in entry["body"]["alerts"]:
                if alert["labels"].get("alertname") == "VLLMInstanceDown" and alert["labels"].get("vllm_instance") == INSTANCE and alert["status"] == status:
                    return entry
        return None

    try:
        wait_for("vLLM to be up before the stop", lambda: lab.query(f'up{{job="vllm", vllm_instance="{INSTANCE}"}} == 1'), timeout=60)
        stopped_at = lab.now()
        lab.sh(f"systemctl stop vllm@{INSTANCE}", timeout=120)
        stop_done = lab.now()
        fired = wait_for("VLLMInstanceDown at the webhook", lambda: deliveries("firing"), timeout=300)
        delivered = fired["received"] - stopped_at
        alert = next(a for a in fired["body"]["alerts"] if a["labels"]["alertname"] == "VLLMInstanceDown")
        assert alert["labels"]["severity"] == "critical"
        assert alert["labels"]["model"] == MODEL
        assert "is down" in alert["annotations"]["summary"]

        started_at = lab.now()
        lab.sh(f"systemctl start vllm@{INSTANCE}")

        def health():
            return lab.sh("curl -sf http://127.0.0.1:8000/health && date +%s.%N", check=False).stdout.strip()

        healthy = wait_for("vLLM healthy again", health, timeout=900, interval=5)
        resolved = wait_for("the resolution at the webhook", lambda: deliveries("resolved"), timeout=300)
        print(
            f"\nstop took {stop_done - stopped_at:.1f} s; kill (stop) to webhook delivery {delivered:.1f} s; "
            f"start to healthy {float(healthy.split()[-1]) - started_at:.1f} s; "
            f"healthy to resolved delivery {resolved['received'] - float(healthy.split()[-1]):.1f} s"
        )
    finally:
        lab.sh(f"systemctl start vllm@{INSTANCE}; systemctl stop llmops-mon-webhook", check=False)
