# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Judge the facts of ``nvml.collect``: the checks of ``llmops.inference.gpu_validate``.

:func:`evaluate` runs every check whose threshold is set and returns one entry
per check and GPU (or GPU pair), each with measured value, threshold and a fix.
Topology checks (NVLink links, GPU pairs, Fabric Manager) live in
``nvml_topology_checks``.
"""

from __future__ import annotations

import re

from ansible_collections.llmops.inference.plugins.module_utils.nvml_topology import CONNECTION_ORDER
from ansible_collections.llmops.inference.plugins.module_utils.nvml_topology_checks import check_topology, TOPOLOGY_OPTIONS


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
    "expected_gpu_count",
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
) + TOPOLOGY_OPTIONS

# Old option names still accepted (deprecated), and the name each stands for.
DEPRECATED_OPTIONS = {"gpu_count": "expected_gpu_count"}


def canonical_thresholds(thresholds):
    """Thresholds with deprecated names moved to their new names (the new name wins when both are set)."""
    result = dict(thresholds)
    for old, new in DEPRECATED_OPTIONS.items():
        value = result.pop(old, None)
        if result.get(new) is None and value is not None:
            result[new] = value
    return result


def validate_thresholds(thresholds):
    """Reject malformed thresholds before anything is measured."""
    thresholds = canonical_thresholds(thresholds)
    for key in ("min_driver_version", "min_cuda_driver_version", "min_compute_capability"):
        if thresholds.get(key) not in (None, ""):
            parse_version(thresholds[key], key)
    for key in ("expected_gpu_count", "min_gpu_count", "min_memory_mib", "min_temperature_margin_c", "min_nvlinks_per_gpu_pair"):
        value = thresholds.get(key)
        if value is not None and int(value) < 0:
            raise ValueError("%s must be zero or more, got %r" % (key, value))
    mig = thresholds.get("mig_mode") or "any"
    if mig not in ("any", "disabled", "enabled"):
        raise ValueError("mig_mode must be one of any, disabled, enabled; got %r" % mig)
    connection = thresholds.get("min_gpu_connection")
    if connection not in (None, "") and connection not in CONNECTION_ORDER:
        raise ValueError("min_gpu_connection must be one of %s; got %r" % (", ".join(CONNECTION_ORDER), connection))


def _result(name, status, measured, threshold, msg, *, gpu=None, gpus=None):
    if gpus is None:
        gpus = [] if gpu is None else [gpu]
    return {"check": name, "gpu": gpu, "gpus": gpus, "status": status, "measured": measured, "threshold": threshold, "msg": msg}


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
    want = thresholds.get("expected_gpu_count")
    if want is not None:
        status = "passed" if count == want else "failed"
        results.append(_result("expected_gpu_count", status, count, want, "found %d GPU(s), expected exactly %d" % (count, want)))
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

    Each result: ``check``, ``gpu`` (index or None), ``gpus`` (the indices the
    check is about: none for host-wide checks, two for a GPU pair), ``status``
    (``passed``, ``failed`` or ``not_supported``), ``measured``, ``threshold``,
    ``msg``. Deprecated threshold names (``gpu_count``) are accepted.
    """
    thresholds = canonical_thresholds(thresholds)
    results = []
    if not facts.get("available"):
        if gpu_required:
            msg = "%s; fix: %s" % (facts.get("message"), facts.get("hint"))
            results.append(_result("nvml", "failed", facts.get("reason"), "available", msg))
        return results

    _check_host(results, facts, thresholds, gpu_required)
    _check_gpu_config(results, facts, thresholds)
    _check_gpu_health(results, facts, thresholds)
    results.extend(check_topology(facts, thresholds, _result, _where))
    return results


def _check_gpu_config(results, facts, thresholds):
    """Memory, compute capability, persistence and MIG mode of every GPU."""
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


def _check_gpu_health(results, facts, thresholds):
    """ECC errors, row remapping, temperature margin and foreign processes of every GPU."""
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
