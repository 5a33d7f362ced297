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
* :func:`evaluate` runs the optional checks against the facts and returns one
  entry per check and GPU, each with measured value, threshold and a fix.

Everything here only reads; nothing changes GPU state.
"""

from __future__ import annotations

import re

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
_NVLINK_MAX_LINKS = 18  # NVLink 4 (Hopper) has 18 links; later links answer InvalidArgument
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


def _nvlink_active(read, pynvml, handle):
    """Number of active NVLinks, None when the device has no NVLink."""
    first = read("nvlink_active_links", "nvmlDeviceGetNvLinkState", handle, 0)
    if first is None:
        return None
    active = 1 if first else 0
    for link in range(1, _NVLINK_MAX_LINKS):
        try:
            state = pynvml.nvmlDeviceGetNvLinkState(handle, link)
        except Exception as exc:  # pylint: disable=broad-except
            if not _is_nvml_error(pynvml, exc):
                raise
            break
        if state:
            active += 1
    return active


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
        return facts

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
        "nvlink_active_links": _nvlink_active(read, pynvml, handle),
        "processes": _processes(read, handle, process_name),
    }
    facts["unsupported_fields"] = sorted(set(read.unsupported))
    facts["field_errors"] = dict(read.errors)
    return facts


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
    }


def collect(pynvml, process_name=None):
    """Initialise NVML, read every GPU, shut NVML down; return facts.

    ``process_name(pid)`` names GPU processes (default: /proc/PID/comm).
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
            "gpus": [_gpu_facts(pynvml, index, process_name) for index in range(int(count))],
        }
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # pylint: disable=broad-except
            pass
    return facts


# ---------------------------------------------------------------- checks


def parse_version(text, what):
    """'580.95.05' -> (580, 95, 5); raise ValueError naming ``what``."""
    text = str(text).strip()
    if not re.match(r"^\d+(\.\d+)*$", text):
        raise ValueError("%s must be a dotted version such as '550.54.14' or '12.4', got %r" % (what, text))
    return tuple(int(part) for part in text.split("."))


def _measured_version(text):
    """Leading dotted number of a measured version ('580.95.05-open' -> (580, 95, 5))."""
    match = re.match(r"\s*(\d+(?:\.\d+)*)", str(text))
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def _version_ge(measured, minimum):
    length = max(len(measured), len(minimum))
    return measured + (0,) * (length - len(measured)) >= minimum + (0,) * (length - len(minimum))


CHECK_OPTIONS = (
    "min_driver_version",
    "min_cuda_driver_version",
    "gpu_count",
    "min_gpu_count",
    "min_memory_mib",
    "min_compute_capability",
    "require_persistence_mode",
    "mig_mode",
    "fail_on_uncorrected_ecc_errors",
    "fail_on_pending_row_remap",
    "min_temperature_margin_c",
    "fail_on_foreign_processes",
    "allowed_process_names",
)


def validate_thresholds(thresholds):
    """Reject malformed thresholds before anything is measured."""
    for key in ("min_driver_version", "min_cuda_driver_version", "min_compute_capability"):
        if thresholds.get(key) not in (None, ""):
            parse_version(thresholds[key], key)
    for key in ("gpu_count", "min_gpu_count", "min_memory_mib", "min_temperature_margin_c"):
        value = thresholds.get(key)
        if value is not None and int(value) < 0:
            raise ValueError("%s must be zero or more, got %r" % (key, value))
    mig = thresholds.get("mig_mode") or "any"
    if mig not in ("any", "disabled", "enabled"):
        raise ValueError("mig_mode must be one of any, disabled, enabled; got %r" % mig)


def _result(name, status, measured, threshold, msg, *, gpu=None):
    return {"check": name, "gpu": gpu, "status": status, "measured": measured, "threshold": threshold, "msg": msg}


def _where(gpu):
    return "GPU %s (%s, %s)" % (gpu["index"], gpu.get("name") or "unknown model", gpu.get("pci_bus_id") or "unknown bus")


def _unreadable(results, name, gpu, field, threshold):
    """Record a check whose measurement is missing: skipped if unsupported, failed on an NVML error."""
    error = _field_error(gpu, field)
    if error:
        msg = "%s: could not read %s: %s" % (_where(gpu), field, error)
        results.append(_result(name, "failed", None, threshold, msg, gpu=gpu["index"]))
    else:
        msg = "%s: NVML does not report %s on this device; check skipped" % (_where(gpu), field)
        results.append(_result(name, "not_supported", None, threshold, msg, gpu=gpu["index"]))


