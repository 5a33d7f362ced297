"""Unit tests for the gpu_fabric_test module: the whole module run with this Python and a stand-in worker script."""

from __future__ import annotations

import sys

import pytest
import yaml

from ansible_collections.llmops.inference.plugins.module_utils import fabric_test
from ansible_collections.llmops.inference.plugins.modules import gpu_fabric_test

from module_runner import run_module

STAND_IN = r'''
import json, sys
config = json.loads(sys.argv[1])
rows = [{"size_bytes": s, "count": s // 4, "time_us": s / 360e3, "algbw_gbps": 360.0 * s / (1 << 30),
         "busbw_gbps": 360.0 * s / (1 << 30), "correct": True} for s in config["sizes"]]
print(json.dumps({"world_size": 2, "device": config["device"], "dtype": config["dtype"], "iterations": config["iterations"],
                  "warmup": config["warmup"], "bus_factor": 1.0, "results": rows, "seconds": 1.0, "torch_version": "2.11.0",
                  "nccl_version": "2.27.7", "gpus": [{"index": 0, "name": "H100", "uuid": "GPU-a"}]}))
'''


def run(args, capsys):
    return run_module(gpu_fabric_test.main, args, capsys)


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setattr(fabric_test, "worker_source", lambda: STAND_IN)


def test_passes_and_returns_rows(stand_in, capsys):
    result = run({"python": sys.executable, "sizes": ["64MiB", "1GiB"], "min_busbw_gbps": 300}, capsys)
    assert not result.get("failed")
    assert result["changed"] is False
    assert [row["size_bytes"] for row in result["results"]] == [64 << 20, 1 << 30]
    assert result["busbw_gbps"] == 360.0
    assert [c["status"] for c in result["checks"]] == ["passed", "passed"]
    assert result["msg"] == "all-reduce bus bandwidth (GB/s) across 2 GPUs: 64MiB 22.5, 1GiB 360.0"


def test_threshold_fails_with_the_measured_figure(stand_in, capsys):
    result = run({"python": sys.executable, "sizes": ["1GiB"], "min_busbw_gbps": 500}, capsys)
    assert result["failed"] is True
    assert [f["check"] for f in result["failures"]] == ["min_busbw_gbps"]
    assert "bus bandwidth 360.0 GB/s is below the required 500.0 GB/s" in result["msg"]
    result = run({"python": sys.executable, "sizes": ["1GiB"], "min_busbw_gbps": 500, "enforce": False}, capsys)
    assert not result.get("failed") and len(result["failures"]) == 1


def test_bad_sizes_and_missing_python_fail_clearly(stand_in, capsys):
    assert run({"python": sys.executable, "sizes": ["lots"]}, capsys)["msg"].startswith("invalid parameter: sizes: 'lots'")
    assert "does not exist" in run({"python": "/nonexistent/python"}, capsys)["msg"]


def test_documentation_matches_argument_spec_and_return(monkeypatch, stand_in, capsys):
    seen = {}

    class Stop(Exception):
        pass

    def capture(argument_spec, **_kwargs):
        seen.update(argument_spec)
        raise Stop

    with monkeypatch.context() as patch:
        patch.setattr(gpu_fabric_test, "AnsibleModule", capture)
        with pytest.raises(Stop):
            gpu_fabric_test.main()
    options = yaml.safe_load(gpu_fabric_test.DOCUMENTATION)["options"]
    assert set(options) == set(seen)
    for name, spec in seen.items():
        for key in ("type", "default", "choices", "elements", "required"):
            assert options[name].get(key) == spec.get(key), (name, key)
    returned = yaml.safe_load(gpu_fabric_test.RETURN)
    result = run({"python": sys.executable, "sizes": ["1GiB"]}, capsys)
    assert set(result) - {"changed", "invocation"} == set(returned)
    assert set(result["results"][0]) == set(returned["results"]["contains"])
    yaml.safe_load(gpu_fabric_test.EXAMPLES)
