"""Unit tests for plugins/module_utils/nvml.py against a fake pynvml."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

from ansible_collections.llmops.inference.plugins.module_utils import nvml


def _load_fake():
    path = pathlib.Path(__file__).resolve().parent / "test_gpu_fake_pynvml.py"
    spec = importlib.util.spec_from_file_location("llmops_gpu_fake_pynvml", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fake = _load_fake()
# What the real H100 answered NotSupported for (fabric and NUMA affinity: assumed alike).
H100_UNSUPPORTED = ["fabric", "fan_speed_percent", "numa_affinity", "numa_node", "nvlink_active_links", "nvlinks", "retired_pages"]
MIB = fake.MIB
CODES = {name: code for name, (code, _text) in fake.ERROR_CODES.items()}


def collect(gpus=(), process_name=lambda pid: "python3", **kwargs):
    return nvml.collect(fake.make_fake(gpus, **kwargs), process_name=process_name)


def by_check(results, name, gpu=None):
    found = [r for r in results if r["check"] == name and (gpu is None or r["gpu"] == gpu)]
    assert found, "no %s result in %r" % (name, results)
    return found[0] if len(found) == 1 else found


# ------------------------------------------------------------------ import


def test_import_pynvml_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    with pytest.raises(nvml.NvmlUnavailable) as info:
        nvml.import_pynvml()
    assert info.value.code == "pynvml_missing"
    assert "nvidia-ml-py" in info.value.message
    assert "pip install nvidia-ml-py" in info.value.hint


def test_import_pynvml_returns_injected_module(monkeypatch):
    module = fake.make_fake([])
    monkeypatch.setitem(sys.modules, "pynvml", module)
    assert nvml.import_pynvml() is module


# ------------------------------------------------------------------ init failures


@pytest.mark.parametrize(
    ("code_name", "reason", "words"),
    [
        ("LIBRARY_NOT_FOUND", "library_not_found", "libnvidia-ml.so.1"),
        ("DRIVER_NOT_LOADED", "driver_not_loaded", "Secure Boot"),
        ("NO_PERMISSION", "no_permission", "/dev/nvidia"),
        ("LIB_RM_VERSION_MISMATCH", "version_mismatch", "reboot"),
        ("UNKNOWN", "nvml_error", "nvidia-smi"),
    ],
)
def test_init_errors_become_unavailable_with_a_fix(code_name, reason, words):
    with pytest.raises(nvml.NvmlUnavailable) as info:
        collect([fake.h100()], init_error=CODES[code_name])
    assert info.value.code == reason
    assert words in info.value.message + info.value.hint
    facts = nvml.unavailable_facts(info.value)
    assert facts["available"] is False
    assert facts["reason"] == reason
    assert facts["gpus"] == []
    assert facts["gpu_count"] == 0


def test_count_error_after_init_is_unavailable_and_still_shuts_down():
    module = fake.make_fake([fake.h100()], count_error=CODES["DRIVER_NOT_LOADED"])
    with pytest.raises(nvml.NvmlUnavailable) as info:
        nvml.collect(module)
    assert info.value.code == "driver_not_loaded"
    assert module.shutdowns == 1


def test_non_nvml_exception_is_not_swallowed():
    module = fake.make_fake([fake.h100()])

    def broken():
        raise RuntimeError("bug in the bindings")

    module.nvmlInit = broken
    with pytest.raises(RuntimeError):
        nvml.collect(module)


# ------------------------------------------------------------------ facts


def test_h100_facts_and_unsupported_fields_are_null():
    module = fake.make_fake([fake.h100()])
    facts = nvml.collect(module, process_name=lambda pid: None)
    assert module.shutdowns == 1
    assert facts["available"] is True
    assert facts["driver_version"] == "580.159.04"
    assert facts["cuda_driver_version"] == "13.0"
    assert facts["nvml_version"] == "13.580.159.04"
    assert facts["gpu_count"] == 1
    gpu = facts["gpus"][0]
    assert gpu["index"] == 0
    assert gpu["name"] == "NVIDIA H100 80GB HBM3"
    assert gpu["uuid"] == "GPU-f26a2ca7-3438-7f15-022e-94b45eea00db"
    assert gpu["pci_bus_id"] == "00000000:00:06.0"  # bytes from NVML, str in facts
    # v2 memory info, as nvidia-smi shows it: driver-reserved memory apart from used.
    assert (gpu["memory_total_mib"], gpu["memory_used_mib"], gpu["memory_free_mib"], gpu["memory_reserved_mib"]) == (81559, 0, 81079, 480)
    assert gpu["compute_capability"] == "9.0"
    assert gpu["architecture"] == "hopper"
    assert gpu["persistence_mode"] is True
    assert (gpu["mig_mode_current"], gpu["mig_mode_pending"]) == (False, False)
    assert (gpu["ecc_mode_current"], gpu["ecc_mode_pending"]) == (True, True)
    assert gpu["ecc_errors_uncorrected_volatile"] == 0
    assert gpu["ecc_errors_uncorrected_aggregate"] == 0
    assert gpu["remapped_rows_pending"] is False
    assert gpu["remapped_rows_failed"] is False
    assert gpu["remapped_rows_correctable"] == 0
    assert (gpu["temperature_c"], gpu["temperature_slowdown_c"], gpu["temperature_shutdown_c"]) == (48, 89, 95)
    assert gpu["power_draw_w"] == 79.7
    assert gpu["power_limit_w"] == 700.0
    assert (gpu["pcie_link_gen_current"], gpu["pcie_link_gen_max"]) == (5, 5)
    assert (gpu["pcie_link_width_current"], gpu["pcie_link_width_max"]) == (16, 16)
    assert gpu["throttle_reasons_mask"] == 1
    assert gpu["throttle_reasons"] == ["gpu_idle"]
    assert gpu["processes"] == []
    # What the real H100 answered NotSupported for: null, listed, no error.
    for field in ("fan_speed_percent", "numa_node", "nvlink_active_links", "retired_pages_single_bit",
                  "retired_pages_double_bit", "retired_pages_pending"):
        assert gpu[field] is None, field
    assert gpu["unsupported_fields"] == H100_UNSUPPORTED
    assert gpu["field_errors"] == {}
    assert set(gpu) == set(nvml.GPU_FIELDS) | {"unsupported_fields", "field_errors"}


def test_nvml_call_arguments():
    module = fake.make_fake([fake.h100()])
    nvml.collect(module)
    calls = set(module.calls)
    handle = ("handle", 0)
    assert ("nvmlDeviceGetTotalEccErrors", handle, 1, 0) in calls  # uncorrected, volatile
    assert ("nvmlDeviceGetTotalEccErrors", handle, 1, 1) in calls  # uncorrected, aggregate
    assert ("nvmlDeviceGetTemperatureThreshold", handle, 1) in calls  # slowdown
    assert ("nvmlDeviceGetTemperature", handle, 0) in calls  # GPU sensor
    # Retired pages are asked once and not again after NotSupported.
    assert [c for c in module.calls if c[0].startswith("nvmlDeviceGetRetiredPages")] == [("nvmlDeviceGetRetiredPages", handle, 0)]


def test_memory_falls_back_to_v1_without_v2_support():
    # Old bindings: no nvmlMemory_v2 constant.
    module = fake.make_fake([fake.h100()])
    del module.nvmlMemory_v2
    gpu = nvml.collect(module)["gpus"][0]
    assert (gpu["memory_total_mib"], gpu["memory_used_mib"], gpu["memory_free_mib"], gpu["memory_reserved_mib"]) == (81559, 480, 81079, None)
    # Old driver: the v2 call answers FunctionNotFound.

    def v1_only(version=None):
        if version is not None:
            raise fake.NVMLError(CODES["FUNCTION_NOT_FOUND"])
        return fake.Memory(1000 * MIB, 10 * MIB, 5 * MIB)

    gpu = collect([fake.h100(nvmlDeviceGetMemoryInfo=v1_only)])["gpus"][0]
    assert (gpu["memory_total_mib"], gpu["memory_used_mib"], gpu["memory_reserved_mib"]) == (1000, 15, None)
    assert gpu["unsupported_fields"] == H100_UNSUPPORTED


def test_no_gpus():
    facts = collect([])
    assert facts["available"] is True
    assert facts["gpu_count"] == 0
    assert facts["gpus"] == []


def test_every_field_unsupported_gives_nulls_not_errors():
    gpu = {"values": {}, "raises": {}}  # fake answers NotSupported for anything it has no value for
    facts = collect([gpu])
    got = facts["gpus"][0]
    assert got["field_errors"] == {}
    for field in nvml.GPU_FIELDS:
        if field != "index":
            assert got[field] is None, field
    assert "memory" in got["unsupported_fields"]


def test_other_nvml_error_is_recorded_as_field_error():
    facts = collect([fake.h100(raises={"nvmlDeviceGetPowerUsage": CODES["NO_PERMISSION"]})])
    gpu = facts["gpus"][0]
    assert gpu["power_draw_w"] is None
    assert gpu["field_errors"] == {"power_draw_w": "Insufficient Permissions"}
    assert "power_draw_w" not in gpu["unsupported_fields"]


def test_function_not_found_counts_as_unsupported():
    facts = collect([fake.h100(raises={"nvmlDeviceGetArchitecture": CODES["FUNCTION_NOT_FOUND"]})])
    assert facts["gpus"][0]["architecture"] is None
    assert "architecture" in facts["gpus"][0]["unsupported_fields"]


def test_older_bindings_fall_back_to_throttle_reasons_then_unsupported():
    facts = collect([fake.h100(nvmlDeviceGetCurrentClocksThrottleReasons=0x24)], missing=("nvmlDeviceGetCurrentClocksEventReasons",))
    assert facts["gpus"][0]["throttle_reasons"] == ["sw_power_cap", "sw_thermal_slowdown"]
    facts = collect(
        [fake.h100()],
        missing=("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons", "nvmlSystemGetCudaDriverVersion_v2"),
    )
    assert facts["gpus"][0]["throttle_reasons"] is None
    assert "throttle_reasons" in facts["gpus"][0]["unsupported_fields"]
    assert facts["cuda_driver_version"] == "13.0"  # from nvmlSystemGetCudaDriverVersion


def test_bytes_from_old_bindings_are_decoded():
    facts = collect([fake.h100(nvmlDeviceGetName=b"NVIDIA A100-SXM4-80GB", nvmlDeviceGetUUID=b"GPU-abc")], driver=b"535.183.01")
    assert facts["driver_version"] == "535.183.01"
    assert facts["gpus"][0]["name"] == "NVIDIA A100-SXM4-80GB"
    assert facts["gpus"][0]["uuid"] == "GPU-abc"


def test_lost_gpu_handle_gives_empty_entry_and_other_gpus_still_read():
    facts = collect([fake.h100(), fake.h100()], handle_errors={0: CODES["GPU_IS_LOST"]})
    lost, good = facts["gpus"]
    assert lost["field_errors"] == {"handle": "GPU is lost"}
    assert lost["name"] is None
    assert good["name"] == "NVIDIA H100 80GB HBM3"
    result = by_check(nvml.evaluate(facts, {}), "gpu_accessible")
    assert result["status"] == "failed"
    assert result["gpu"] == 0
    assert "GPU is lost" in result["msg"]


def test_processes_with_names_and_unknown_memory():
    procs = [fake.Process(4242, 1024 * MIB), fake.Process(77, None), fake.Process(78, (1 << 64) - 1)]
    names = {4242: "python3", 77: None, 78: "Xorg"}
    facts = nvml.collect(fake.make_fake([fake.h100(nvmlDeviceGetComputeRunningProcesses=procs)]), process_name=names.get)
    assert facts["gpus"][0]["processes"] == [
        {"pid": 4242, "name": "python3", "used_memory_mib": 1024},
        {"pid": 77, "name": None, "used_memory_mib": None},
        {"pid": 78, "name": "Xorg", "used_memory_mib": None},
    ]


def test_read_process_name_from_proc(tmp_path):
    import os  # noqa: PLC0415

    assert nvml.read_process_name(os.getpid())  # this test's own python
    assert nvml.read_process_name(2**22 + 12345) is None  # above pid_max: no such process


def test_nvlink_counts_active_links_until_invalid_argument():
    states = {0: 1, 1: 1, 2: 0, 3: 1}

    def link_state(link):
        if link not in states:
            raise fake.NVMLError(CODES["INVALID_ARGUMENT"])
        return states[link]

    facts = collect([fake.h100(nvmlDeviceGetNvLinkState=link_state)])
    assert facts["gpus"][0]["nvlink_active_links"] == 3
    assert "nvlink_active_links" not in facts["gpus"][0]["unsupported_fields"]


def test_arch_and_cuda_formatting():
    assert nvml.format_cuda_version(12040) == "12.4"
    assert nvml.format_cuda_version(13000) == "13.0"
    assert nvml.format_cuda_version(None) is None
    facts = collect([fake.h100(nvmlDeviceGetArchitecture=42)])
    assert facts["gpus"][0]["architecture"] == "unknown_42"


def test_decode_throttle_reasons():
    assert nvml.decode_throttle_reasons(0) == []
    assert nvml.decode_throttle_reasons(0x48) == ["hw_slowdown", "hw_thermal_slowdown"]
    assert nvml.decode_throttle_reasons(0x1000 | 0x4) == ["sw_power_cap", "other_0x1000"]
    assert nvml.decode_throttle_reasons(None) is None


# ------------------------------------------------------------------ thresholds


@pytest.mark.parametrize(
    ("thresholds", "words"),
    [
        ({"min_driver_version": "latest"}, "min_driver_version"),
        ({"min_cuda_driver_version": "12.x"}, "min_cuda_driver_version"),
        ({"min_compute_capability": "sm_90"}, "min_compute_capability"),
        ({"gpu_count": -1}, "expected_gpu_count"),
        ({"expected_gpu_count": -1}, "expected_gpu_count"),
        ({"min_nvlinks_per_gpu_pair": -1}, "min_nvlinks_per_gpu_pair"),
        ({"min_gpu_connection": "NVLINK"}, "min_gpu_connection"),
        ({"min_memory_mib": -5}, "min_memory_mib"),
        ({"mig_mode": "on"}, "mig_mode"),
    ],
)
def test_validate_thresholds_rejects_bad_values(thresholds, words):
    with pytest.raises(ValueError, match=words):
        nvml.validate_thresholds(thresholds)


def test_validate_thresholds_accepts_good_values():
    nvml.validate_thresholds({"min_driver_version": "550.54.14", "min_cuda_driver_version": "12.4", "min_compute_capability": "8.0",
                              "gpu_count": 0, "mig_mode": "disabled"})


def test_driver_versions_compare_numerically_not_as_text():
    facts = collect([fake.h100()], driver="580.105.08")
    assert by_check(nvml.evaluate(facts, {"min_driver_version": "580.95.05"}), "min_driver_version")["status"] == "passed"
    assert by_check(nvml.evaluate(facts, {"min_driver_version": "580.105.08"}), "min_driver_version")["status"] == "passed"
    assert by_check(nvml.evaluate(facts, {"min_driver_version": "580.105.9"}), "min_driver_version")["status"] == "failed"
    assert by_check(nvml.evaluate(facts, {"min_driver_version": "580"}), "min_driver_version")["status"] == "passed"
    assert by_check(nvml.evaluate(facts, {"min_driver_version": "581"}), "min_driver_version")["status"] == "failed"


def test_unparsable_measured_driver_version_fails_the_check():
    facts = collect([fake.h100()], driver="beta")
    result = by_check(nvml.evaluate(facts, {"min_driver_version": "550"}), "min_driver_version")
    assert result["status"] == "failed"
    assert "cannot compare" in result["msg"]


H100_PASSING = {
    "min_driver_version": "550.54.14",
    "min_cuda_driver_version": "12.4",
    "expected_gpu_count": 1,
    "min_gpu_count": 1,
    "min_memory_mib": 81559,
    "min_compute_capability": "9.0",
    "require_persistence_mode": True,
    "mig_mode": "disabled",
    "fail_on_uncorrected_ecc_errors": True,
    "fail_on_pending_row_remap": True,
    "min_temperature_margin_c": 41,
    "fail_on_foreign_processes": True,
    "allowed_process_names": ["python3"],
}


def test_all_checks_pass_on_healthy_h100():
    procs = [fake.Process(4242, 1024 * MIB)]
    facts = collect([fake.h100(nvmlDeviceGetComputeRunningProcesses=procs)], process_name=lambda pid: "python3")
    results = nvml.evaluate(facts, H100_PASSING)
    assert nvml.failures(results) == []
    assert {r["check"] for r in results} == {
        "min_driver_version", "min_cuda_driver_version", "expected_gpu_count", "min_gpu_count", "min_memory_mib",
        "min_compute_capability", "require_persistence_mode", "mig_mode", "uncorrected_ecc_errors",
        "pending_row_remap", "row_remap_failure", "temperature_margin", "foreign_processes",
    }
    assert all(r["status"] == "passed" for r in results)
    assert nvml.summary(results) == "all 13 GPU checks passed"


def test_no_thresholds_runs_no_checks():
    assert nvml.evaluate(collect([fake.h100()]), {}) == []


# One GPU change and one threshold that it breaks, with the measured value expected.
FAILING_CASES = [
    ("min_driver_version", {}, {"driver": "535.104.05"}, {"min_driver_version": "550"}, "535.104.05", "older than the required 550"),
    ("min_cuda_driver_version", {}, {"cuda": 12020}, {"min_cuda_driver_version": "12.4"}, "12.2", "supports CUDA up to 12.2"),
    ("expected_gpu_count", {}, {}, {"expected_gpu_count": 2}, 1, "expected exactly 2"),
    ("min_gpu_count", {}, {}, {"min_gpu_count": 8}, 1, "at least 8"),
    ("min_memory_mib", {}, {}, {"min_memory_mib": 81920}, 81559, "81559 MiB total memory is less than the 81920 MiB"),
    ("min_compute_capability", {"nvmlDeviceGetCudaComputeCapability": (8, 6)}, {}, {"min_compute_capability": "8.9"}, "8.6", "below the required 8.9"),
    ("require_persistence_mode", {"nvmlDeviceGetPersistenceMode": 0}, {}, {"require_persistence_mode": True}, False, "nvidia-smi -pm 1"),
    ("mig_mode", {"nvmlDeviceGetMigMode": [1, 1]}, {}, {"mig_mode": "disabled"}, True, "-mig 0"),
    ("mig_mode", {}, {}, {"mig_mode": "enabled"}, False, "-mig 1"),
    ("uncorrected_ecc_errors", {"nvmlDeviceGetTotalEccErrors": lambda t, c: 3 if c == 0 else 9}, {},
     {"fail_on_uncorrected_ecc_errors": True}, 3, "3 volatile uncorrected ECC errors"),
    ("pending_row_remap", {"nvmlDeviceGetRemappedRows": (0, 1, 1, 0)}, {}, {"fail_on_pending_row_remap": True}, True, "nvidia-smi -r"),
    ("row_remap_failure", {"nvmlDeviceGetRemappedRows": (0, 1, 0, 1)}, {}, {"fail_on_pending_row_remap": True}, True, "needs servicing"),
    ("temperature_margin", {"nvmlDeviceGetTemperature": lambda s: 80}, {}, {"min_temperature_margin_c": 10}, 9, "80 C is 9 C below the 89 C"),
]


@pytest.mark.parametrize("case", FAILING_CASES, ids=[c[0] + "-" + str(i) for i, c in enumerate(FAILING_CASES)])
def test_each_check_fails_with_measured_value_threshold_and_fix(case):
    check, gpu_values, host, thresholds, measured, words = case
    facts = collect([fake.h100(**gpu_values)], **host)
    results = nvml.evaluate(facts, thresholds)
    failed = nvml.failures(results)
    assert [f["check"] for f in failed] == [check]
    assert failed[0]["measured"] == measured
    # On/off options are reported with the state they demand.
    demanded = {"uncorrected_ecc_errors": 0, "pending_row_remap": False, "row_remap_failure": False}
    assert failed[0]["threshold"] == demanded.get(check, next(iter(thresholds.values())))
    assert words in failed[0]["msg"]
    assert words in nvml.summary(results)
    # The healthy GPU passes the same threshold (except count/version cases, which are host-wide).
    healthy = nvml.evaluate(collect([fake.h100()]), thresholds)
    if check not in ("expected_gpu_count", "min_gpu_count", "min_memory_mib", "mig_mode") or thresholds.get("mig_mode") == "disabled":
        assert nvml.failures(healthy) == [], healthy


def test_foreign_processes_fail_with_pid_name_and_memory():
    procs = [fake.Process(4242, 1024 * MIB), fake.Process(5150, 2048 * MIB), fake.Process(6000, 10 * MIB)]
    names = {4242: "python3", 5150: "ollama", 6000: None}
    facts = nvml.collect(fake.make_fake([fake.h100(nvmlDeviceGetComputeRunningProcesses=procs)]), process_name=names.get)
    result = by_check(nvml.evaluate(facts, {"fail_on_foreign_processes": True, "allowed_process_names": ["python3"]}), "foreign_processes")
    assert result["status"] == "failed"
    assert [p["pid"] for p in result["measured"]] == [5150, 6000]
    assert "pid 5150 (ollama, 2048 MiB)" in result["msg"]
    assert "pid 6000 (name unknown, 10 MiB)" in result["msg"]
    assert "allowed_process_names" in result["msg"]
    # Without an allow list every process is foreign.
    result = by_check(nvml.evaluate(facts, {"fail_on_foreign_processes": True}), "foreign_processes")
    assert len(result["measured"]) == 3


def test_all_failures_of_a_host_are_reported_at_once():
    gpus = [fake.h100(), fake.h100(nvmlDeviceGetPersistenceMode=0, nvmlDeviceGetTemperature=lambda s: 85)]
    facts = collect(gpus, driver="535.104.05")
    results = nvml.evaluate(facts, H100_PASSING | {"expected_gpu_count": 2, "min_gpu_count": 2, "min_temperature_margin_c": 5})
    failed = [(f["check"], f["gpu"]) for f in nvml.failures(results)]
    assert failed == [("min_driver_version", None), ("require_persistence_mode", 1), ("temperature_margin", 1)]
    text = nvml.summary(results)
    assert text.startswith("3 GPU check(s) failed:")
    assert "GPU 1 (NVIDIA H100 80GB HBM3, 00000000:00:06.0): persistence mode is disabled" in text
    assert "(measured: 4, threshold: 5)" in text


def test_unsupported_measurement_skips_check_without_failing():
    gpu = fake.h100(raises={"nvmlDeviceGetTemperatureThreshold": CODES["NOT_SUPPORTED"],
                            "nvmlDeviceGetPersistenceMode": CODES["NOT_SUPPORTED"],
                            "nvmlDeviceGetComputeRunningProcesses": CODES["NOT_SUPPORTED"]})
    facts = collect([gpu])
    results = nvml.evaluate(facts, {"min_temperature_margin_c": 10, "require_persistence_mode": True, "fail_on_foreign_processes": True})
    assert nvml.failures(results) == []
    assert [r["status"] for r in results] == ["not_supported"] * 3
    assert "temperature_slowdown_c" in by_check(results, "temperature_margin")["msg"]


def test_unreadable_measurement_from_nvml_error_fails_check():
    gpu = fake.h100(raises={"nvmlDeviceGetMemoryInfo": CODES["UNKNOWN"], "nvmlDeviceGetMigMode": CODES["NO_PERMISSION"]})
    facts = collect([gpu])
    results = nvml.evaluate(facts, {"min_memory_mib": 1000, "mig_mode": "disabled"})
    memory = by_check(results, "min_memory_mib")
    assert memory["status"] == "failed"
    assert "could not read memory_total_mib: Unknown Error" in memory["msg"]
    assert by_check(results, "mig_mode")["status"] == "failed"


def test_unavailable_nvml_fails_only_when_gpu_required():
    error = nvml.NvmlUnavailable("driver_not_loaded", "the NVIDIA kernel driver is not loaded", "modprobe nvidia")
    facts = nvml.unavailable_facts(error)
    results = nvml.evaluate(facts, {"min_driver_version": "550"}, gpu_required=True)
    assert [(r["check"], r["status"], r["measured"]) for r in results] == [("nvml", "failed", "driver_not_loaded")]
    assert "fix: modprobe nvidia" in results[0]["msg"]
    assert nvml.evaluate(facts, {"min_driver_version": "550"}, gpu_required=False) == []


def test_zero_gpus_fails_only_when_gpu_required():
    facts = collect([])
    assert by_check(nvml.evaluate(facts, {}, gpu_required=True), "gpu_present")["status"] == "failed"
    assert nvml.evaluate(facts, {}, gpu_required=False) == []
    result = by_check(nvml.evaluate(facts, {"min_gpu_count": 1}, gpu_required=False), "min_gpu_count")
    assert result["status"] == "failed"


def test_deprecated_gpu_count_threshold_is_expected_gpu_count():
    facts = collect([fake.h100()])
    result = by_check(nvml.evaluate(facts, {"gpu_count": 2}), "expected_gpu_count")
    assert (result["status"], result["measured"], result["threshold"]) == ("failed", 1, 2)
    # The new name wins when both are given.
    assert by_check(nvml.evaluate(facts, {"gpu_count": 2, "expected_gpu_count": 1}), "expected_gpu_count")["status"] == "passed"
    assert nvml.DEPRECATED_OPTIONS == {"gpu_count": "expected_gpu_count"}
