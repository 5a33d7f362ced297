#!/usr/bin/python
# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_validate
short_description: Read NVIDIA GPU state and topology through NVML and refuse hosts that will fail later
version_added: "0.1.0"
description:
  - Reads the NVIDIA driver and every GPU through NVML, using the official C(nvidia-ml-py) bindings
    (imported as C(pynvml)), and returns them as facts in RV(ansible_facts.nvidia).
  - Reads how the GPUs are joined, as C(nvidia-smi topo -m) shows it - per GPU its NVLink links (state, version and
    the GPU or NVSwitch each link reaches), for every GPU pair the number of active NVLinks or the PCIe path
    (V(PIX), V(PXB), V(PHB), V(NODE), V(SYS)), the NVLink domains, CPU and NUMA affinity and the NVSwitch fabric
    state - in C(ansible_facts.nvidia.topology) and the GPU entries.
  - Runs the optional checks whose thresholds are set (driver and CUDA versions, GPU count, memory, compute capability,
    persistence and MIG mode, ECC errors, row remapping, temperature margin, foreign processes, NVLink links, GPU pair
    connections and Fabric Manager) and fails once, listing every failed check with its measured value, its threshold,
    the GPU or GPU pair and link, and what to fix.
  - A field that NVML does not support on a device (C(NVMLError_NotSupported), for example fan speed, retired pages,
    NUMA node or NVLink on a single H100) is C(null) and named in C(unsupported_fields); it is never a failure.
    A check whose measurement is not supported is reported as V(not_supported).
  - The module only reads, so it runs for real in check mode.
author:
  - llmops.inference maintainers (@llmops)
requirements:
  - C(nvidia-ml-py) (import name C(pynvml)) for the target's Python.
  - The NVIDIA driver (C(libnvidia-ml.so.1) and the loaded kernel module) when O(gpu_required=true).
