"""The fleet (two inference hosts behind a gateway), probed for real.

Run by molecule's verify step (molecule/fleet/verify.yml), which sets:
  FLEET_ENDPOINT    127.0.0.1:PORT, the gateway's published 443
  FLEET_STATE_DIR   the lab's keys and PKI on the controller
  FLEET_INVENTORY   the inventory the fleet was converged with
  FLEET_PREFIX      container names: PREFIX-gw, PREFIX-inf1, PREFIX-inf2
  FLEET_NETWORK     their podman network
  FLEET_PROBE_IMAGE an image for the third container on that network
  FLEET_RESULTS     where the load-test figures are written (JSON)
Without them the module is skipped (tests/skip_allowlist.txt).
"""

from __future__ import annotations

import json
import os
import pathlib
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1].parent
LOAD = REPO / "tests" / "integration" / "fleet" / "fleet_load.py"
ENDPOINT = os.environ.get("FLEET_ENDPOINT", "")
STATE = pathlib.Path(os.environ.get("FLEET_STATE_DIR", "/nonexistent"))
INVENTORY = os.environ.get("FLEET_INVENTORY", "")
PREFIX = os.environ.get("FLEET_PREFIX", "llmops-molecule-fleet")
NETWORK = os.environ.get("FLEET_NETWORK", PREFIX)
PROBE_IMAGE = os.environ.get("FLEET_PROBE_IMAGE", "localhost/llmops-lab-debian12:latest")
RESULTS = pathlib.Path(os.environ.get("FLEET_RESULTS", str(STATE / "fleet_results.json")))
MODEL = "smollm2-135m-instruct"
BACKEND_PORT = 18000
GW, INF1, INF2 = f"{PREFIX}-gw", f"{PREFIX}-inf1", f"{PREFIX}-inf2"

pytestmark = pytest.mark.skipif(not ENDPOINT or not (STATE / "pki").is_dir(),
                                reason="needs a converged fleet (molecule test -s fleet)")


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, timeout=timeout)


def address(container: str) -> str:
    return podman("inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{NETWORK}\").IPAddress}}}}", container).stdout.strip()


def playbook(path: str, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    return subprocess.run(["ansible-playbook", "-i", INVENTORY, str(REPO / path), *extra],
                          capture_output=True, text=True, env=env, timeout=1500, cwd=REPO, check=False)


def tls() -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(STATE / "pki/clients/ca.crt"))
    context.load_cert_chain(str(STATE / "pki/clients/app.crt"), str(STATE / "pki/clients/app.key"))
    return context


