"""The vllm role's fetch step for real: ansible-playbook runs roles/vllm/tasks/fetch.yml on localhost against a paced nginx.

It must print progress lines while model_fetch runs in the background, report changed once, then changed=0 on a
re-run and in check mode.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from model_fetch_servers import NginxHub

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
VENV_BIN = pathlib.Path(sys.executable).parent
COLLECTIONS = pathlib.Path(os.environ.get("LLMOPS_CACHE_DIR", REPO_ROOT / ".cache")) / "collections"
MiB = 1024 * 1024

PLAY = """
- name: The vllm role's fetch step, alone
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: {python}
    vllm_hf_endpoint: {endpoint}
    vllm_fetch_poll_interval: 1
    vllm__fetch_changed: []
    vllm__present_models:
      - name: tiny
        path: {dest}
        source:
          repo_id: acme/role-fetch
          revision: {commit}
          connections: 2
          chunk_size: {chunk}
  tasks:
    - name: Fetch
      ansible.builtin.include_role:
        name: llmops.inference.vllm
        tasks_from: fetch.yml
    - name: Report
      ansible.builtin.debug:
        msg: "CHANGED={{{{ vllm__fetch_changed | to_json }}}}"
"""


@pytest.fixture(scope="module")
def paced_hub(tmp_path_factory):
    server = NginxHub(tmp_path_factory.mktemp("nginx-role"), limit_rate="1m").start()
    yield server
    server.stop()


def playbook(path, *extra):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    env.pop("ANSIBLE_CONFIG", None)
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(path), *extra], capture_output=True, text=True,
                          env=env, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    recap = re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)", proc.stdout)
    changed = json.loads(re.search(r"CHANGED=(\[.*?\])", proc.stdout).group(1))
    return proc.stdout, int(recap.group(1)), changed


def test_role_fetch_prints_progress_and_is_idempotent(paced_hub, tmp_path):
    data = b"".join(hashlib.sha256(b"role:%d" % i).digest() * 1024 for i in range(12 * 32))  # 12 MiB
    commit = paced_hub.add_repo("acme/role-fetch", {"model.safetensors": data, "config.json": b"{}\n"})
    dest = tmp_path / "models" / "tiny"
    play = tmp_path / "play.yml"
    play.write_text(PLAY.format(python=sys.executable, endpoint=paced_hub.url, dest=dest, commit=commit, chunk=4 * MiB))

    out, changed_tasks, changed = playbook(play)
    lines = re.findall(r"\(item=tiny: (running [^)]*\)[^)]*)\)", out)
    assert lines, out[-3000:]
    assert all("GiB" in line and "MiB/s" in line and "ETA" in line for line in lines)
    assert re.search(r"\(item=tiny: done 0\.01 of 0\.01 GiB \(100\.0%\)", out), out[-3000:]
    assert changed == ["tiny"] and changed_tasks >= 1
    assert (dest / "model.safetensors").read_bytes() == data
    progress = json.loads((dest / ".llmops-progress.json").read_text())
    assert progress["state"] == "done" and progress["bytes_done"] == len(data) + 3 and progress["id"].startswith("tiny-")

    out, changed_tasks, changed = playbook(play)
    assert changed_tasks == 0 and changed == []
    out, changed_tasks, changed = playbook(play, "--check")
    assert changed_tasks == 0 and changed == [] and "item=tiny: running" not in out
