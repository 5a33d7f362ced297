"""Unit tests for the fabric test runner (fabric_test.py) and the worker's pure parts.

The worker itself needs torch; it ran for real with NCCL on 2 and 4 GPUs and with
gloo on the CPU (benchmarks/results/multi_gpu_*). Here the runner's plumbing runs
for real with this Python and a stand-in worker script.
"""

from __future__ import annotations

import json
import pathlib
import sys

import pytest

from ansible_collections.llmops.inference.plugins.module_utils import fabric_allreduce_worker as worker
from ansible_collections.llmops.inference.plugins.module_utils import fabric_test

ROW = {"size_bytes": 1 << 30, "count": 1 << 28, "time_us": 3000.0, "algbw_gbps": 357.9, "busbw_gbps": 357.9, "correct": True}


@pytest.mark.parametrize(("text", "size"), [("8M", 8 << 20), ("64MiB", 64 << 20), ("1GiB", 1 << 30), ("4096", 4096),
                                            ("16 KiB", 16 << 10), ("2g", 2 << 30)])
def test_parse_size(text, size):
    assert fabric_test.parse_size(text) == size


@pytest.mark.parametrize("text", ["1TiB", "lots", "-1M", "2"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="sizes"):
        fabric_test.parse_size(text)


def test_format_size():
    assert [fabric_test.format_size(s) for s in (1 << 30, 3 << 20, 4096, 1000)] == ["1GiB", "3MiB", "4KiB", "1000B"]


def test_bus_factor_is_nccl_tests_all_reduce_factor():
    assert [worker.bus_factor(n) for n in (1, 2, 4, 8)] == [0.0, 1.0, 1.5, 1.75]


def test_build_config_sorts_sizes_and_checks_counts():
    config = fabric_test.build_config({"sizes": ["1GiB", "8M", "8MiB"], "iterations": 20, "warmup_iterations": 5,
                                       "gpus": ["GPU-a", "GPU-b"], "dtype": "bfloat16", "device": "cuda"})
    assert config == {"device": "cuda", "world_size": 2, "sizes": [8 << 20, 1 << 30], "dtype": "bfloat16", "iterations": 20, "warmup": 5}
    assert fabric_test.build_config({"iterations": 1, "warmup_iterations": 0})["sizes"][-1] == 1 << 30
    with pytest.raises(ValueError, match="iterations must be 1 or more"):
        fabric_test.build_config({"iterations": 0, "warmup_iterations": 0})
    with pytest.raises(ValueError, match="dtype"):
        fabric_test.build_config({"iterations": 1, "warmup_iterations": 0, "dtype": "float16"})


def test_child_environment_sets_visible_devices_only_when_asked():
    env = fabric_test.child_environment(["GPU-a", "GPU-b"], base={"NCCL_NVLS_ENABLE": "0"})
    assert env == {"NCCL_NVLS_ENABLE": "0", "CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b", "PYTHONUNBUFFERED": "1"}
    assert "CUDA_VISIBLE_DEVICES" not in fabric_test.child_environment([], base={})


def test_worker_source_is_the_shipped_script():
    path = pathlib.Path(worker.__file__)
    assert fabric_test.worker_source() == path.read_text()


def test_parse_output_reads_the_last_json_line():
    out = "NCCL INFO something\n" + json.dumps({"world_size": 2, "results": [ROW]}) + "\n"
    assert fabric_test.parse_output(out)["world_size"] == 2
    with pytest.raises(fabric_test.FabricTestError, match="torch sees no CUDA GPU"):
        fabric_test.parse_output('{"error": "RuntimeError: torch sees no CUDA GPU"}', "", 1)
    with pytest.raises(fabric_test.FabricTestError, match="rc=1 and no result; its last output:\nTraceback"):
        fabric_test.parse_output("", "Traceback\nModuleNotFoundError: No module named 'torch'", 1)


def test_evaluate_threshold_on_the_largest_size_and_correctness():
    result = {"world_size": 2, "results": [dict(ROW, size_bytes=1 << 20, busbw_gbps=40.0), ROW]}
    checks = fabric_test.evaluate(result, 300.0)
    assert [(c["check"], c["status"], c["measured"]) for c in checks] == [("allreduce_correct", "passed", []), ("min_busbw_gbps", "passed", 357.9)]
    checks = fabric_test.evaluate(result, 400.0)
    assert checks[1]["status"] == "failed"
    assert "all-reduce of 1GiB across 2 GPUs: bus bandwidth 357.9 GB/s is below the required 400.0 GB/s" in checks[1]["msg"]
    wrong = {"world_size": 4, "results": [dict(ROW, correct=False)]}
    assert fabric_test.evaluate(wrong)[0]["status"] == "failed"
    assert "sums were wrong at 1GiB across 4 GPUs" in fabric_test.summary(wrong, fabric_test.evaluate(wrong))
    assert fabric_test.summary(result, checks[:1]) == "all-reduce bus bandwidth (GB/s) across 2 GPUs: 1MiB 40.0, 1GiB 357.9"


STAND_IN = r'''
import json, os, sys
config = json.loads(sys.argv[1])
if config.get("sizes") == [4]:
    import time
    time.sleep(30)
print("a log line")
print(json.dumps({"world_size": 2, "config": config, "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
                  "results": [{"size_bytes": s, "count": s // 4, "time_us": 1.0, "algbw_gbps": 1.0, "busbw_gbps": 1.0,
                               "correct": True} for s in config["sizes"]]}))
'''


def test_run_writes_the_script_runs_it_and_removes_it(monkeypatch, tmp_path):
    monkeypatch.setattr(fabric_test, "worker_source", lambda: STAND_IN)
    config = fabric_test.build_config({"sizes": ["1M"], "iterations": 2, "warmup_iterations": 1, "gpus": ["GPU-x"]})
    command, result = fabric_test.run(sys.executable, config, gpus=["GPU-x"], tmpdir=str(tmp_path))
    assert command[0] == sys.executable and json.loads(command[2]) == config
    assert result["visible"] == "GPU-x"
    assert result["config"]["sizes"] == [1 << 20]
    assert list(tmp_path.iterdir()) == []  # the script is removed


def test_run_times_out_and_names_the_cause(monkeypatch, tmp_path):
    monkeypatch.setattr(fabric_test, "worker_source", lambda: STAND_IN)
    config = fabric_test.build_config({"sizes": ["4"], "iterations": 1, "warmup_iterations": 0})
    with pytest.raises(fabric_test.FabricTestError, match="did not end within 1 s"):
        fabric_test.run(sys.executable, config, timeout=1, tmpdir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_run_without_torch_reports_the_import_error(tmp_path):
    # The real worker with this Python: without torch it fails on the import, with a CPU-only torch on
    # "torch sees no CUDA GPU"; either way the message names torch.
    config = fabric_test.build_config({"sizes": ["1M"], "iterations": 1, "warmup_iterations": 0})
    with pytest.raises(fabric_test.FabricTestError, match="torch"):
        fabric_test.run(sys.executable, config, tmpdir=str(tmp_path))


def test_run_with_a_missing_python():
    with pytest.raises(fabric_test.FabricTestError, match="does not exist"):
        fabric_test.run("/nonexistent/bin/python", {}, timeout=5)
