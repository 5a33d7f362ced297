"""The shared lab host answers through its mTLS gateway as scripts/lab.sh's does."""

from __future__ import annotations

import json
import re
import ssl
import time
import urllib.error
import urllib.request

import pytest
from lab_host import changed_tasks

pytestmark = pytest.mark.slow


def _tls(lab_host, with_cert=True):
    ctx = ssl.create_default_context(cafile=str(lab_host.pki_clients / "ca.crt"))
    if with_cert:
        ctx.load_cert_chain(str(lab_host.pki_clients / "lab.crt"), str(lab_host.pki_clients / "lab.key"))
    return ctx


def _ask_capital_of_france(lab_host) -> str:
    body = json.dumps({"model": "smollm2-135m-instruct", "max_tokens": 16, "temperature": 0,
                       "messages": [{"role": "user", "content": "What is the capital of France?"}]}).encode()
    request = urllib.request.Request(lab_host.base_url + "/v1/chat/completions", data=body, headers={
        "Authorization": "Bearer " + lab_host.proxy_api_key, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=_tls(lab_host), timeout=120) as response:
        return json.load(response)["choices"][0]["message"]["content"]


def test_gateway_answers_with_certificate_and_key(lab_host):
    assert "Paris" in _ask_capital_of_france(lab_host)


def test_gateway_refuses_without_certificate(lab_host):
    request = urllib.request.Request(lab_host.base_url + "/v1/models",
                                     headers={"Authorization": "Bearer " + lab_host.proxy_api_key})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, context=_tls(lab_host, with_cert=False), timeout=30)
    assert refused.value.code == 403


def test_site_yml_is_idempotent(lab_host):
    run = lab_host.second_run
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    recap = re.search(r"llmops-lab\s*:\s*ok=\d+\s+changed=(\d+)", run.stdout)
    assert recap and recap[1] == "0", f"second run of site.yml changed: {changed_tasks(run.stdout)}"


def _pooled_connections_to_vllm(lab_host) -> int:
    """Established TCP connections that nginx (www-data) holds to vLLM's port 8000 in the lab host."""
    script = ('uid=$(id -u www-data); awk -v uid="$uid" \'$3 ~ /:1F40$/ && $4 == "01" && $8 == uid\' '
              "/proc/net/tcp /proc/net/tcp6 | wc -l")
    return int(lab_host.exec("sh", "-c", script).stdout.strip())


def test_vllm_keeps_the_gateways_idle_connections_open(lab_host):
    """nginx pools its connections to vLLM for 60 s (nginx_mtls_upstream_keepalive_timeout). vLLM must not close
    them first (vllm_http_keepalive_timeout, 75 s; vLLM's own default is 5 s): a request nginx sends on a
    connection vLLM is closing fails with a 502 that nginx does not retry (seen in a rolling update under load)."""
    assert "Paris" in _ask_capital_of_france(lab_host)
    time.sleep(10)  # twice vLLM's own default keep-alive
    assert _pooled_connections_to_vllm(lab_host) >= 1


def test_vllm_serves_again_after_kill_9(lab_host):
    """A crash of vLLM's main process: systemd restarts the unit after its
    RestartSec, without first waiting out TimeoutStopSec for the dead processes'
    cgroup (what a container's systemd does without the unified cgroup
    hierarchy, scripts/lib.sh lab_cgroup_opts), and the gateway answers again."""
    unit = "vllm@smollm2.service"

    def show(prop):
        return lab_host.exec("systemctl", "show", "-p", prop, "--value", unit).stdout.strip()

    pid, restarts = show("MainPID"), int(show("NRestarts"))
    since = lab_host.exec("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
    lab_host.exec("kill", "-9", pid)
    lab_host.exec("sh", "-c", f'until [ "$(systemctl show -p NRestarts --value {unit})" -gt {restarts} ] '
                  "&& curl -sf -o /dev/null http://127.0.0.1:8000/health; do sleep 2; done", timeout=900)
    journal = lab_host.exec("journalctl", "-u", unit, "--since", since, "-o", "cat", "--no-pager").stdout
    assert show("MainPID") != pid and int(show("NRestarts")) == restarts + 1
    assert not re.search(r"State '[\w-]+' timed out|Processes still around", journal), journal[-3000:]
    assert "Paris" in _ask_capital_of_france(lab_host)
