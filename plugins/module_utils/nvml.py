# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Read NVIDIA GPU state through NVML (``nvidia-ml-py``) and judge it.

This is the logic behind the ``llmops.inference.gpu_validate`` module. It is
importable and testable without Ansible:

* :func:`import_pynvml` imports the official bindings (``import pynvml``).
* :func:`collect` turns NVML answers into plain facts. A field that NVML does
  not support on a device (``NVMLError_NotSupported``) is ``None`` and named in
  the GPU's ``unsupported_fields``; any other per-field NVML error is ``None``
  and recorded in ``field_errors``. Neither is a failure by itself.
* ``nvml_topology`` adds how the GPUs are joined (NVLink links, the
  ``nvidia-smi topo -m`` matrix, CPU and NUMA affinity, NVSwitch fabric).
* ``nvml_checks.evaluate`` (re-exported here) runs the optional checks against
  the facts and returns one entry per check and GPU, each with measured value,
  threshold and a fix.

Everything here only reads; nothing changes GPU state.
"""

from __future__ import annotations

from ansible_collections.llmops.inference.plugins.module_utils import nvml_topology
from ansible_collections.llmops.inference.plugins.module_utils.nvml_checks import (  # noqa: F401  # pylint: disable=unused-import  # re-exported
    CHECK_OPTIONS,
    DEPRECATED_OPTIONS,
    canonical_thresholds,
    evaluate,
    failures,
    parse_version,
    summary,
    validate_thresholds,
)

# NVML return codes (nvml.h); fixed by the C API, so they are safe to hard-code
# and do not depend on the nvidia-ml-py version installed on the target.
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18

# Codes that mean "this device or driver cannot answer this question".
_UNSUPPORTED_CODES = (NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND)

# nvml.h constants used as call arguments.
_TEMPERATURE_GPU = 0
_THRESHOLD_SHUTDOWN = 0
_THRESHOLD_SLOWDOWN = 1
_MEMORY_ERROR_UNCORRECTED = 1
_VOLATILE_ECC = 0
_AGGREGATE_ECC = 1
_RETIRE_SINGLE_BIT_MULTIPLE = 0
_RETIRE_DOUBLE_BIT = 1
_FEATURE_ENABLED = 1
_VALUE_NOT_AVAILABLE_ULL = (1 << 64) - 1

MIB = 1024 * 1024

ARCHITECTURES = {
    2: "kepler",
    3: "maxwell",
    4: "pascal",
    5: "volta",
    6: "turing",
    7: "ampere",
    8: "ada",
    9: "hopper",
    10: "blackwell",
    13: "rubin",
}

# nvmlClocksEventReason* bits (formerly nvmlClocksThrottleReason*).
THROTTLE_REASONS = (
    (0x0001, "gpu_idle"),
    (0x0002, "applications_clocks_setting"),
    (0x0004, "sw_power_cap"),
    (0x0008, "hw_slowdown"),
    (0x0010, "sync_boost"),
    (0x0020, "sw_thermal_slowdown"),
    (0x0040, "hw_thermal_slowdown"),
    (0x0080, "hw_power_brake_slowdown"),
    (0x0100, "display_clock_setting"),
)

PIP_NAME = "nvidia-ml-py"


class NvmlUnavailable(Exception):
    """NVML cannot be used on this host: library, driver or bindings missing.

    ``code`` names the cause (``pynvml_missing``, ``library_not_found``,
    ``driver_not_loaded``, ``no_permission``, ``version_mismatch``,
    ``nvml_error``); ``hint`` says what to fix.
    """

    def __init__(self, code, message, hint):
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint


def import_pynvml():
    """Return the ``pynvml`` module or raise :class:`NvmlUnavailable`."""
    try:
        import pynvml  # noqa: PLC0415  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise NvmlUnavailable(
            "pynvml_missing",
            "the Python package %s (import name pynvml) is not installed for the target's Python: %s" % (PIP_NAME, exc),
            "install it on the target, e.g. 'python3 -m pip install %s' or the distribution package, "
            "for the interpreter Ansible uses (ansible_python_interpreter)" % PIP_NAME,
        ) from exc
    return pynvml


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _code(exc):
    return getattr(exc, "value", None)


def _init_error(exc):
    code = _code(exc)
    if code == NVML_ERROR_LIBRARY_NOT_FOUND:
        return NvmlUnavailable(
            "library_not_found",
            "the NVIDIA driver library libnvidia-ml.so.1 was not found (%s)" % exc,
            "install the NVIDIA driver (role llmops.inference.nvidia_driver) or make libnvidia-ml.so.1 visible to the dynamic loader",
        )
    if code == NVML_ERROR_DRIVER_NOT_LOADED:
        return NvmlUnavailable(
            "driver_not_loaded",
            "the NVIDIA kernel driver is not loaded (%s)" % exc,
            "load it ('modprobe nvidia'; see 'dmesg' and 'lsmod | grep nvidia'); with Secure Boot enabled, "
            "unsigned NVIDIA modules are refused until they are signed or the MOK is enrolled; reboot after a driver install",
        )
    if code == NVML_ERROR_NO_PERMISSION:
        return NvmlUnavailable(
            "no_permission",
            "NVML refused access (%s)" % exc,
            "run as a user that can open /dev/nvidia* (root, or a member of the device's group)",
        )
    if code == NVML_ERROR_LIB_RM_VERSION_MISMATCH:
        return NvmlUnavailable(
            "version_mismatch",
            "the NVML library and the loaded kernel driver differ in version (%s)" % exc,
            "reboot (or unload and reload the nvidia modules) after the driver upgrade",
        )
    return NvmlUnavailable("nvml_error", "NVML failed to initialise: %s" % exc, "check 'nvidia-smi' and 'dmesg' on the host")


def _is_nvml_error(pynvml, exc):
    base = getattr(pynvml, "NVMLError", None)
    return base is not None and isinstance(exc, base)


class _Reader:
    """Call NVML functions, turning per-field failures into None."""

    def __init__(self, pynvml):
        self.pynvml = pynvml
        self.unsupported = []
        self.errors = {}

    def __call__(self, field, func_names, *args):
        if isinstance(func_names, str):
            func_names = (func_names,)
        func = None
        for name in func_names:
            func = getattr(self.pynvml, name, None)
            if func is not None:
                break
        if func is None:
            # An older nvidia-ml-py without this call: nothing to ask.
            self.unsupported.append(field)
            return None
        try:
            return func(*args)
        except Exception as exc:  # pylint: disable=broad-except
            if not _is_nvml_error(self.pynvml, exc):
                raise
            if _code(exc) in _UNSUPPORTED_CODES:
                self.unsupported.append(field)
            else:
                self.errors[field] = str(exc)
            return None


def _mib(value):
    if value is None:
        return None
    return int(value) // MIB


def _watts(milliwatts):
    if milliwatts is None:
        return None
    return round(milliwatts / 1000.0, 1)


def _enabled(value):
    if value is None:
        return None
    return int(value) == _FEATURE_ENABLED


def format_cuda_version(value):
    """NVML reports CUDA as 1000*major + 10*minor (13000 -> '13.0')."""
    if value is None:
        return None
    value = int(value)
    return "%d.%d" % (value // 1000, (value % 1000) // 10)


def decode_throttle_reasons(mask):
    if mask is None:
        return None
    names = [name for bit, name in THROTTLE_REASONS if mask & bit]
    known = 0
    for bit, _name in THROTTLE_REASONS:
        known |= bit
    if mask & ~known:
        names.append("other_0x%x" % (mask & ~known))
    return names


def read_process_name(pid):
    """Name of a process from /proc, or None (other PID namespace, gone)."""
    try:
        with open("/proc/%d/comm" % int(pid)) as handle:
            return handle.read().strip() or None
    except (OSError, ValueError):
        return None


def _processes(read, handle, process_name):
    procs = read("processes", ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses_v2"), handle)
    if procs is None:
        return None
    result = []
    for proc in procs:
        used = getattr(proc, "usedGpuMemory", None)
        if used == _VALUE_NOT_AVAILABLE_ULL:
            used = None
        pid = int(proc.pid)
        result.append({"pid": pid, "name": process_name(pid), "used_memory_mib": _mib(used)})
    return result


GPU_FIELDS = (
    "index", "name", "uuid", "pci_bus_id", "memory_total_mib", "memory_free_mib", "memory_used_mib", "memory_reserved_mib",
    "compute_capability", "architecture", "persistence_mode", "mig_mode_current", "mig_mode_pending",
    "ecc_mode_current", "ecc_mode_pending", "ecc_errors_uncorrected_volatile", "ecc_errors_uncorrected_aggregate",
    "remapped_rows_correctable", "remapped_rows_uncorrectable", "remapped_rows_pending", "remapped_rows_failed",
    "retired_pages_single_bit", "retired_pages_double_bit", "retired_pages_pending",
    "temperature_c", "temperature_slowdown_c", "temperature_shutdown_c", "fan_speed_percent",
    "power_draw_w", "power_limit_w", "pcie_link_gen_current", "pcie_link_gen_max",
    "pcie_link_width_current", "pcie_link_width_max", "throttle_reasons_mask", "throttle_reasons",
    "numa_node", "nvlink_active_links", "processes",
    "nvlinks", "cpu_affinity", "numa_affinity", "fabric_state", "fabric_status", "fabric_clique_id",
)


def _memory(read, pynvml, handle):
    """Memory info, v2 where the bindings and driver have it.

    v2 reports driver-reserved memory apart, so ``used`` matches nvidia-smi
    (0 MiB on an idle H100, where v1 says 480 MiB used); older drivers or
    bindings fall back to v1 and ``memory_reserved_mib`` is null.
    """
    version = getattr(pynvml, "nvmlMemory_v2", None)
    if version is not None:
        try:
            return pynvml.nvmlDeviceGetMemoryInfo(handle, version)
        except Exception as exc:  # pylint: disable=broad-except
            if not _is_nvml_error(pynvml, exc):
                raise
    return read("memory", "nvmlDeviceGetMemoryInfo", handle)


def _gpu_facts(pynvml, index, process_name):
    read = _Reader(pynvml)
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception as exc:  # pylint: disable=broad-except
        if not _is_nvml_error(pynvml, exc):
            raise
        # A GPU that NVML counts but cannot open (lost, needs reset): every field unknown.
        facts = dict.fromkeys(GPU_FIELDS)
        facts.update({"index": index, "unsupported_fields": [], "field_errors": {"handle": str(exc)}})
        return facts, None

    pci = read("pci_bus_id", "nvmlDeviceGetPciInfo", handle)
    memory = _memory(read, pynvml, handle)
    capability = read("compute_capability", "nvmlDeviceGetCudaComputeCapability", handle)
    arch = read("architecture", "nvmlDeviceGetArchitecture", handle)
    mig = read("mig_mode", "nvmlDeviceGetMigMode", handle)
    ecc = read("ecc_mode", "nvmlDeviceGetEccMode", handle)
    rows = read("remapped_rows", "nvmlDeviceGetRemappedRows", handle)
    reasons = read("throttle_reasons", ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"), handle)
    retired_sbe = read("retired_pages", "nvmlDeviceGetRetiredPages", handle, _RETIRE_SINGLE_BIT_MULTIPLE)
    retired_dbe = None
    if "retired_pages" not in read.unsupported:
        retired_dbe = read("retired_pages", "nvmlDeviceGetRetiredPages", handle, _RETIRE_DOUBLE_BIT)
    retired_pending = None
    if "retired_pages" not in read.unsupported:
        retired_pending = read("retired_pages", "nvmlDeviceGetRetiredPagesPendingStatus", handle)

    facts = {
        "index": index,
        "name": _text(read("name", "nvmlDeviceGetName", handle)),
        "uuid": _text(read("uuid", "nvmlDeviceGetUUID", handle)),
        "pci_bus_id": _text(pci.busId) if pci is not None else None,
        "memory_total_mib": _mib(memory.total) if memory is not None else None,
        "memory_free_mib": _mib(memory.free) if memory is not None else None,
        "memory_used_mib": _mib(memory.used) if memory is not None else None,
        "memory_reserved_mib": _mib(getattr(memory, "reserved", None)),
        "compute_capability": "%d.%d" % tuple(capability) if capability is not None else None,
        "architecture": ARCHITECTURES.get(arch, "unknown_%s" % arch) if arch is not None else None,
        "persistence_mode": _enabled(read("persistence_mode", "nvmlDeviceGetPersistenceMode", handle)),
        "mig_mode_current": _enabled(mig[0]) if mig is not None else None,
        "mig_mode_pending": _enabled(mig[1]) if mig is not None else None,
        "ecc_mode_current": _enabled(ecc[0]) if ecc is not None else None,
        "ecc_mode_pending": _enabled(ecc[1]) if ecc is not None else None,
        "ecc_errors_uncorrected_volatile": read(
            "ecc_errors_uncorrected_volatile", "nvmlDeviceGetTotalEccErrors", handle, _MEMORY_ERROR_UNCORRECTED, _VOLATILE_ECC
        ),
        "ecc_errors_uncorrected_aggregate": read(
            "ecc_errors_uncorrected_aggregate", "nvmlDeviceGetTotalEccErrors", handle, _MEMORY_ERROR_UNCORRECTED, _AGGREGATE_ECC
        ),
        "remapped_rows_correctable": int(rows[0]) if rows is not None else None,
        "remapped_rows_uncorrectable": int(rows[1]) if rows is not None else None,
        "remapped_rows_pending": bool(rows[2]) if rows is not None else None,
        "remapped_rows_failed": bool(rows[3]) if rows is not None else None,
        "retired_pages_single_bit": len(retired_sbe) if retired_sbe is not None else None,
        "retired_pages_double_bit": len(retired_dbe) if retired_dbe is not None else None,
        "retired_pages_pending": _enabled(retired_pending),
        "temperature_c": read("temperature_c", "nvmlDeviceGetTemperature", handle, _TEMPERATURE_GPU),
        "temperature_slowdown_c": read("temperature_slowdown_c", "nvmlDeviceGetTemperatureThreshold", handle, _THRESHOLD_SLOWDOWN),
        "temperature_shutdown_c": read("temperature_shutdown_c", "nvmlDeviceGetTemperatureThreshold", handle, _THRESHOLD_SHUTDOWN),
        "fan_speed_percent": read("fan_speed_percent", "nvmlDeviceGetFanSpeed", handle),
        "power_draw_w": _watts(read("power_draw_w", "nvmlDeviceGetPowerUsage", handle)),
        "power_limit_w": _watts(read("power_limit_w", "nvmlDeviceGetEnforcedPowerLimit", handle)),
        "pcie_link_gen_current": read("pcie_link_gen_current", "nvmlDeviceGetCurrPcieLinkGeneration", handle),
        "pcie_link_gen_max": read("pcie_link_gen_max", ("nvmlDeviceGetGpuMaxPcieLinkGeneration", "nvmlDeviceGetMaxPcieLinkGeneration"), handle),
        "pcie_link_width_current": read("pcie_link_width_current", "nvmlDeviceGetCurrPcieLinkWidth", handle),
        "pcie_link_width_max": read("pcie_link_width_max", "nvmlDeviceGetMaxPcieLinkWidth", handle),
        "throttle_reasons_mask": reasons,
        "throttle_reasons": decode_throttle_reasons(reasons),
        "numa_node": read("numa_node", "nvmlDeviceGetNumaNodeId", handle),
        "processes": _processes(read, handle, process_name),
    }
    facts.update(_link_facts(read, pynvml, handle))
    facts["unsupported_fields"] = sorted(set(read.unsupported))
    facts["field_errors"] = dict(read.errors)
    return facts, handle


def _link_facts(read, pynvml, handle):
    """NVLink links, CPU/NUMA affinity and fabric state (nvml_topology)."""
    links = nvml_topology.gpu_links(read, pynvml, handle)
    if links is None:
        read.unsupported.append("nvlink_active_links")
    result = {
        "nvlinks": links,
        "nvlink_active_links": None if links is None else len([link for link in links if link["state"] == "up"]),
    }
    result.update(nvml_topology.gpu_affinity(read, pynvml, handle))
    return result


def unavailable_facts(error):
    """Facts for a host where NVML cannot answer."""
    return {
        "available": False,
        "reason": error.code,
        "message": error.message,
        "hint": error.hint,
        "driver_version": None,
        "cuda_driver_version": None,
        "nvml_version": None,
        "gpu_count": 0,
        "gpus": [],
        "topology": None,
    }


def collect(pynvml, process_name=None, fabric_manager=None):
    """Initialise NVML, read every GPU and how they are joined, shut NVML down; return facts.

    ``process_name(pid)`` names GPU processes (default: /proc/PID/comm);
    ``fabric_manager()`` says whether nv-fabricmanager runs (default: /proc).
    Raises :class:`NvmlUnavailable` when NVML cannot be initialised.
    """
    process_name = process_name or read_process_name
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # pylint: disable=broad-except
        if not _is_nvml_error(pynvml, exc):
            raise
        raise _init_error(exc) from exc
    try:
        read = _Reader(pynvml)
        try:
            count = pynvml.nvmlDeviceGetCount()
        except Exception as exc:  # pylint: disable=broad-except
            if not _is_nvml_error(pynvml, exc):
                raise
            raise _init_error(exc) from exc
        facts = {
            "available": True,
            "reason": None,
            "message": None,
            "hint": None,
            "driver_version": _text(read("driver_version", "nvmlSystemGetDriverVersion")),
            "cuda_driver_version": format_cuda_version(
                read("cuda_driver_version", ("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"))
            ),
            "nvml_version": _text(read("nvml_version", "nvmlSystemGetNVMLVersion")),
            "gpu_count": int(count),
        }
        read_gpus = [_gpu_facts(pynvml, index, process_name) for index in range(int(count))]
        facts["gpus"] = [gpu for gpu, _handle in read_gpus]
        facts["topology"] = nvml_topology.host_topology(
            pynvml, [handle for _gpu, handle in read_gpus], facts["gpus"], fabric_manager=fabric_manager)
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # pylint: disable=broad-except
            pass
    return facts