options:
  gpu_required:
    description:
      - Whether this host must have a working NVIDIA driver and at least one GPU.
      - When V(false), a missing C(pynvml), driver library, kernel driver or GPU is reported in the facts
        (C(available=false) with C(reason)) and is not a failure; checks that need GPUs do not run.
    type: bool
    default: true
  enforce:
    description:
      - Fail the task when any check fails. When V(false), failures are only returned in RV(failures) and RV(msg).
    type: bool
    default: true
  min_driver_version:
    description:
      - Lowest accepted NVIDIA driver version, compared numerically part by part (V(550.54.14), V(570)).
    type: str
  min_cuda_driver_version:
    description:
      - Lowest CUDA version the driver must support, as C(nvidia-smi) shows it (V(12.4)).
    type: str
  expected_gpu_count:
    description:
      - Exact number of GPUs the host must have (check C(expected_gpu_count)).
      - The old name O(gpu_count) is a deprecated alias; it meant the same here, but in
        M(llmops.inference.serving_plan) a GPU count is how many GPUs to use, so the name was ambiguous.
    type: int
    aliases: [gpu_count]
    version_added: "0.2.0"
  min_gpu_count:
    description:
      - Least number of GPUs the host must have.
    type: int
  min_memory_mib:
    description:
      - Least total memory of every GPU, in MiB as C(nvidia-smi --query-gpu=memory.total) shows it.
      - An H100 80GB reports 81559 MiB; 80 GiB would be 81920 MiB and would fail it.
    type: int
  min_compute_capability:
    description:
      - Lowest CUDA compute capability of every GPU (V(8.0) for Ampere, V(9.0) for Hopper).
    type: str
  require_persistence_mode:
    description:
      - Fail when persistence mode is off on a GPU.
    type: bool
    default: false
  mig_mode:
    description:
      - Required current MIG mode of every GPU; V(any) does not check it.
    type: str
    choices: [any, disabled, enabled]
    default: any
  fail_on_uncorrected_ecc_errors:
    description:
      - Fail when a GPU has volatile (since the last driver load) uncorrected ECC errors.
    type: bool
    default: false
  fail_on_pending_row_remap:
    description:
      - Fail when a GPU has a memory row remap pending (needs a GPU reset) or a row remapping failure.
    type: bool
    default: false
  min_temperature_margin_c:
    description:
      - Least distance, in degrees Celsius, between a GPU's current temperature and its slowdown threshold.
    type: int
  fail_on_foreign_processes:
    description:
      - Fail when a process whose name is not in O(allowed_process_names) runs on a GPU.
      - Process names come from C(/proc/PID/comm); a process in another PID namespace has no name and counts as foreign.
    type: bool
    default: false
  allowed_process_names:
    description:
      - Process names (as in C(/proc/PID/comm), at most 15 characters) allowed on the GPUs by O(fail_on_foreign_processes).
    type: list
    elements: str
    default: []
  require_all_nvlinks_up:
    description:
      - Fail when an NVLink link of a GPU is not up (check C(nvlinks_up)); the failure names the GPU, the link and the
        GPU or NVSwitch it reaches. GPUs without NVLink are reported as V(not_supported).
    type: bool
    default: false
    version_added: "0.2.0"
  min_nvlinks_per_gpu_pair:
    description:
      - Least number of active NVLinks between every two GPUs, directly or through NVSwitches, as the C(NV<n>) of
        C(nvidia-smi topo -m) (check C(min_nvlinks_per_gpu_pair)). V(18) on an H100 SXM system.
      - A pair joined only by PCIe has 0 and fails.
    type: int
    version_added: "0.2.0"
  min_gpu_connection:
    description:
      - Worst acceptable connection between any two GPUs, best first - V(NV) (NVLink), V(PIX), V(PXB), V(PHB),
        V(NODE), V(SYS), with the meaning of C(nvidia-smi topo -m) (check C(min_gpu_connection)).
    type: str
    choices: [NV, PIX, PXB, PHB, NODE, SYS]
    version_added: "0.2.0"
  require_fabric_manager:
    description:
      - Where NVLinks reach NVSwitches, fail unless NVIDIA Fabric Manager has registered every GPU with the fabric
        (NVML's GPU fabric state V(completed), Hopper and later), or, where NVML does not report that state, unless an
        C(nv-fabricmanager) process runs (check C(fabric_manager)). Hosts without NVSwitch pass.
      - Where NVML answers the state V(not_supported) and no C(nv-fabricmanager) runs on the machine (NVSwitches
        managed outside it, as in a VM), the check is V(not_supported).
    type: bool
    default: false
    version_added: "0.2.0"
notes:
  - Read-only; supports check mode (it runs for real) and has no diff.
  - Facts keep NVML's units where they are exact (MiB, degrees Celsius, watts with one decimal).
  - The NVLink bandwidth of a host is measured by M(llmops.inference.gpu_fabric_test), which is not run here.
seealso:
  - module: llmops.inference.gpu_fabric_test
    description: Measures the all-reduce bus bandwidth across the GPUs that this module reports joined.
  - module: llmops.inference.serving_plan
    description: Sizes models against the GPUs this module reports.
  - name: NVML API reference
    description: The NVIDIA Management Library that C(nvidia-smi) is built on.
    link: https://docs.nvidia.com/deploy/nvml-api/
  - name: Multi-GPU hosts (collection guide)
    description: Topology facts, checks, the fabric test and how the vllm role places instances on GPUs.
    link: https://github.com/llmops/inference/blob/main/docs/multi_gpu.md
attributes:
  action_group:
    description: Use C(group/llmops.inference.inference) in C(module_defaults) to set its defaults.
    support: full
    membership:
      - llmops.inference.inference
  check_mode:
    description: Only reads, so it runs for real in check mode.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
  facts:
    description: Returns C(ansible_facts.nvidia).
    support: full
"""

EXAMPLES = r"""
- name: Refuse hosts that cannot serve an 8B model in BF16 on Hopper
  llmops.inference.gpu_validate:
    min_driver_version: "550"
    min_cuda_driver_version: "12.4"
    min_gpu_count: 1
    min_memory_mib: 40000
    min_compute_capability: "8.0"
    mig_mode: disabled
    fail_on_uncorrected_ecc_errors: true
    fail_on_pending_row_remap: true
    min_temperature_margin_c: 10
    fail_on_foreign_processes: true
    allowed_process_names: [python3, vllm]

- name: Refuse an 8-GPU NVSwitch host with a link down or Fabric Manager stopped
  llmops.inference.gpu_validate:
    expected_gpu_count: 8
    require_all_nvlinks_up: true
    min_nvlinks_per_gpu_pair: 18
    min_gpu_connection: NV
    require_fabric_manager: true

- name: Print the GPU matrix like nvidia-smi topo -m
  ansible.builtin.debug:
    msg: "{{ ansible_facts.nvidia.topology.matrix }}"

- name: Only gather facts and report problems (for a fleet report)
  llmops.inference.gpu_validate:
    gpu_required: false
    enforce: false
    min_driver_version: "580"
  register: gpu

- name: Show the driver and the first GPU
  ansible.builtin.debug:
    msg: "{{ ansible_facts.nvidia.driver_version }} {{ ansible_facts.nvidia.gpus[0].name | default('no GPU') }}"

# Failing thresholds, as the module reported them on a real H100 80GB HBM3 (driver 580.159.04)
# with min_memory_mib=200000 min_driver_version=999 min_temperature_margin_c=80:
#   3 GPU check(s) failed:
#   - [min_driver_version] NVIDIA driver 580.159.04 is older than the required 999; install driver >= 999
#     (role nvidia_driver) and reboot (measured: 580.159.04, threshold: 999)
#   - [min_memory_mib] GPU 0 (NVIDIA H100 80GB HBM3, 00000000:00:06.0): 81559 MiB total memory is less than
#     the 200000 MiB required (measured: 81559, threshold: 200000)
#   - [temperature_margin] GPU 0 (NVIDIA H100 80GB HBM3, 00000000:00:06.0): 48 C is 41 C below the 89 C
#     slowdown threshold (need >= 80 C); check cooling and airflow before loading it (measured: 41, threshold: 80)
"""

RETURN = r"""
ansible_facts:
  description: Facts about the NVIDIA driver and GPUs.
  returned: always
  type: complex
  contains:
    nvidia:
      description:
        - C(available), C(reason), C(message), C(hint) (why NVML could not answer, C(null) when it did),
          C(driver_version), C(cuda_driver_version), C(nvml_version), C(gpu_count) and C(gpus).
        - Each GPU holds C(index), C(name), C(uuid), C(pci_bus_id), C(memory_total_mib), C(memory_free_mib),
          C(memory_used_mib), C(memory_reserved_mib) (driver-reserved, apart from used as in C(nvidia-smi); null with
          NVML before memory info v2), C(compute_capability), C(architecture), C(persistence_mode), C(mig_mode_current),
          C(mig_mode_pending), C(ecc_mode_current), C(ecc_mode_pending), C(ecc_errors_uncorrected_volatile),
          C(ecc_errors_uncorrected_aggregate), C(remapped_rows_correctable), C(remapped_rows_uncorrectable),
          C(remapped_rows_pending), C(remapped_rows_failed), C(retired_pages_single_bit), C(retired_pages_double_bit),
          C(retired_pages_pending), C(temperature_c), C(temperature_slowdown_c), C(temperature_shutdown_c),
          C(fan_speed_percent), C(power_draw_w), C(power_limit_w), C(pcie_link_gen_current), C(pcie_link_gen_max),
          C(pcie_link_width_current), C(pcie_link_width_max), C(throttle_reasons_mask), C(throttle_reasons),
          C(numa_node), C(nvlink_active_links), C(processes) (C(pid), C(name), C(used_memory_mib)),
          C(nvlinks), C(cpu_affinity), C(numa_affinity), C(fabric_state), C(fabric_status), C(fabric_clique_id),
          C(unsupported_fields) and C(field_errors).
        - C(nvlinks) is C(null) on a GPU without NVLink, else one entry per link - C(link) (number), C(state)
          (V(up) or V(down)), C(version) (V(4.0) on Hopper) and C(version_raw) (NVML's C(nvmlNvlinkVersion_t)),
          C(remote_pci_bus_id), C(remote_type) (V(gpu), V(switch), V(ibmnpu), V(unknown)) and C(remote_gpu) (the index
          of the GPU the link reaches, C(null) for a switch).
        - C(cpu_affinity) is the CPU list nearest to the GPU (V(0-31)), C(numa_affinity) the NUMA nodes nearest to its
          memory (a list), as C(nvidia-smi topo -m) shows them; C(fabric_state) (V(not_supported), V(not_started),
          V(in_progress), V(completed)), C(fabric_status) and C(fabric_clique_id) are the GPU's NVSwitch fabric
          registration (Hopper and later).
        - C(topology) is C(null) when NVML did not answer, else C(matrix) (one row per GPU, V(X) on the diagonal, else
          V(NV<n>) for n active NVLinks or the PCIe path V(PIX), V(PXB), V(PHB), V(NODE), V(SYS); C(null) if unknown),
          C(pairs) (per GPU pair C(gpus), C(nvlinks), C(pcie) and C(connection)), C(nvlink_domains) (lists of GPU
          indices joined by NVLink), C(nvswitch_links) (active links that reach NVSwitches) and
          C(fabric_manager_running) (whether an C(nv-fabricmanager) process runs; C(null) without NVSwitch links).
        - Fields NVML does not support on the device are C(null).
        - The sample is the real answer of GPU 0 of a 4 x H200 host whose GPUs reach each other through NVSwitches
          (driver 580.159.04, benchmarks/results/multi_gpu_h200x4_repeat), shortened where entries repeat.
      type: dict
      returned: always
      sample:
        available: true
        reason: null
        message: null
        hint: null
        driver_version: "580.159.04"
        cuda_driver_version: "13.0"
        nvml_version: "13.580.159.04"
        gpu_count: 4
        gpus:
          - index: 0
            name: "NVIDIA H200"
            uuid: "GPU-a758a0e3-a418-c201-0b05-9b3f69a95adf"
            pci_bus_id: "00000000:00:06.0"
            memory_total_mib: 143771
            memory_free_mib: 143155
            memory_used_mib: 0
            memory_reserved_mib: 615
            compute_capability: "9.0"
            architecture: "hopper"
            persistence_mode: true
            mig_mode_current: false
            mig_mode_pending: false
            ecc_mode_current: true
            ecc_mode_pending: true
            ecc_errors_uncorrected_volatile: 0
            ecc_errors_uncorrected_aggregate: 0
            remapped_rows_correctable: 0
            remapped_rows_uncorrectable: 0
            remapped_rows_pending: false
            remapped_rows_failed: false
            retired_pages_single_bit: null
            retired_pages_double_bit: null
            retired_pages_pending: null
            temperature_c: 32
            temperature_slowdown_c: 89
            temperature_shutdown_c: 95
            fan_speed_percent: null
            power_draw_w: 80.3
            power_limit_w: 700.0
            pcie_link_gen_current: 5
            pcie_link_gen_max: 5
            pcie_link_width_current: 16
            pcie_link_width_max: 16
            throttle_reasons_mask: 1
            throttle_reasons: [gpu_idle]
            numa_node: null
            nvlink_active_links: 18
            processes: []
            nvlinks:  # 18 links, all alike; the first shown
              - {link: 0, remote_gpu: null, remote_pci_bus_id: 'ffffffff:ff:ff.0', remote_type: switch, state: up, version: '4.0', version_raw: 6}
            cpu_affinity: "0-63"
            numa_affinity: [0]
            fabric_state: "completed"
            fabric_status: "success"
            fabric_clique_id: 0
            unsupported_fields: [fan_speed_percent, numa_node, retired_pages]
            field_errors: {}
        topology:
          matrix: [[X, NV18, NV18, NV18], [NV18, X, NV18, NV18], [NV18, NV18, X, NV18], [NV18, NV18, NV18, X]]
          pairs:  # 6 pairs, all alike; the first shown
            - {connection: NV18, gpus: [0, 1], nvlinks: 18, pcie: PHB}
          nvlink_domains: [[0, 1, 2, 3]]
          nvswitch_links: 72
          fabric_manager_running: false
checks:
  description: Every check that ran, one entry per check and GPU.
  returned: always
  type: list
  elements: dict
  contains:
    check:
      description:
        - Check name, for example C(min_driver_version), C(expected_gpu_count), C(min_memory_mib), C(temperature_margin),
          C(nvlinks_up), C(min_nvlinks_per_gpu_pair), C(min_gpu_connection), C(fabric_manager).
      type: str
    gpu:
      description: GPU index, C(null) for host-wide and GPU pair checks.
      type: int
    gpus:
      description: The GPU indices the check is about - none for a host-wide check, one per GPU, two for a GPU pair.
      type: list
      elements: int
    status:
      description: C(passed), C(failed) or C(not_supported) (NVML cannot measure it on this device; not a failure).
      type: str
    measured:
      description: The measured value.
      type: raw
    threshold:
      description: The threshold it was compared with.
      type: raw
    msg:
      description: What was found and, for a failure, what to fix.
      type: str
failures:
  description: The failed entries of RV(checks).
  returned: always
  type: list
  elements: dict
msg:
  description: A summary; one line per failed check with measured value and threshold.
  returned: always
  type: str
  sample: "all 11 GPU checks passed"
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.llmops.inference.plugins.module_utils import nvml


def run_module(module):
    params = module.params
    thresholds = {key: params[key] for key in nvml.CHECK_OPTIONS}
    try:
        nvml.validate_thresholds(thresholds)
    except ValueError as exc:
        module.fail_json(msg="invalid threshold: %s" % exc)

    try:
        pynvml = nvml.import_pynvml()
        facts = nvml.collect(pynvml)
    except nvml.NvmlUnavailable as exc:
        facts = nvml.unavailable_facts(exc)

    checks = nvml.evaluate(facts, thresholds, gpu_required=params["gpu_required"])
    failed = nvml.failures(checks)
    result = {
        "changed": False,
        "ansible_facts": {"nvidia": facts},
        "checks": checks,
        "failures": failed,
        "msg": nvml.summary(checks),
    }
    if not facts["available"] and not params["gpu_required"]:
        result["msg"] = "no usable NVIDIA GPU (%s), and none is required: %s" % (facts["reason"], facts["message"])
    if failed and facts["reason"] == "pynvml_missing":
        result["msg"] = "%s\n%s" % (missing_required_lib(nvml.PIP_NAME), result["msg"])
    if failed and params["enforce"]:
        module.fail_json(**result)
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            gpu_required=dict(type="bool", default=True),
            enforce=dict(type="bool", default=True),
            min_driver_version=dict(type="str"),
            min_cuda_driver_version=dict(type="str"),
            expected_gpu_count=dict(
                type="int", aliases=["gpu_count"],
                deprecated_aliases=[dict(name="gpu_count", version="2.0.0", collection_name="llmops.inference")],
            ),
            min_gpu_count=dict(type="int"),
            min_memory_mib=dict(type="int"),
            min_compute_capability=dict(type="str"),
            require_persistence_mode=dict(type="bool", default=False),
            mig_mode=dict(type="str", choices=["any", "disabled", "enabled"], default="any"),
            fail_on_uncorrected_ecc_errors=dict(type="bool", default=False),
            fail_on_pending_row_remap=dict(type="bool", default=False),
            min_temperature_margin_c=dict(type="int"),
            fail_on_foreign_processes=dict(type="bool", default=False),
            allowed_process_names=dict(type="list", elements="str", default=[]),
            require_all_nvlinks_up=dict(type="bool", default=False),
            min_nvlinks_per_gpu_pair=dict(type="int"),
            min_gpu_connection=dict(type="str", choices=["NV", "PIX", "PXB", "PHB", "NODE", "SYS"]),
            require_fabric_manager=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    run_module(module)


if __name__ == "__main__":
    main()
