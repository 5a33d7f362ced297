"""The monitoring role's Prometheus files, checked by Prometheus' own promtool.

The role's templates are rendered on the controller (ansible-playbook with a
fleet-shaped inventory: two GPU inference hosts, one gateway that is also the
monitoring host), then:
  promtool check rules   the alert rules
  promtool test rules    roles/monitoring/files/tests/alert_rules_test.yml
  promtool check config  prometheus.yml (remote vLLM over mTLS, DCGM targets)
promtool comes from Debian's `prometheus` package (scripts/lib.sh installs it).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "monitoring"
HERE = pathlib.Path(__file__).resolve().parent / "monitoring"


def promtool(*args):
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: scripts/lib.sh install_host_packages installs Debian's prometheus package"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, check=False)


def render(out, **extra):
    """Render the role's templates into OUT with the role's defaults and EXTRA (-e)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    cmd = ["ansible-playbook", "-i", str(HERE / "inventory.yml"), str(HERE / "render.yml"), "-e", f"out={out}"]
    for key, value in extra.items():
        cmd += ["-e", f"{key}={value}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO, env=env, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("monitoring")
    for name in ("fleet-ca.crt", "prometheus.crt", "prometheus.key"):
        (out / name).write_text("")
    render(
        out,
        monitoring_vllm_remote_ca_file=out / "fleet-ca.crt",
        monitoring_vllm_remote_cert_file=out / "prometheus.crt",
        monitoring_vllm_remote_key_file=out / "prometheus.key",
    )
    shutil.copy(ROLE / "files" / "tests" / "alert_rules_test.yml", out)
    return out


def test_promtool_check_rules(rendered):
    done = promtool("check", "rules", str(rendered / "llmops.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 15 rules found" in done.stdout


def test_promtool_test_rules(rendered):
    done = promtool("test", "rules", str(rendered / "alert_rules_test.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_test_rules_follows_thresholds(tmp_path):
    """The unit tests fail when a threshold moves: they test the rendered rules, not a copy."""
    render(tmp_path, monitoring_alert_cert_days=5, monitoring_alert_target_down_for="4m")
    shutil.copy(ROLE / "files" / "tests" / "alert_rules_test.yml", tmp_path)
    done = promtool("test", "rules", str(tmp_path / "alert_rules_test.yml"))
    assert done.returncode != 0
    assert "CertificateExpiringSoon" in done.stdout + done.stderr
    assert "VLLMInstanceDown" in done.stdout + done.stderr


def test_promtool_check_config(rendered):
    done = promtool("check", "config", str(rendered / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_scrape_targets_from_the_inventory(rendered):
    config = yaml.safe_load((rendered / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "alertmanager", "node", "vllm_remote", "nginx", "mtail", "dcgm"}

    def targets(job):
        return sorted((t, c["labels"].get("__metrics_path__", "")) for c in jobs[job]["static_configs"] for t in c["targets"])

    # Every host once, on its fleet address; the monitoring host's own
    # exporters on loopback.
    assert targets("node") == [("10.0.0.11:9100", ""), ("10.1.0.12:9100", ""), ("127.0.0.1:9100", "")]
    # Remote vLLM through each inference host's backend TLS terminator (port +
    # 10000) with the fleet backend client certificate; the absent instance
    # of gpu-02 is not scraped.
    assert targets("vllm_remote") == [("10.0.0.11:18000", ""), ("10.0.0.11:18001", ""), ("10.1.0.12:18000", "")]
    remote = jobs["vllm_remote"]
    assert remote["scheme"] == "https" and remote["metrics_path"] == "/metrics"
    tls = remote["tls_config"]
    assert tls["cert_file"].endswith("prometheus.crt") and tls["key_file"].endswith("prometheus.key")
    assert tls["ca_file"].endswith("fleet-ca.crt")
    assert tls["server_name"] == "llmops-inference-backend"
    assert targets("dcgm") == [("10.0.0.11:9400", ""), ("10.1.0.12:9400", "")]
    assert targets("mtail") == [("127.0.0.1:3903", "")]


def test_dcgm_counters_cover_the_gpu_alerts_and_dashboards(rendered):
    """Every DCGM field the rules and dashboards use is in the exporter's counter list."""
    fields = {line.split(",")[0].strip() for line in (rendered / "dcgm-counters.csv").read_text().splitlines() if line.strip() and not line.startswith("#")}
    used = set()
    for text in [(rendered / "llmops.yml").read_text()] + [p.read_text() for p in (ROLE / "files" / "dashboards").glob("*.json")]:
        used |= set(re.findall(r"DCGM_FI_[A-Z_]+", text))
    assert used and used <= fields, used - fields
    unit = (rendered / "llmops-dcgm-exporter.service").read_text()
    assert "-f /etc/llmops-monitoring/dcgm-counters.csv -a 127.0.0.1:9400" in unit