def _per_gpu(results, facts, name, field, threshold, *, is_ok, describe):
    """Run one check on every GPU; unsupported fields are noted, not failed."""
    for gpu in facts["gpus"]:
        value = gpu.get(field)
        if value is None:
            _unreadable(results, name, gpu, field, threshold)
            continue
        ok = is_ok(value)
        msg = "%s: %s" % (_where(gpu), describe(value, ok))
        results.append(_result(name, "passed" if ok else "failed", value, threshold, msg, gpu=gpu["index"]))


# Fact names that come from one NVML call share its error entry.
_FIELD_SOURCE = {
    "mig_mode_current": "mig_mode",
    "mig_mode_pending": "mig_mode",
    "ecc_mode_current": "ecc_mode",
    "remapped_rows_pending": "remapped_rows",
    "remapped_rows_failed": "remapped_rows",
    "memory_total_mib": "memory",
}


def _field_error(gpu, field):
    errors = gpu.get("field_errors") or {}
    return errors.get(field) or errors.get(_FIELD_SOURCE.get(field, field))


def _check_version(results, name, have, want, fix):
    label = name[len("min_"):]
    if have is None:
        results.append(_result(name, "failed", None, want, "could not read the %s from NVML" % label.replace("_", " ")))
        return
    measured = _measured_version(have)
    if measured is None:
        results.append(_result(name, "failed", have, want, "cannot compare the %s %r with %s" % (label.replace("_", " "), have, want)))
        return
    if _version_ge(measured, parse_version(want, name)):
        results.append(_result(name, "passed", have, want, "%s %s >= %s" % (label, have, want)))
    else:
        results.append(_result(name, "failed", have, want, fix % {"have": have, "want": want}))


def _check_host(results, facts, thresholds, gpu_required):
    count = facts["gpu_count"]
    for gpu in facts["gpus"]:
        error = (gpu.get("field_errors") or {}).get("handle")
        if error:
            msg = ("GPU %d is counted by NVML but cannot be opened (%s); check 'nvidia-smi' and 'dmesg' for Xid errors, "
                   "then reset the GPU or reboot" % (gpu["index"], error))
            results.append(_result("gpu_accessible", "failed", error, "accessible", msg, gpu=gpu["index"]))
    if gpu_required and count == 0:
        msg = "NVML answered but found no GPU; check 'nvidia-smi -L', the PCI device (lspci) and the container's device mounts"
        results.append(_result("gpu_present", "failed", 0, ">= 1", msg))

    want = thresholds.get("min_driver_version")
    if want:
        _check_version(
            results, "min_driver_version", facts.get("driver_version"), want,
            "NVIDIA driver %(have)s is older than the required %(want)s; install driver >= %(want)s (role nvidia_driver) and reboot",
        )
    want = thresholds.get("min_cuda_driver_version")
    if want:
        _check_version(
            results, "min_cuda_driver_version", facts.get("cuda_driver_version"), want,
            "the driver supports CUDA up to %(have)s but %(want)s is required; upgrade the NVIDIA driver to one that supports CUDA %(want)s",
        )
    want = thresholds.get("gpu_count")
    if want is not None:
        status = "passed" if count == want else "failed"
        results.append(_result("gpu_count", status, count, want, "found %d GPU(s), expected exactly %d" % (count, want)))
    want = thresholds.get("min_gpu_count")
    if want is not None:
        status = "passed" if count >= want else "failed"
        results.append(_result("min_gpu_count", status, count, want, "found %d GPU(s), need at least %d" % (count, want)))


def _check_temperature(results, facts, want):
    for gpu in facts["gpus"]:
        temp, slowdown = gpu.get("temperature_c"), gpu.get("temperature_slowdown_c")
        if temp is None or slowdown is None:
            _unreadable(results, "temperature_margin", gpu, "temperature_c" if temp is None else "temperature_slowdown_c", want)
            continue
        margin = slowdown - temp
        ok = margin >= want
        msg = "%s: %d C is %d C below the %d C slowdown threshold (need >= %d C)%s" % (
            _where(gpu), temp, margin, slowdown, want, "" if ok else "; check cooling and airflow before loading it")
        results.append(_result("temperature_margin", "passed" if ok else "failed", margin, want, msg, gpu=gpu["index"]))


