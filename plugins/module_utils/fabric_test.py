# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Run the all-reduce fabric test (``fabric_allreduce_worker``) with a given Python and judge it.

The logic behind ``llmops.inference.gpu_fabric_test``: sizes are parsed like
nccl-tests' ``-b 8M`` (binary units), the worker script runs as a child of the
serving Python with a time limit, its JSON is read back and the bus bandwidth
of the largest message is compared with a threshold.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import tempfile

from ansible_collections.llmops.inference.plugins.module_utils import fabric_allreduce_worker as worker

DEFAULT_SIZES = ("1MiB", "4MiB", "16MiB", "64MiB", "256MiB", "1GiB")
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024 ** 2, "mb": 1024 ** 2, "mib": 1024 ** 2,
          "g": 1024 ** 3, "gb": 1024 ** 3, "gib": 1024 ** 3}


class FabricTestError(Exception):
    """The test could not run or its output could not be read; ``msg`` says why and what to do."""


def parse_size(text):
    """'8M', '64MiB', '1GiB', '4096' -> bytes (binary units, as nccl-tests reads -b/-e)."""
    match = re.match(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$", str(text))
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError("sizes: %r is not a size such as 8MiB, 1GiB or 4096" % (text,))
    value = int(match.group(1)) * _UNITS[match.group(2).lower()]
    if value < 4:
        raise ValueError("sizes: %r is smaller than one element" % (text,))
    return value


def format_size(size):
    for unit, factor in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return "%d%s" % (size // factor, unit)
    return "%dB" % size


def worker_source():
    """The worker script's text, from the module_utils file or the zip Ansible ships it in."""
    try:
        return inspect.getsource(worker)
    except (OSError, TypeError):
        loader = getattr(worker, "__loader__", None)
        return loader.get_data(worker.__file__).decode("utf-8")


def build_config(params):
    """The worker's JSON configuration from the module's parameters (raises ValueError on bad input)."""
    sizes = sorted({parse_size(size) for size in params.get("sizes") or DEFAULT_SIZES})
    for key in ("iterations", "warmup_iterations"):
        if int(params[key]) < (1 if key == "iterations" else 0):
            raise ValueError("%s must be %s, got %r" % (key, "1 or more" if key == "iterations" else "0 or more", params[key]))
    if params.get("dtype", "float32") not in worker.DTYPES:
        raise ValueError("dtype must be one of %s" % ", ".join(worker.DTYPES))
    return {
        "device": params.get("device") or "cuda",
        "world_size": len(params.get("gpus") or []),
        "sizes": sizes,
        "dtype": params.get("dtype") or "float32",
        "iterations": int(params["iterations"]),
        "warmup": int(params["warmup_iterations"]),
    }


def child_environment(gpus, base=None):
    """The worker's environment: ``base`` (default os.environ) with CUDA_VISIBLE_DEVICES set to ``gpus`` when given."""
    env = dict(os.environ if base is None else base)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in gpus)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def parse_output(stdout, stderr="", rc=0):
    """The worker's JSON (its last line that is a JSON object); raise FabricTestError with the output's tail otherwise."""
    for raw in reversed((stdout or "").splitlines()):
        line = raw.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if "error" in data:
                raise FabricTestError("the fabric test failed: %s%s" % (data["error"], _tail(stderr)))
            if rc == 0:
                return data
    raise FabricTestError("the fabric test ended with rc=%s and no result%s" % (rc, _tail(stderr or stdout)))


def _tail(text, lines=15):
    text = (text or "").strip()
    return "; its last output:\n" + "\n".join(text.splitlines()[-lines:]) if text else ""


def run(python, config, gpus=None, timeout=600, tmpdir=None):
    """Write the worker to ``tmpdir``, run it with ``python``; return (command, parsed result)."""
    if not os.path.exists(python):
        raise FabricTestError("python %s does not exist; point python at the interpreter that serves the models "
                              "(the one with torch, for example the vLLM virtualenv's bin/python)" % python)
    handle, path = tempfile.mkstemp(prefix="llmops_fabric_", suffix=".py", dir=tmpdir)
    try:
        with os.fdopen(handle, "w") as script:
            script.write(worker_source())
        command = [python, path, json.dumps(config)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=child_environment(gpus), check=False)
        except subprocess.TimeoutExpired as exc:
            raise FabricTestError("the fabric test did not end within %d s (timeout); a hung all-reduce points at a broken "
                                  "link or peer-to-peer path: see 'nvidia-smi topo -m' and gpu_validate's nvlinks_up check" % timeout) from exc
        return command, parse_output(done.stdout, done.stderr, done.returncode)
    finally:
        os.unlink(path)


def evaluate(result, min_busbw_gbps=None):
    """Checks: every size summed right; the largest size's bus bandwidth meets ``min_busbw_gbps``."""
    checks = []
    rows = result.get("results") or []
    wrong = [format_size(row["size_bytes"]) for row in rows if not row.get("correct")]
    msg = "all-reduce sums were right at every size"
    if wrong:
        msg = ("all-reduce sums were wrong at %s across %d GPUs; a GPU or link corrupts data: drain the host and run "
               "the vendor diagnostics (dcgmi diag -r 3)" % (", ".join(wrong), result.get("world_size", 0)))
    checks.append({"check": "allreduce_correct", "status": "failed" if wrong else "passed", "measured": wrong, "threshold": [], "msg": msg})
    if min_busbw_gbps is not None and rows:
        largest = max(rows, key=lambda row: row["size_bytes"])
        ok = largest["busbw_gbps"] >= min_busbw_gbps
        checks.append({
            "check": "min_busbw_gbps", "status": "passed" if ok else "failed", "measured": largest["busbw_gbps"],
            "threshold": min_busbw_gbps,
            "msg": "all-reduce of %s across %d GPUs: bus bandwidth %.1f GB/s %s %.1f GB/s%s" % (
                format_size(largest["size_bytes"]), result.get("world_size", 0), largest["busbw_gbps"],
                ">=" if ok else "is below the required", min_busbw_gbps,
                "" if ok else "; check gpu_validate's NVLink facts (links down, GPUs joined only by PCIe), "
                              "Fabric Manager on NVSwitch systems, and other jobs on the GPUs"),
        })
    return checks


def summary(result, checks):
    failed = [check for check in checks if check["status"] == "failed"]
    table = ", ".join("%s %.1f" % (format_size(row["size_bytes"]), row["busbw_gbps"]) for row in result.get("results") or [])
    head = "all-reduce bus bandwidth (GB/s) across %d GPUs: %s" % (result.get("world_size", 0), table)
    if not failed:
        return head
    return "%s\n%d fabric check(s) failed:\n%s" % (head, len(failed), "\n".join("- [%s] %s" % (c["check"], c["msg"]) for c in failed))
