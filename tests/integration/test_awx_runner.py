# Copyright: (c) 2026, llmops.inference maintainers
# Apache License 2.0 (see LICENSE)
"""Every job template of awx/templates.yml, run as AWX runs it (ansible-runner
with a private data directory, the synced inventory, survey defaults as extra
vars, the credentials' injected environment and the vault password at its
prompt) against the shared lab host; the deploy workflow followed node by
node; no secret in any job event or artifact.

See tests/integration/awx_runner.py for what "as AWX runs it" covers."""

from __future__ import annotations

import json
import secrets
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest
from awx_runner import AwxEmulator, find_secrets, secrets_in_command

pytestmark = pytest.mark.slow

CLIENT = "awx-test-client"


def make_emulator(lab_host, workdir):
    """AWX's view of the lab: a fake HF token, a random vault password, and
    the vLLM API key stored vaulted in the synced inventory."""
    hf_token = "hf_" + secrets.token_hex(17)
    vault_password = secrets.token_urlsafe(24)
    emulator = AwxEmulator(
        workdir,
        lab_host.inventory,
        hf_token=hf_token,
        vault_password=vault_password,
        # As inventories/example keeps it: the key vLLM requires, vaulted.
        vaulted_vars={"vault_vllm_api_key": lab_host.vllm_api_key},
        inventory_overrides={"vllm_api_key": "{{ vault_vllm_api_key }}"},
        env=lab_host.env(),
    )
    emulator.secrets = {
        "HF token": hf_token,
        "vault password": vault_password,
        "vLLM API key": lab_host.vllm_api_key,
        "gateway API key (lab)": lab_host.proxy_api_key,
    }
    return emulator


@pytest.fixture(scope="module")
def awx(lab_host, tmp_path_factory):
    return make_emulator(lab_host, tmp_path_factory.mktemp("awx"))


def _changed(job) -> int:
    return sum(job.stats.get("changed", {}).values())


def _tls(lab_host, name):
    ctx = ssl.create_default_context(cafile=str(lab_host.pki_clients / "ca.crt"))
    ctx.load_cert_chain(str(lab_host.pki_clients / f"{name}.crt"), str(lab_host.pki_clients / f"{name}.key"))
    return ctx


def _models(lab_host, name, key):
    request = urllib.request.Request(lab_host.base_url + "/v1/models", headers={"Authorization": "Bearer " + key})
    try:
        with urllib.request.urlopen(request, context=_tls(lab_host, name), timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as refused:
        return refused.code, None


def _serial(path):
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_deploy_workflow_runs_preflight_site_smoke_in_order(awx):
    status, ran = awx.run_workflow("llmops deploy")
    summary = [(node, job.status, job.rc) for node, job in ran]
    assert [step[0] for step in ran] == ["preflight", "site", "smoke_test"], summary
    for node, job in ran:
        assert job.status == "successful", f"{node}: {job.status}\n{job.stdout[-4000:]}"
        assert not job.stats.get("failures") and not job.stats.get("dark"), job.stats
    assert status == "successful"
    preflight, site, smoke = (step[1] for step in ran)
    # preflight is a check-mode template; site on a converged host changes nothing.
    assert "--check" in json.loads((preflight.artifact_dir / "command").read_text())["command"]
    assert _changed(site) == 0, f"site changed {site.stats.get('changed')} on a converged host"
    assert "Paris" in smoke.stdout, "the smoke test's answer did not contain the survey's expected word"
    assert "The API key appears in no command line and no journal." in smoke.stdout


def test_failing_preflight_fails_with_its_message_and_stops_the_workflow(awx):
    status, ran = awx.run_workflow("llmops deploy", {"preflight": {"preflight_min_memory_mb": 16_000_000}})
    assert status == "failed"
    assert [step[0] for step in ran] == ["preflight"], "site or smoke test ran after a failed preflight"
    job = ran[0][1]
    assert job.status == "failed" and job.rc != 0
    messages = " ".join(job.failed_messages())
    assert "16000000 MB required (preflight_min_memory_mb)" in messages, messages


def test_client_access_issue_renew_revoke(awx, lab_host):
    issued = awx.launch("llmops client access", {"client_access_name": CLIENT})
    assert issued.status == "successful", issued.stdout[-4000:]
    key = (lab_host.pki_clients / f"{CLIENT}.api_key").read_text().strip()
    awx.secrets["gateway API key (issued)"] = key
    status, listing = _models(lab_host, CLIENT, key)
    assert status == 200 and listing["data"][0]["id"] == "smollm2-135m-instruct"
    first_serial = _serial(lab_host.pki_clients / f"{CLIENT}.crt")

    again = awx.launch("llmops client access", {"client_access_name": CLIENT})
    assert again.status == "successful" and _changed(again) == 0, again.stats

    # renew with a new API key given in the survey's password field
    new_key = secrets.token_urlsafe(36)
    awx.secrets["gateway API key (survey password)"] = new_key
    renewed = awx.launch(
        "llmops client access",
        {"client_access_name": CLIENT, "client_access_action": "renew", "client_access_rotate_api_key": "true", "client_access_api_key": new_key},
    )
    assert renewed.status == "successful", renewed.stdout[-4000:]
    assert _serial(lab_host.pki_clients / f"{CLIENT}.crt") != first_serial
    assert list((lab_host.pki_clients / f"{CLIENT}.replaced").glob("*/*.crt")), "the old certificate was not kept"
    assert (lab_host.pki_clients / f"{CLIENT}.api_key").read_text().strip() == new_key
    assert _models(lab_host, CLIENT, new_key)[0] == 200
    assert _models(lab_host, CLIENT, key)[0] == 401, "the rotated-out key still works"
    key = new_key

    revoked = awx.launch("llmops client access", {"client_access_name": CLIENT, "client_access_action": "revoke"})
    assert revoked.status == "successful", revoked.stdout[-4000:]
    assert not (lab_host.pki_clients / f"{CLIENT}.api_key").exists()
    assert _models(lab_host, CLIENT, key)[0] in (400, 401, 403)
    # The lab's own client still gets in.
    assert _models(lab_host, "lab", lab_host.proxy_api_key)[0] == 200

    refused = awx.launch("llmops client access", {"client_access_name": CLIENT})
    assert refused.status == "failed"
    assert "was revoked; issue a new name instead" in " ".join(refused.failed_messages())


def test_rolling_update_template(awx):
    job = awx.launch("llmops rolling update")
    assert job.status == "successful", job.stdout[-6000:]
    assert not job.stats.get("failures"), job.stats


def test_no_secret_in_any_job_event_or_artifact(awx):
    assert len(awx.jobs) >= 9, [j.template for j in awx.jobs]
    leaks = []
    for job in awx.jobs:
        leaks += [f"{job.template}: {where}" for where in find_secrets(job, awx.secrets)]
        command = secrets_in_command(job, awx.secrets)
        assert not command["argv"], f"{job.template}: secrets on the command line: {command['argv']}"
        # runner records the job's environment in artifacts/ID/command (0600);
        # only the env injector's HF_TOKEN may be there.
        assert set(command["env"]) <= {"HF token"}, command
        assert command["mode"] == "0o600"
    assert not leaks, "\n".join(leaks)
    # The HF token did reach the jobs: as HF_TOKEN in their environment.
    assert all("HF token" in secrets_in_command(j, awx.secrets)["env"] for j in awx.jobs)