def _check_processes(results, facts, allowed):
    for gpu in facts["gpus"]:
        procs = gpu.get("processes")
        if procs is None:
            _unreadable(results, "foreign_processes", gpu, "processes", allowed)
            continue
        foreign = [p for p in procs if p.get("name") not in allowed]
        if not foreign:
            results.append(_result("foreign_processes", "passed", [], allowed, "%s: no foreign processes" % _where(gpu), gpu=gpu["index"]))
            continue
        listing = ", ".join("pid %d (%s, %s MiB)" % (p["pid"], p.get("name") or "name unknown", p.get("used_memory_mib")) for p in foreign)
        msg = "%s: %d process(es) not in allowed_process_names use the GPU: %s; stop them or add their names to allowed_process_names" % (
            _where(gpu), len(foreign), listing)
        results.append(_result("foreign_processes", "failed", foreign, allowed, msg, gpu=gpu["index"]))


def evaluate(facts, thresholds, gpu_required=True):
    """Run every check whose threshold is set; return a list of results.

    Each result: ``check``, ``gpu`` (index or None), ``status`` (``passed``,
    ``failed`` or ``not_supported``), ``measured``, ``threshold``, ``msg``.
    """
    results = []
    if not facts.get("available"):
        if gpu_required:
            msg = "%s; fix: %s" % (facts.get("message"), facts.get("hint"))
            results.append(_result("nvml", "failed", facts.get("reason"), "available", msg))
        return results

    _check_host(results, facts, thresholds, gpu_required)

    want = thresholds.get("min_memory_mib")
    if want is not None:
        _per_gpu(
            results, facts, "min_memory_mib", "memory_total_mib", want,
            is_ok=lambda v: v >= want,
            describe=lambda v, ok: "%d MiB total memory %s %d MiB required" % (v, ">=" if ok else "is less than the", want),
        )

    want = thresholds.get("min_compute_capability")
    if want:
        wanted = parse_version(want, "min_compute_capability")
        _per_gpu(
            results, facts, "min_compute_capability", "compute_capability", want,
            is_ok=lambda v: _version_ge(_measured_version(v) or (0,), wanted),
            describe=lambda v, ok: "compute capability %s %s %s" % (v, ">=" if ok else "is below the required", want),
        )

    if thresholds.get("require_persistence_mode"):
        _per_gpu(
            results, facts, "require_persistence_mode", "persistence_mode", True,
            is_ok=lambda v: v is True,
            describe=lambda v, ok: "persistence mode is enabled" if ok else (
                "persistence mode is disabled; enable it with 'nvidia-smi -pm 1' or the nvidia-persistenced service"),
        )

    want = thresholds.get("mig_mode") or "any"
    if want != "any":
        wanted_on = want == "enabled"
        _per_gpu(
            results, facts, "mig_mode", "mig_mode_current", want,
            is_ok=lambda v: v is wanted_on,
            describe=lambda v, ok: "MIG mode is %s" % want if ok else (
                "MIG mode is %s but must be %s; run 'nvidia-smi -i <index> -mig %d' and reset the GPU"
                % ("enabled" if v else "disabled", want, 1 if wanted_on else 0)),
        )

    if thresholds.get("fail_on_uncorrected_ecc_errors"):
        _per_gpu(
            results, facts, "uncorrected_ecc_errors", "ecc_errors_uncorrected_volatile", 0,
            is_ok=lambda v: v == 0,
            describe=lambda v, ok: "%d volatile uncorrected ECC errors%s" % (
                v, "" if ok else "; drain the GPU, reset it (nvidia-smi -r) or reboot, and replace it if errors return"),
        )

    if thresholds.get("fail_on_pending_row_remap"):
        _per_gpu(
            results, facts, "pending_row_remap", "remapped_rows_pending", False,
            is_ok=lambda v: v is False,
            describe=lambda v, ok: "no row remapping pending" if ok else (
                "a memory row remap is pending; reset the GPU (nvidia-smi -r) or reboot to apply it"),
        )
        _per_gpu(
            results, facts, "row_remap_failure", "remapped_rows_failed", False,
            is_ok=lambda v: v is False,
            describe=lambda v, ok: "no row remapping failure" if ok else (
                "row remapping failed: the GPU has no spare rows left and needs servicing"),
        )

    want = thresholds.get("min_temperature_margin_c")
    if want is not None:
        _check_temperature(results, facts, want)

    if thresholds.get("fail_on_foreign_processes"):
        _check_processes(results, facts, sorted(thresholds.get("allowed_process_names") or []))

    return results


def failures(results):
    return [r for r in results if r["status"] == "failed"]


def summary(results):
    """One line per failed check, for the task's msg."""
    failed = failures(results)
    if not failed:
        return "all %d GPU checks passed" % len([r for r in results if r["status"] == "passed"])
    lines = ["%d GPU check(s) failed:" % len(failed)]
    for item in failed:
        lines.append("- [%s] %s (measured: %s, threshold: %s)" % (item["check"], item["msg"], item["measured"], item["threshold"]))
    return "\n".join(lines)