def chat(question: str, max_tokens: int = 32) -> dict:
    request = urllib.request.Request(
        f"https://{ENDPOINT}/v1/chat/completions",
        data=json.dumps({"model": MODEL, "messages": [{"role": "user", "content": question}],
                         "max_tokens": max_tokens, "temperature": 0}).encode(),
        headers={"Authorization": "Bearer " + (STATE / "gateway_api_key").read_text().strip(),
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=tls(), timeout=120) as response:
        return json.loads(response.read())


def start_load(name: str, clients: int = 4) -> tuple[subprocess.Popen, pathlib.Path, pathlib.Path]:
    stop = STATE / f"{name}.stop"
    out = STATE / f"{name}.json"
    stop.unlink(missing_ok=True)
    out.unlink(missing_ok=True)
    process = subprocess.Popen([
        sys.executable, str(LOAD), "--url", f"https://{ENDPOINT}", "--ca", str(STATE / "pki/clients/ca.crt"),
        "--cert", str(STATE / "pki/clients/app.crt"), "--key", str(STATE / "pki/clients/app.key"),
        "--api-key-file", str(STATE / "gateway_api_key"), "--model", MODEL, "--clients", str(clients),
        "--duration", "2400", "--stop-file", str(stop), "--out", str(out)], stdout=subprocess.DEVNULL)
    return process, stop, out


def stop_load(process: subprocess.Popen, stop: pathlib.Path, out: pathlib.Path) -> dict:
    stop.touch()
    process.wait(timeout=300)
    return json.loads(out.read_text())


def record(key: str, value: dict) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[key] = value
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")


def vllm_pid(container: str) -> int:
    return int(podman("exec", container, "systemctl", "show", "-p", "MainPID", "--value", "vllm@smollm2.service").stdout)


def gateway_upstreams(request_ids: set[str]) -> dict[str, str]:
    log = podman("exec", GW, "cat", "/var/log/nginx/llm_access.json").stdout
    found = {}
    for line in log.splitlines():
        entry = json.loads(line)
        if entry.get("request_id") in request_ids:
            found[entry["request_id"]] = entry.get("upstream", "")
    return found


def test_answer_through_the_gateway():
    answer = chat("What is the capital of France?")
    assert "Paris" in answer["choices"][0]["message"]["content"]


def test_both_inference_hosts_serve():
    ids = set()
    for _attempt in range(6):
        request = urllib.request.Request(
            f"https://{ENDPOINT}/v1/models",
            headers={"Authorization": "Bearer " + (STATE / "gateway_api_key").read_text().strip()})
        with urllib.request.urlopen(request, context=tls(), timeout=60) as response:
            ids.add(response.headers["X-Request-ID"])
    upstreams = set(gateway_upstreams(ids).values())
    assert {f"{address(INF1)}:{BACKEND_PORT}", f"{address(INF2)}:{BACKEND_PORT}"} <= upstreams, upstreams


def backend_probe(*curl_args: str) -> str:
    """HTTP status (or curl's error) of /health on inf1's backend port, from the gateway."""
    result = podman("exec", GW, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                    "--cacert", "/etc/nginx/llmops/tls/backend_ca.crt", "--resolve",
                    f"llmops-inference-backend:{BACKEND_PORT}:{address(INF1)}", *curl_args,
                    f"https://llmops-inference-backend:{BACKEND_PORT}/health", check=False)
    return result.stdout.strip() or f"curl exit {result.returncode}"


def test_backend_needs_the_fleet_client_certificate():
    tls_dir = "/etc/nginx/llmops/tls"
    assert backend_probe("--cert", f"{tls_dir}/backend_client.crt", "--key", f"{tls_dir}/backend_client.key") == "200"
    # No certificate, or the gateway's own server certificate (another CA): refused.
    assert backend_probe() == "400"
    assert backend_probe("--cert", f"{tls_dir}/server.crt", "--key", f"{tls_dir}/server.key") == "400"
    # vLLM itself listens on loopback only.
    direct = podman("exec", GW, "curl", "-s", "--max-time", "5", f"http://{address(INF1)}:8000/health", check=False)
    assert direct.returncode != 0


def connect_from_third_container(target: str, port: int) -> subprocess.CompletedProcess:
    """A TCP connect from a container on the fleet network that is no fleet host."""
    probe = f"{PREFIX}-probe"
    podman("rm", "-f", probe, check=False)
    return podman("run", "--rm", "--name", probe, "--network", NETWORK, PROBE_IMAGE,
                  "timeout", "8", "bash", "-c", f"exec 3<>/dev/tcp/{target}/{port}", check=False, timeout=120)


def test_third_container_gets_no_connection_at_all():
    target = address(INF1)
    result = connect_from_third_container(target, BACKEND_PORT)
    # timeout's 124: no answer at all (dropped). A refused port would fail at once with 1.
    assert result.returncode == 124, (result.returncode, result.stderr)
    ruleset = podman("exec", INF1, "nft", "list", "table", "inet", "llmops_backend").stdout
    assert "drop" in ruleset and "counter packets 0 " not in ruleset, ruleset
    # The gateway, by contrast, connects.
    reach = podman("exec", GW, "timeout", "8", "bash", "-c", f"exec 3<>/dev/tcp/{target}/{BACKEND_PORT}", check=False)
    assert reach.returncode == 0


def test_exporters_answer_the_monitoring_host_only():
    """Node exporter listens on every address of an inference host (the gateway
    is the fleet's monitoring host): the gateway reads its metrics, a third
    container gets no connection."""
    target = address(INF1)
    metrics = podman("exec", GW, "curl", "-fsS", "--max-time", "8", f"http://{target}:9100/metrics", check=False)
    assert metrics.returncode == 0 and "node_cpu_seconds_total" in metrics.stdout, metrics.stderr
    result = connect_from_third_container(target, 9100)
    assert result.returncode == 124, (result.returncode, result.stderr)
    ruleset = podman("exec", INF1, "nft", "list", "table", "inet", "llmops_exporters").stdout
    assert "9100" in ruleset and "counter packets 0 " not in ruleset, ruleset


def test_a_drained_host_stays_out_through_a_converge():
    assert podman("exec", GW, "llmops-pool", "drain", INF2).stdout.strip() == "changed"
    try:
        result = playbook("playbooks/gateway.yml")
        assert result.returncode == 0, result.stdout[-3000:]
        recap = [line for line in result.stdout.split("PLAY RECAP")[-1].splitlines() if " : ok=" in line]
        assert len(recap) == 3 and all("changed=0" in line for line in recap), recap
        config = podman("exec", GW, "cat", "/etc/nginx/llmops/llm_proxy.conf").stdout
        assert f"down; # host={INF2}" in config
        assert f"down; # host={INF1}" not in config
    finally:
        podman("exec", GW, "llmops-pool", "admit", INF2)
    assert f"down; # host={INF2}" not in podman("exec", GW, "cat", "/etc/nginx/llmops/llm_proxy.conf").stdout


def test_rolling_update_under_load_drops_nothing():
    pids = {INF1: vllm_pid(INF1), INF2: vllm_pid(INF2)}
    process, stop, out = start_load("rollout")
    try:
        time.sleep(8)
        started = time.monotonic()
        result = playbook("playbooks/rolling_update.yml", "-e", "rolling_update_restart=true")
        rollout_s = round(time.monotonic() - started, 1)
        time.sleep(5)
    finally:
        summary = stop_load(process, stop, out)
    timings = [line.strip() for line in result.stdout.splitlines() if "change and canary" in line]
    record("rolling_update", {"rollout_s": rollout_s, "phases": timings, **{k: v for k, v in summary.items() if k != "problems"}})
    assert result.returncode == 0, result.stdout[-4000:]
    assert all(vllm_pid(host) != pid for host, pid in pids.items()), "every instance must have restarted"
    assert summary["requests"] >= 8
    assert summary["failed"] == 0 and summary["truncated"] == 0, summary["problems"]


def test_kill_9_of_one_host_under_load():
    process, stop, out = start_load("kill")
    try:
        time.sleep(8)
        victim = vllm_pid(INF1)
        killed_at = time.time()
        podman("exec", INF1, "kill", "-9", str(victim))
        time.sleep(30)
    finally:
        summary = stop_load(process, stop, out)
    problems = summary["problems"]
    # Only streams already running on the killed host may break.
    late = [p for p in problems if p["start"] > killed_at]
    upstreams = gateway_upstreams({p.get("request_id", "") for p in problems})
    record("kill_9", {**{k: v for k, v in summary.items() if k != "problems"},
                      "started_after_kill_failed": len(late),
                      "broken_upstreams": sorted(set(upstreams.values()))})
    assert summary["requests"] > len(problems)
    assert late == [], late
    assert all(u.startswith(address(INF1)) for u in upstreams.values()), upstreams
