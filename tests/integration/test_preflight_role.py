"""playbooks/preflight.yml run for real against this machine (local connection, JSON callback).

This machine has no NVIDIA GPU, so these runs cover the GPU-less paths for
real (library missing, not required, deferred); the GPU paths ran on the H100
host (docs/gpu_validate.md, benchmarks/results/gpu_validate_h100/).
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


def nvml_loads():
    try:
        import pynvml  # noqa: PLC0415

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001
        return False
    return True


pytestmark = pytest.mark.skipif(nvml_loads(), reason="this machine has a working NVIDIA driver; these tests cover GPU-less hosts")


def preflight(extra_vars, check=False, pythonpath=None):
    """Run the playbook; return (rc, tasks by name -> localhost result)."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_DEPRECATION_WARNINGS="0")
    env.pop("ANSIBLE_CONFIG", None)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    extra = dict({"ansible_python_interpreter": sys.executable, "llmops_target_hosts": "all"}, **extra_vars)
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-e", json.dumps(extra),
           str(REPO_ROOT / "playbooks" / "preflight.yml")]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    try:
        out = json.loads(proc.stdout)
    except ValueError:
        pytest.fail("ansible-playbook output is not JSON (rc=%d):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    tasks = {}
    for play in out["plays"]:
        for task in play["tasks"]:
            tasks[task["task"]["name"].split(" : ", 1)[-1]] = task["hosts"]["localhost"]
    return proc.returncode, tasks


def result_of(tasks):
    return tasks["Report | Collect the outcome"]["ansible_facts"]["preflight_result"]


def test_host_without_gpu_passes_in_check_mode_when_none_is_required():
    rc, tasks = preflight({"preflight_gpu_required": False}, check=True)
    assert rc == 0
    result = result_of(tasks)
    assert result["passed"] is True
    assert {c["check"] for c in result["checks"]} == {"os", "kernel", "memory", "model_store_free_space", "secure_boot"}
    assert all(c["status"] == "passed" for c in result["checks"])
    assert result["nvidia"]["available"] is False
    assert any(n.startswith("GPU: none usable") and "none required" in n for n in result["notes"])
    assert all(not t.get("changed") for t in tasks.values())
    assert tasks["Report | Fail once with every problem of this host"].get("skipped") is True


def test_every_problem_is_reported_in_one_failure():
    rc, tasks = preflight({
        "preflight_supported_os": ["Ubuntu 24.04"],
        "preflight_min_kernel_version": "99.0",
        "preflight_min_memory_mb": 10**9,
        "preflight_planned_models": [
            {"name": "huge", "size_gb": 10**6},
            {"name": "unsized"},
            {"name": "already-here", "path": str(REPO_ROOT), "size_gb": 10**9},
        ],
        "preflight_secure_boot": "enabled",
        "preflight_gpu_required": True,
    })
    assert rc == 2
    failed = tasks["Report | Fail once with every problem of this host"]
    assert failed["failed"] is True
    msg = failed["msg"]
    assert msg.startswith("7 preflight check(s) failed on localhost:")
    for words in ("[os]", "preflight_supported_os", "[kernel]", "preflight_min_kernel_version", "[memory]",
                  "preflight_min_memory_mb", "[model_store_free_space]", "[planned_models]", "unsized", "[secure_boot]",
                  "[gpu.nvml]", "preflight_gpu_required=false"):
        assert words in msg, words
    # The model already on the host needs no space: only 'huge' plus the headroom.
    store = next(c for c in result_of(tasks)["failures"] if c["check"] == "model_store_free_space")
    assert store["threshold"] == 10**6 + 5


def test_report_only_and_missing_driver_deferred():
    rc, tasks = preflight({"preflight_enforce": False, "preflight_min_memory_mb": 10**9,
                           "preflight_gpu_required": True, "preflight_gpu_allow_missing_driver": True})
    assert rc == 0
    result = result_of(tasks)
    assert result["passed"] is False
    assert [c["check"] for c in result["failures"]] == ["memory"]
    gpu = next(c for c in result["checks"] if c["check"] == "gpu.nvml")
    assert gpu["status"] == "deferred"
    assert "preflight_gpu_allow_missing_driver" in gpu["msg"]


FAKE = REPO_ROOT / "tests" / "unit" / "plugins" / "module_utils" / "test_gpu_fake_pynvml.py"


@pytest.fixture
def hot_gpu(tmp_path):
    """A pynvml on the module's path answering like an H100 at 85 C (4 C below its 89 C slowdown).

    The only fake here: there is no GPU on this machine. The module, the role
    and Ansible around it are real.
    """
    (tmp_path / "pynvml.py").write_text(
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('llmops_fake_pynvml_impl', %r)\n"
        "impl = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(impl)\n"
        "sys.modules['pynvml'] = impl.make_fake([impl.h100(nvmlDeviceGetTemperature=lambda sensor: 85)])\n" % str(FAKE)
    )
    return tmp_path


def test_gpu_failure_names_its_variable_and_fails_the_host(hot_gpu):
    rc, tasks = preflight({"preflight_gpu_required": True}, pythonpath=hot_gpu)
    assert rc == 2
    result = result_of(tasks)
    assert result["nvidia"]["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert [c["check"] for c in result["failures"]] == ["gpu.temperature_margin[0]"]
    msg = tasks["Report | Fail once with every problem of this host"]["msg"]
    assert "85 C is 4 C below the 89 C slowdown threshold (need >= 10 C)" in msg
    assert "preflight_gpu_min_temperature_margin_c" in msg
    passed = {c["check"] for c in result["checks"] if c["status"] == "passed"}
    assert {"gpu.min_cuda_driver_version", "gpu.min_gpu_count", "gpu.mig_mode[0]", "gpu.foreign_processes[0]"} <= passed


def test_gpu_problems_only_warn_when_no_gpu_is_required(hot_gpu):
    rc, tasks = preflight({"preflight_gpu_required": False}, pythonpath=hot_gpu)
    assert rc == 0
    result = result_of(tasks)
    assert result["failures"] == []
    warning = next(c for c in result["checks"] if c["check"] == "gpu.temperature_margin[0]")
    assert warning["status"] == "warning"
    assert "preflight_gpu_required=false" in warning["msg"]
