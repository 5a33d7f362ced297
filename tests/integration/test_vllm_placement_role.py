"""The vllm role's placement tasks (roles/vllm/tasks/placement.yml) run for real by ansible-playbook.

This machine has no GPU, so pynvml is the fake of the unit tests, placed on the
module's path and answering like a 2-GPU NVLink host or an 8-GPU NVSwitch host.
gpu_validate, the filters, the role's tasks and Ansible around them are real;
the same playbook ran against real 2- and 4-GPU hosts
(benchmarks/results/multi_gpu_*/placement-*.json).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
COLLECTIONS = pathlib.Path(os.environ.get("LLMOPS_CACHE_DIR", REPO_ROOT / ".cache")) / "collections"
VENV_BIN = pathlib.Path(sys.executable).parent
FAKE = REPO_ROOT / "tests" / "unit" / "plugins" / "module_utils" / "test_gpu_fake_pynvml.py"
PLAYBOOK = REPO_ROOT / "benchmarks" / "multi_gpu" / "placement.yml"

HOSTS = {
    "nv_pair": "impl.host(2, nvlink=lambda i: impl.direct_links(18, lambda link: 1 - i), pcie='SYS')",
    "nvswitch8": ("impl.host(8, nvlink=lambda i: impl.switch_links(18), numa=lambda i: i // 4, "
                  "pcie=lambda i, j: 'NODE' if i // 4 == j // 4 else 'SYS', fabric=lambda i: 3)"),
}


def fake_host(tmp_path, kind):
    (tmp_path / "pynvml.py").write_text(
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('llmops_fake_pynvml_impl', %r)\n"
        "impl = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(impl)\n"
        "sys.modules['pynvml'] = impl.make_fake(%s)\n" % (str(FAKE), HOSTS[kind])
    )
    return tmp_path


def place(tmp_path, kind, layout, **extra_vars):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0",
               PYTHONPATH=str(fake_host(tmp_path, kind)))
    env.pop("ANSIBLE_CONFIG", None)
    extra = dict({"ansible_python_interpreter": sys.executable, "layout": layout}, **extra_vars)
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-e", json.dumps(extra), str(PLAYBOOK)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    try:
        out = json.loads(proc.stdout)
    except ValueError:
        pytest.fail("ansible-playbook output is not JSON (rc=%d):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    tasks = {task["task"]["name"].split(" : ", 1)[-1]: task["hosts"]["localhost"] for play in out["plays"] for task in play["tasks"]}
    return proc.returncode, tasks


def model(name, tp=1, **extra):
    return dict({"name": name, "tensor_parallel_size": tp, "port": 8000, "path": "/m"}, **extra)


def test_two_gpu_nvlink_host_places_tp2_and_a_pinned_layout(tmp_path):
    rc, tasks = place(tmp_path, "nv_pair", [model("llama70b", 2, environment={"VLLM_LOGGING_LEVEL": "INFO"})])
    assert rc == 0, tasks
    shown = tasks["Placement | Show each instance's GPUs"]["results"][0]["msg"]
    assert shown == ("vllm_models[llama70b]: GPU 0, 1 (NV18, NUMA node unknown, CPUs 0-15): CUDA_VISIBLE_DEVICES="
                     "GPU-00000000-0000-0000-0000-000000000000,GPU-00000001-0000-0000-0000-000000000001")
    assert tasks["Show the models as the role would configure them"]["msg"] == [{
        "VLLM_LOGGING_LEVEL": "INFO",
        "CUDA_VISIBLE_DEVICES": "GPU-00000000-0000-0000-0000-000000000000,GPU-00000001-0000-0000-0000-000000000001"}]
    # gpu_validate ran for real first and left the topology in the facts.
    assert tasks["Placement | Read the GPUs and how they are joined"]["ansible_facts"]["nvidia"]["topology"]["matrix"] == [
        ["X", "NV18"], ["NV18", "X"]]


def test_impossible_placement_fails_naming_the_instance(tmp_path):
    rc, tasks = place(tmp_path, "nv_pair", [model("big", 2), model("small")])
    assert rc == 2
    msg = tasks["Placement | Refuse an impossible placement"]["msg"]
    assert msg.startswith("vllm_models[small]: needs 1 GPU(s) but only 0 are free (in use: GPU 0 (big), GPU 1 (big))")
    assert "joined as X NV18 / NV18 X" in msg
    assert "vllm_gpu_placement: false" in msg


def test_eight_gpu_nvswitch_host_keeps_tp4_groups_on_numa_nodes(tmp_path):
    rc, tasks = place(tmp_path, "nvswitch8", [model("a", 4), model("b", 4)])
    assert rc == 0, tasks
    shown = [r["msg"] for r in tasks["Placement | Show each instance's GPUs"]["results"]]
    assert shown[0].startswith("vllm_models[a]: GPU 0, 1, 2, 3 (NV18, NUMA node 0, CPUs 0-15): CUDA_VISIBLE_DEVICES=GPU-00000000")
    assert shown[1].startswith("vllm_models[b]: GPU 4, 5, 6, 7 (NV18, NUMA node 1, CPUs 0-15): CUDA_VISIBLE_DEVICES=GPU-00000004")
