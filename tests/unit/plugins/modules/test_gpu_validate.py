"""Unit tests for the gpu_validate module: the whole module run, with a fake pynvml."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest
import yaml

from ansible_collections.llmops.inference.plugins.module_utils import nvml
from ansible_collections.llmops.inference.plugins.modules import gpu_validate

from module_runner import run_module


def _load_fake():
    path = pathlib.Path(__file__).resolve().parents[1] / "module_utils" / "test_gpu_fake_pynvml.py"
    spec = importlib.util.spec_from_file_location("llmops_gpu_fake_pynvml_modules", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fake = _load_fake()


def run(args, capsys):
    return run_module(gpu_validate.main, args, capsys)


@pytest.fixture
def h100_host(monkeypatch):
    module = fake.make_fake([fake.h100(nvmlDeviceGetComputeRunningProcesses=[fake.Process(4242, 512 * fake.MIB)])])
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.setattr(nvml, "read_process_name", lambda pid: "python3")
    return module


def test_healthy_host_passes_and_returns_facts(h100_host, capsys):
    result = run({"min_driver_version": "550", "min_memory_mib": 80000, "min_compute_capability": "8.0",
                  "fail_on_foreign_processes": True, "allowed_process_names": ["python3"]}, capsys)
    assert not result.get("failed")
    assert result["changed"] is False
    facts = result["ansible_facts"]["nvidia"]
    assert facts["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert facts["gpus"][0]["processes"] == [{"pid": 4242, "name": "python3", "used_memory_mib": 512}]
    assert [c["status"] for c in result["checks"]] == ["passed"] * 4
    assert result["failures"] == []
    assert result["msg"] == "all 4 GPU checks passed"
    assert h100_host.shutdowns == 1


def test_failures_are_listed_together_and_fail_once(h100_host, capsys):
    result = run({"min_driver_version": "590", "min_memory_mib": 200000, "mig_mode": "enabled",
                  "fail_on_foreign_processes": True}, capsys)
    assert result["failed"] is True
    assert [f["check"] for f in result["failures"]] == ["min_driver_version", "min_memory_mib", "mig_mode", "foreign_processes"]
    assert result["msg"].startswith("4 GPU check(s) failed:")
    assert "81559 MiB total memory is less than the 200000 MiB required (measured: 81559, threshold: 200000)" in result["msg"]
    assert "NVIDIA driver 580.159.04 is older than the required 590" in result["msg"]
    # Facts come back with the failure, for the report.
    assert result["ansible_facts"]["nvidia"]["driver_version"] == "580.159.04"


def test_enforce_false_reports_without_failing(h100_host, capsys):
    result = run({"min_driver_version": "590", "enforce": False}, capsys)
    assert not result.get("failed")
    assert [f["check"] for f in result["failures"]] == ["min_driver_version"]
    assert "older than the required 590" in result["msg"]


def test_check_mode_still_reads_the_gpu(h100_host, capsys):
    result = run({"_ansible_check_mode": True, "min_memory_mib": 200000}, capsys)
    assert result["failed"] is True
    assert result["failures"][0]["measured"] == 81559
    assert ("nvmlInit",) in h100_host.calls


def test_missing_pynvml_fails_with_install_hint(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    result = run({}, capsys)
    assert result["failed"] is True
    assert "Failed to import the required Python library (nvidia-ml-py)" in result["msg"]
    assert "pip install nvidia-ml-py" in result["msg"]
    assert result["ansible_facts"]["nvidia"]["available"] is False
    assert result["ansible_facts"]["nvidia"]["reason"] == "pynvml_missing"


def test_missing_pynvml_is_fine_when_no_gpu_is_required(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    result = run({"gpu_required": False, "min_driver_version": "550"}, capsys)
    assert not result.get("failed")
    assert result["checks"] == []
    assert result["msg"].startswith("no usable NVIDIA GPU (pynvml_missing), and none is required")


@pytest.mark.parametrize(("code", "words"), [("LIBRARY_NOT_FOUND", "libnvidia-ml.so.1"), ("DRIVER_NOT_LOADED", "modprobe nvidia")])
def test_driver_problems_fail_with_their_fix(monkeypatch, capsys, code, words):
    monkeypatch.setitem(sys.modules, "pynvml", fake.make_fake([fake.h100()], init_error=fake.ERROR_CODES[code][0]))
    result = run({}, capsys)
    assert result["failed"] is True
    assert words in result["msg"]
    assert [f["check"] for f in result["failures"]] == ["nvml"]


def test_no_gpu_host_fails_when_required_and_passes_when_not(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pynvml", fake.make_fake([]))
    assert run({}, capsys)["failures"][0]["check"] == "gpu_present"
    result = run({"gpu_required": False}, capsys)
    assert not result.get("failed")
    assert result["ansible_facts"]["nvidia"]["gpu_count"] == 0


def test_invalid_threshold_fails_before_reading(h100_host, capsys):
    result = run({"min_compute_capability": "sm_90"}, capsys)
    assert result["failed"] is True
    assert result["msg"].startswith("invalid threshold: min_compute_capability must be a dotted version")
    assert h100_host.calls == []


def _argument_spec(monkeypatch):
    """The argument_spec main() hands to AnsibleModule."""
    seen = {}

    class Stop(Exception):
        pass

    def capture(argument_spec, **_kwargs):
        seen.update(argument_spec)
        raise Stop

    monkeypatch.setattr(gpu_validate, "AnsibleModule", capture)
    with pytest.raises(Stop):
        gpu_validate.main()
    return seen


def test_documentation_matches_argument_spec(monkeypatch):
    """What validate-modules checks: every option documented with the same type, default, choices, aliases."""
    options = yaml.safe_load(gpu_validate.DOCUMENTATION)["options"]
    argument_spec = _argument_spec(monkeypatch)
    assert set(options) == set(argument_spec)
    for name, spec in argument_spec.items():
        doc = options[name]
        assert doc["type"] == spec["type"], name
        assert doc.get("default") == spec.get("default"), name
        assert doc.get("choices") == spec.get("choices"), name
        assert doc.get("elements") == spec.get("elements"), name
        assert doc.get("aliases") == spec.get("aliases"), name
    assert set(nvml.CHECK_OPTIONS) <= set(argument_spec)
    yaml.safe_load(gpu_validate.EXAMPLES)
    yaml.safe_load(gpu_validate.RETURN)


def test_deprecated_gpu_count_alias_still_works(h100_host, capsys, monkeypatch):
    result = run({"gpu_count": 2, "enforce": False}, capsys)
    assert [f["check"] for f in result["failures"]] == ["expected_gpu_count"]
    assert "expected exactly 2" in result["msg"]
    # Declared deprecated, so Ansible warns where the old name is used (how it reports that varies by ansible-core).
    spec = _argument_spec(monkeypatch)["expected_gpu_count"]
    assert spec["deprecated_aliases"] == [{"name": "gpu_count", "version": "2.0.0", "collection_name": "llmops.inference"}]


def test_return_documents_every_key(h100_host, capsys):
    """Every key the module returns, and every fact key, is named in RETURN."""
    result = run({"min_memory_mib": 1, "require_all_nvlinks_up": True}, capsys)
    returned = yaml.safe_load(gpu_validate.RETURN)
    for key in ("checks", "failures", "msg", "ansible_facts"):
        assert key in returned and key in result
    assert set(returned["checks"]["contains"]) == set(result["checks"][0])
    nvidia_doc = " ".join(returned["ansible_facts"]["contains"]["nvidia"]["description"])
    facts = result["ansible_facts"]["nvidia"]
    for key in list(facts) + list(facts["gpus"][0]) + list(facts["topology"]):
        assert "C(%s)" % key in nvidia_doc, key
    assert set(returned["ansible_facts"]["contains"]["nvidia"]["sample"]) == set(facts)
    assert set(returned["ansible_facts"]["contains"]["nvidia"]["sample"]["gpus"][0]) == set(facts["gpus"][0])
