#!/usr/bin/python
# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_fabric_test
short_description: Measure the all-reduce bus bandwidth across a host's GPUs with NCCL
version_added: "0.2.0"
description:
  - Runs an all-reduce bandwidth test across the host's GPUs, one process per GPU joined by C(torch.distributed) with
    NCCL, with the Python that serves the models (O(python), the one with torch, for example vLLM's virtualenv), and
    reports the bus bandwidth per message size as nccl-tests' C(all_reduce_perf) does (busbw = algbw * 2(n-1)/n).
  - Checks that every all-reduce summed right and, with O(min_busbw_gbps), that the largest message reached that bus
    bandwidth; fails once, listing what failed, unless O(enforce=false).
  - For burn-in and after driver, firmware or cabling changes; it loads the GPUs for seconds to minutes, so it is not
    part of the usual validation (M(llmops.inference.gpu_validate) only reads).
  - The test script ships with the collection (C(plugins/module_utils/fabric_allreduce_worker.py)); it is written to a
    temporary file on the target and removed afterwards.
author:
  - llmops.inference maintainers (@llmops)
requirements:
  - PyTorch with CUDA and NCCL in the interpreter named by O(python) (vLLM's virtualenv has it).
options:
  python:
    description:
      - The Python interpreter that runs the test, with torch installed - the one that serves the models, for example
        C(/opt/vllm/venv/bin/python).
    type: path
    required: true
  gpus:
    description:
      - GPUs to test, as indices or UUIDs (C(GPU-...)); they become C(CUDA_VISIBLE_DEVICES) of the test.
      - Empty tests every GPU torch sees.
    type: list
    elements: str
    default: []
  sizes:
    description:
      - Message sizes, in bytes or with binary units (V(8M), V(64MiB), V(1GiB)) as nccl-tests reads them.
    type: list
    elements: str
    default: [1MiB, 4MiB, 16MiB, 64MiB, 256MiB, 1GiB]
  dtype:
    description:
      - Element type of the all-reduce (nccl-tests' default is V(float32)).
    type: str
    choices: [float32, bfloat16]
    default: float32
  iterations:
    description:
      - Timed all-reduces per size; the time of one is their mean on the slowest GPU.
    type: int
    default: 20
  warmup_iterations:
    description:
      - Untimed all-reduces per size before the timed ones.
    type: int
    default: 5
  min_busbw_gbps:
    description:
      - Least bus bandwidth, in GB/s (10^9 bytes per second), of the largest message size.
      - Two H100 SXM GPUs joined by 18 NVLinks reach several hundred GB/s at 1GiB; GPUs joined only by PCIe Gen5 x16
        reach a few tens.
    type: float
  enforce:
    description:
      - Fail the task when a check fails. When V(false), failures are only returned in RV(failures) and RV(msg).
    type: bool
    default: true
  timeout:
    description:
      - Seconds the whole test may take; a hung all-reduce (a broken link) ends it with a failure.
    type: int
    default: 600
  device:
    description:
      - V(cuda) tests the GPUs with NCCL. V(cpu) runs the same test on the CPU with gloo, for testing the module where
        there is no GPU; its figures say nothing about a GPU fabric.
    type: str
    choices: [cuda, cpu]
    default: cuda
notes:
  - Changes nothing on the host; supports check mode, where it runs as well.
  - Run it while no model is served on the GPUs; it needs a few GiB of memory on each GPU and competes with serving.
seealso:
  - module: llmops.inference.gpu_validate
    description: Reports which GPUs are joined by NVLink (and checks the links) without loading them.
  - name: nccl-tests PERFORMANCE.md
    description: Algorithm and bus bandwidth of all-reduce, the figures this module reports.
    link: https://github.com/NVIDIA/nccl-tests/blob/master/doc/PERFORMANCE.md
  - name: Multi-GPU hosts (collection guide)
    description: Topology facts, checks, this test and how the vllm role places instances on GPUs.
    link: https://github.com/llmops/inference/blob/main/docs/multi_gpu.md
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Burn-in - all-reduce across every GPU with the serving Python, at least 300 GB/s at 1GiB
  llmops.inference.gpu_fabric_test:
    python: /opt/vllm/venv/bin/python
    min_busbw_gbps: 300

- name: Only the two GPUs of one tensor-parallel group, reported but not enforced
  llmops.inference.gpu_fabric_test:
    python: /opt/vllm/venv/bin/python
    gpus: [GPU-5d7a6c55-1cc5-4bb8-a2a4-0ee0b4a1e2b1, GPU-0f0e7a0c-8a1e-4a37-9e0e-7c4f2d6c1a90]
    sizes: [64MiB, 1GiB]
    enforce: false
  register: fabric
"""

RETURN = r"""
results:
  description: One entry per message size, smallest first, like a row of C(all_reduce_perf).
  returned: success
  type: list
  elements: dict
  contains:
    size_bytes:
      description: Message size in bytes.
      type: int
    count:
      description: Elements per message.
      type: int
    time_us:
      description: Mean time of one all-reduce on the slowest GPU, in microseconds.
      type: float
    algbw_gbps:
      description: Algorithm bandwidth, size / time, in GB/s.
      type: float
    busbw_gbps:
      description: Bus bandwidth, algbw * 2(n-1)/n, in GB/s.
      type: float
    correct:
      description: Whether every GPU got the right sum of a check all-reduce at this size.
      type: bool
  sample:
    - {size_bytes: 1073741824, count: 268435456, time_us: 6521.3, algbw_gbps: 164.6, busbw_gbps: 164.6, correct: true}
world_size:
  description: Number of GPUs (processes) in the test.
  returned: success
  type: int
busbw_gbps:
  description: Bus bandwidth of the largest message size, in GB/s.
  returned: success
  type: float
bus_factor:
  description: The factor 2(n-1)/n between algorithm and bus bandwidth.
  returned: success
  type: float
device:
  description: V(cuda) or V(cpu), as asked.
  returned: success
  type: str
dtype:
  description: Element type used.
  returned: success
  type: str
iterations:
  description: Timed all-reduces per size.
  returned: success
  type: int
warmup:
  description: Untimed all-reduces per size.
  returned: success
  type: int
seconds:
  description: Wall time of the test, process start included.
  returned: success
  type: float
torch_version:
  description: torch version of O(python).
  returned: success
  type: str
nccl_version:
  description: NCCL version torch uses; C(null) with V(cpu).
  returned: success
  type: str
gpus:
  description: The GPUs tested, as torch numbers them (C(index), C(name), C(uuid)).
  returned: success
  type: list
  elements: dict
cmd:
  description: The command that ran (the interpreter, the temporary script and its JSON configuration).
  returned: success
  type: list
  elements: str
checks:
  description: The checks, each with C(check) (V(allreduce_correct), V(min_busbw_gbps)), C(status), C(measured), C(threshold), C(msg).
  returned: success
  type: list
  elements: dict
failures:
  description: The failed entries of RV(checks).
  returned: success
  type: list
  elements: dict
msg:
  description: Bus bandwidth per size and one line per failed check; or why the test could not run.
  returned: always
  type: str
  sample: "all-reduce bus bandwidth (GB/s) across 2 GPUs: 1MiB 40.2, 1GiB 360.1"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.inference.plugins.module_utils import fabric_test


def run_module(module):
    params = module.params
    try:
        config = fabric_test.build_config(params)
    except ValueError as exc:
        module.fail_json(msg="invalid parameter: %s" % exc)
    try:
        command, result = fabric_test.run(params["python"], config, gpus=params["gpus"], timeout=params["timeout"], tmpdir=module.tmpdir)
    except fabric_test.FabricTestError as exc:
        module.fail_json(msg=str(exc))
    checks = fabric_test.evaluate(result, params["min_busbw_gbps"])
    failed = [check for check in checks if check["status"] == "failed"]
    rows = result.get("results") or []
    output = dict(result)
    output.update({
        "changed": False,
        "cmd": command,
        "busbw_gbps": max(rows, key=lambda row: row["size_bytes"])["busbw_gbps"] if rows else None,
        "checks": checks,
        "failures": failed,
        "msg": fabric_test.summary(result, checks),
    })
    if failed and params["enforce"]:
        module.fail_json(**output)
    module.exit_json(**output)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            python=dict(type="path", required=True),
            gpus=dict(type="list", elements="str", default=[]),
            sizes=dict(type="list", elements="str", default=list(fabric_test.DEFAULT_SIZES)),
            dtype=dict(type="str", choices=["float32", "bfloat16"], default="float32"),
            iterations=dict(type="int", default=20),
            warmup_iterations=dict(type="int", default=5),
            min_busbw_gbps=dict(type="float"),
            enforce=dict(type="bool", default=True),
            timeout=dict(type="int", default=600),
            device=dict(type="str", choices=["cuda", "cpu"], default="cuda"),
        ),
        supports_check_mode=True,
    )
    run_module(module)


if __name__ == "__main__":
    main()
