"""llmops.inference.model_fetch run as a real Ansible task (ansible ad-hoc, JSON callback) against nginx on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import stat
import subprocess
import sys

import pytest

from model_fetch_servers import NginxHub

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
VENV_BIN = pathlib.Path(sys.executable).parent
COLLECTIONS = pathlib.Path(os.environ.get("LLMOPS_CACHE_DIR", REPO_ROOT / ".cache")) / "collections"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = NginxHub(tmp_path_factory.mktemp("nginx-ansible")).start()
    yield server
    server.stop()


def ansible(args, check=False, python=sys.executable):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_HOST_KEY_CHECKING="0", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    env.pop("ANSIBLE_CONFIG", None)
    cmd = [str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-m", "llmops.inference.model_fetch", "-a", json.dumps(args),
           "-e", "ansible_python_interpreter=%s" % python]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    try:
        out = json.loads(proc.stdout)
    except ValueError:
        pytest.fail("ansible output is not JSON (rc=%d):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    return out["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_module_fresh_rerun_check_mode(hub, tmp_path):
    files = {"config.json": b'{"a": 1}\n', "model.safetensors": os.urandom(300_000), "docs/README.md": b"hi\n"}
    commit = hub.add_repo("acme/ansible-model", files)
    dest = tmp_path / "models" / "m"
    args = {"repo_id": "acme/ansible-model", "endpoint": hub.url, "dest": str(dest), "mode": "0640", "token": "hf_SECRET_never_logged"}

    res = ansible(args, check=True)
    assert res["changed"] is True and not res.get("failed"), res
    assert {f["status"] for f in res["files"]} == {"would_download"}
    assert res["bytes_to_fetch"] == sum(len(v) for v in files.values())
    assert not dest.exists()

    res = ansible(args)
    assert res["changed"] is True and not res.get("failed"), res
    assert res["commit"] == commit
    assert {f["status"] for f in res["files"]} == {"downloaded"}
    assert res["bytes_transferred"] == sum(len(v) for v in files.values())
    for path, data in files.items():
        assert (dest / path).read_bytes() == data
        assert stat.S_IMODE((dest / path).stat().st_mode) == 0o640
    assert "hf_SECRET_never_logged" not in json.dumps(res)

    res = ansible(args)
    assert res["changed"] is False and not res.get("failed"), res
    assert res["bytes_transferred"] == 0 and {f["status"] for f in res["files"]} == {"present"}

    res = ansible(args, check=True)
    assert res["changed"] is False, res

    # A wrong pinned hash fails the task with both hashes in the message.
    (dest / "model.safetensors").unlink()
    res = ansible(dict(args, checksums={"model.safetensors": "0" * 64}))
    assert res["failed"] is True
    assert "0" * 64 in res["msg"] and hashlib.sha256(files["model.safetensors"]).hexdigest() in res["msg"]
    assert not (dest / "model.safetensors").exists()


def test_missing_requests_is_reported(tmp_path):
    # A Python without requests on every machine: a fresh venv of this one, without site packages.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True, timeout=120)
    bare = str(tmp_path / "bare" / "bin" / "python")
    assert subprocess.run([bare, "-c", "import requests"], capture_output=True, check=False).returncode != 0
    res = ansible({"repo_id": "acme/x", "dest": str(tmp_path / "d")}, python=bare)
    assert res["failed"] is True and "Failed to import the required Python library (requests)" in res["msg"]
    assert not (tmp_path / "d").exists()
