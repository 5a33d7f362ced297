"""Unit tests for the topology facts (nvml_topology.py) and checks (nvml_topology_checks.py), with a fake pynvml."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

from ansible_collections.llmops.inference.plugins.module_utils import nvml, nvml_topology


def _load_fake():
    path = pathlib.Path(__file__).resolve().parent / "test_gpu_fake_pynvml.py"
    spec = importlib.util.spec_from_file_location("llmops_gpu_fake_pynvml_topology", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fake = _load_fake()


def collect(gpus, fabric_manager=lambda: None):
    return nvml.collect(fake.make_fake(gpus), process_name=lambda pid: None, fabric_manager=fabric_manager)


def checks(facts, name, **thresholds):
    return [r for r in nvml.evaluate(facts, thresholds) if r["check"] == name]


def two_gpus_nv18(down=()):
    """Two H100s joined directly by 18 NVLinks (NVLink 4.0), PCIe path SYS; links in ``down`` are down."""
    def links(i):
        return [(0 if (i, link) in down else 1, fake.bus_id(1 - i).encode(), fake.REMOTE_GPU) for link in range(18)]
    return fake.host(2, nvlink=links, pcie="SYS", cpus=lambda i: 0xFFFFFFFF)


def nvswitch_host(count=8, fabric=3, down=()):
    """``count`` H100 SXM GPUs, 18 links each to NVSwitches, two NUMA nodes of 4 GPUs."""
    return fake.host(
        count,
        nvlink=lambda i: fake.switch_links(18, up=lambda link: (i, link) not in down),
        pcie=lambda i, j: "NODE" if i // 4 == j // 4 else "SYS",
        numa=lambda i: i // 4,
        cpus=lambda i: 0xFFFF << (16 * (i // 4)),
        fabric=lambda i: fabric if not callable(fabric) else fabric(i),
    )


# ------------------------------------------------------------------ facts


def test_direct_nvlink_pair_facts_and_matrix():
    facts = collect(two_gpus_nv18())
    gpu0, gpu1 = facts["gpus"]
    assert gpu0["nvlink_active_links"] == 18
    assert len(gpu0["nvlinks"]) == 18  # link 18 answered InvalidArgument: the end of the list
    assert gpu0["nvlinks"][0] == {
        "link": 0, "state": "up", "version": "4.0", "version_raw": 6, "remote_pci_bus_id": "0000:28:00.0",
        "remote_type": "gpu", "remote_gpu": 1,
    }
    assert {link["remote_gpu"] for link in gpu1["nvlinks"]} == {0}
    assert gpu0["cpu_affinity"] == "0-31"
    assert gpu0["numa_affinity"] is None and "numa_affinity" in gpu0["unsupported_fields"]
    topology = facts["topology"]
    assert topology["matrix"] == [["X", "NV18"], ["NV18", "X"]]
    assert topology["pairs"] == [{"gpus": [0, 1], "nvlinks": 18, "pcie": "SYS", "connection": "NV18"}]
    assert topology["nvlink_domains"] == [[0, 1]]
    assert topology["nvswitch_links"] == 0
    assert topology["fabric_manager_running"] is None
    assert nvml_topology.matrix_text(facts).splitlines() == [
        "\tGPU0\tGPU1\tCPU Affinity\tNUMA Affinity",
        "GPU0\tX\tNV18\t0-31\tN/A",
        "GPU1\tNV18\tX\t0-31\tN/A",
    ]


def test_nvswitch_host_matrix_numa_and_fabric():
    facts = collect(nvswitch_host())
    topology = facts["topology"]
    assert all(cell == "NV18" for i, row in enumerate(topology["matrix"]) for j, cell in enumerate(row) if i != j)
    assert topology["nvlink_domains"] == [list(range(8))]
    assert topology["nvswitch_links"] == 8 * 18
    gpu5 = facts["gpus"][5]
    assert gpu5["nvlinks"][3]["remote_type"] == "switch" and gpu5["nvlinks"][3]["remote_gpu"] is None
    assert gpu5["numa_node"] == 1 and gpu5["numa_affinity"] == [1]
    assert gpu5["cpu_affinity"] == "16-31"
    assert (gpu5["fabric_state"], gpu5["fabric_status"], gpu5["fabric_clique_id"]) == ("completed", "success", 0)
    assert {pair["pcie"] for pair in topology["pairs"] if pair["gpus"] == [0, 4]} == {"SYS"}


def test_pcie_only_host_has_pcie_paths_and_one_domain_per_gpu():
    paths = {(0, 1): "PIX", (2, 3): "PIX", (0, 2): "PHB", (0, 3): "PHB", (1, 2): "PHB", (1, 3): "PHB"}
    facts = collect(fake.host(4, pcie=lambda i, j: paths[(min(i, j), max(i, j))]))
    assert facts["topology"]["matrix"][0] == ["X", "PIX", "PHB", "PHB"]
    assert facts["topology"]["nvlink_domains"] == [[0], [1], [2], [3]]
    assert all(gpu["nvlinks"] is None and gpu["nvlink_active_links"] is None for gpu in facts["gpus"])


def test_mixed_bridged_pairs_form_two_domains():
    # Four PCIe boards, NVLink bridges joining 0-1 and 2-3 (4 links each), SYS between the pairs.
    def links(i):
        return fake.direct_links(4, lambda link: i ^ 1)
    facts = collect(fake.host(4, nvlink=links, pcie=lambda i, j: "NODE" if i // 2 == j // 2 else "SYS"))
    assert facts["topology"]["matrix"][0] == ["X", "NV4", "SYS", "SYS"]
    assert facts["topology"]["nvlink_domains"] == [[0, 1], [2, 3]]


def test_unsupported_topology_calls_are_null_not_errors():
    unsupported = {"nvmlDeviceGetTopologyCommonAncestor": fake.NOT_SUPPORTED, "nvmlDeviceGetCpuAffinity": fake.NOT_SUPPORTED}
    facts = collect([fake.h100(raises=unsupported), fake.h100(raises=unsupported)])
    assert facts["topology"]["matrix"] == [["X", None], [None, "X"]]
    assert facts["gpus"][0]["cpu_affinity"] is None
    assert facts["gpus"][0]["field_errors"] == {}
    result = checks(facts, "min_gpu_connection", min_gpu_connection="SYS")
    assert [r["status"] for r in result] == ["not_supported"]


def test_single_gpu_host_topology():
    facts = collect([fake.h100()])
    assert facts["topology"] == {"matrix": [["X"]], "pairs": [], "nvlink_domains": [[0]], "nvswitch_links": 0,
                                 "fabric_manager_running": None}


def test_unavailable_facts_have_no_topology():
    assert nvml.unavailable_facts(nvml.NvmlUnavailable("x", "y", "z"))["topology"] is None


@pytest.mark.parametrize(("words", "text"), [
    ([0xFFFFFFFF], "0-31"), ([0b1011], "0-1,3"), ([0, 0xF], "64-67"), ([1 << 63, 1], "63-64"), ([0], ""), (None, None),
])
def test_cpu_list(words, text):
    assert nvml_topology.cpu_list(words) == text
    if text:
        assert nvml_topology.cpu_list(_mask_words(nvml_topology.parse_cpu_list(text))) == text


def _mask_words(cpus):
    words = [0] * (max(cpus) // 64 + 1)
    for cpu in cpus:
        words[cpu // 64] |= 1 << (cpu % 64)
    return words


def test_parse_cpu_list_and_bus_ids():
    assert nvml_topology.parse_cpu_list("0-3,8") == {0, 1, 2, 3, 8}
    assert nvml_topology.parse_cpu_list(None) == set()
    assert nvml_topology.normalize_bus_id(b"00000000:1A:00.0") == "0000:1a:00.0"
    assert nvml_topology.normalize_bus_id("0000:1a:00.0") == "0000:1a:00.0"
    assert nvml_topology.normalize_bus_id("") is None
    assert [nvml_topology.connection_rank(c) for c in ("NV4", "PIX", "PXB", "PHB", "NODE", "SYS", None)] == [0, 1, 2, 3, 4, 5, 6]


def test_fabric_manager_process_from_proc(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "comm").write_text("systemd\n")
    (tmp_path / "self").mkdir()
    assert nvml_topology.fabric_manager_running(str(tmp_path)) is False
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "comm").write_text("nv-fabricmanager\n")
    assert nvml_topology.fabric_manager_running(str(tmp_path)) is True
    assert nvml_topology.fabric_manager_running(str(tmp_path / "missing")) is None


# ------------------------------------------------------------------ checks


def test_links_up_passes_and_fails_naming_gpu_link_and_peer():
    assert [r["status"] for r in checks(collect(two_gpus_nv18()), "nvlinks_up", require_all_nvlinks_up=True)] == ["passed"] * 2
    failed = checks(collect(two_gpus_nv18(down={(0, 5), (0, 11)})), "nvlinks_up", require_all_nvlinks_up=True)
    assert [(r["status"], r["gpu"], r["measured"]) for r in failed] == [("failed", 0, [5, 11]), ("passed", 1, [])]
    assert "2 of 18 NVLink links are not up: link 5 (to GPU 1), link 11 (to GPU 1)" in failed[0]["msg"]
    assert "nvidia-smi nvlink --status -i 0" in failed[0]["msg"]
    switch = checks(collect(nvswitch_host(down={(3, 7)})), "nvlinks_up", require_all_nvlinks_up=True)
    assert "link 7 (to NVSwitch 0000:a3:00.0)" in switch[3]["msg"]


def test_links_up_on_gpus_without_nvlink_is_not_supported():
    result = checks(collect(fake.host(2)), "nvlinks_up", require_all_nvlinks_up=True)
    assert [r["status"] for r in result] == ["not_supported"] * 2


def test_min_nvlinks_per_pair_names_the_pair_and_down_links():
    assert [r["status"] for r in checks(collect(two_gpus_nv18()), "min_nvlinks_per_gpu_pair", min_nvlinks_per_gpu_pair=18)] == ["passed"]
    result = checks(collect(two_gpus_nv18(down={(1, 2)})), "min_nvlinks_per_gpu_pair", min_nvlinks_per_gpu_pair=18)
    assert [(r["status"], r["gpus"], r["measured"], r["threshold"]) for r in result] == [("failed", [0, 1], 17, 18)]
    assert result[0]["msg"].startswith("GPU 0 (00000000:18:00.0) and GPU 1 (00000000:28:00.0) are joined by 17 active NVLink(s), need >= 18")
    assert "(not up: GPU 1 links 2)" in result[0]["msg"]
    # On an NVSwitch host the pair count is the fewer switch links of the two GPUs.
    result = checks(collect(nvswitch_host(down={(6, 0), (6, 1)})), "min_nvlinks_per_gpu_pair", min_nvlinks_per_gpu_pair=18)
    assert sorted(tuple(r["gpus"]) for r in result if r["status"] == "failed") == [(i, 6) for i in range(6)] + [(6, 7)]


def test_pcie_pairs_have_zero_nvlinks_and_fail_an_nvlink_minimum():
    result = checks(collect(fake.host(2, pcie="PHB")), "min_nvlinks_per_gpu_pair", min_nvlinks_per_gpu_pair=1)
    assert result[0]["measured"] == 0 and result[0]["status"] == "failed"
    assert "the path between them is PHB" in result[0]["msg"]


def test_min_gpu_connection_per_pair():
    facts = collect(fake.host(4, nvlink=lambda i: fake.direct_links(4, lambda link: i ^ 1),
                              pcie=lambda i, j: "NODE" if i // 2 == j // 2 else "SYS"))
    result = checks(facts, "min_gpu_connection", min_gpu_connection="NODE")
    assert [(tuple(r["gpus"]), r["status"]) for r in result] == [
        ((0, 1), "passed"), ((0, 2), "failed"), ((0, 3), "failed"), ((1, 2), "failed"), ((1, 3), "failed"), ((2, 3), "passed")]
    assert "GPU 0 (00000000:18:00.0) and GPU 2 (00000000:38:00.0) are joined by SYS" in result[1]["msg"]
    assert "worse than the required NODE" in result[1]["msg"]
    assert all(r["status"] == "failed" for r in checks(facts, "min_gpu_connection", min_gpu_connection="NV") if r["gpus"] != [0, 1]
               and r["gpus"] != [2, 3])


def test_fabric_manager_check():
    ok = checks(collect(nvswitch_host()), "fabric_manager", require_fabric_manager=True)
    assert [r["status"] for r in ok] == ["passed"] * 8
    bad = checks(collect(nvswitch_host(fabric=lambda i: 1 if i == 2 else 3)), "fabric_manager", require_fabric_manager=True)
    assert [(r["gpu"], r["status"]) for r in bad if r["status"] == "failed"] == [(2, "failed")]
    assert "fabric registration not_started" in bad[2]["msg"] and "nvidia-fabricmanager" in bad[2]["msg"]
    # No fabric state from NVML: the nv-fabricmanager process decides.
    no_state = nvswitch_host(fabric=None)
    assert checks(collect(no_state, fabric_manager=lambda: False), "fabric_manager", require_fabric_manager=True)[0]["status"] == "failed"
    assert checks(collect(no_state, fabric_manager=lambda: True), "fabric_manager", require_fabric_manager=True)[0]["status"] == "passed"
    assert checks(collect(no_state), "fabric_manager", require_fabric_manager=True)[0]["status"] == "not_supported"
    # As on the real 2 x H200 VM: NVML answers state not_supported, no nv-fabricmanager here, NVLink works.
    vm = nvswitch_host(count=2, fabric=0)
    result = checks(collect(vm, fabric_manager=lambda: False), "fabric_manager", require_fabric_manager=True)
    assert [(r["status"], r["measured"]) for r in result] == [("not_supported", False)]
    assert "managed outside this machine" in result[0]["msg"]
    assert checks(collect(vm, fabric_manager=lambda: True), "fabric_manager", require_fabric_manager=True)[0]["status"] == "passed"
    assert collect(vm)["gpus"][0]["fabric_state"] == "not_supported"


def test_fabric_info_versioned_call_first_then_the_old_one():
    # The versioned call (what nvidia-smi reads; the real 4 x H200 VM showed Completed there) answers first.
    module = fake.make_fake(nvswitch_host(count=2))
    facts = nvml.collect(module, process_name=lambda pid: None, fabric_manager=lambda: None)
    assert facts["gpus"][0]["fabric_state"] == "completed"
    assert not [c for c in module.calls if c[0] == "nvmlDeviceGetGpuFabricInfo"]
    # A driver without it: the first call.
    module = fake.make_fake(nvswitch_host(count=2), missing=("nvmlDeviceGetGpuFabricInfoV",))
    assert nvml.collect(module, process_name=lambda pid: None)["gpus"][1]["fabric_state"] == "completed"
    # Bindings without the versioned structure: the first call too.
    module = fake.make_fake(nvswitch_host(count=2, fabric=1))
    del module.c_nvmlGpuFabricInfo_v2_t
    assert nvml.collect(module, process_name=lambda pid: None)["gpus"][0]["fabric_state"] == "not_started"
    # Other NVML errors are recorded, not raised.
    gpu = fake.h100(raises={"nvmlDeviceGetGpuFabricInfoV": fake.ERROR_CODES["UNKNOWN"][0]})
    got = nvml.collect(fake.make_fake([gpu]), process_name=lambda pid: None)["gpus"][0]
    assert got["fabric_state"] is None and got["field_errors"] == {"fabric": "Unknown Error"}
    # Without NVSwitch it is not needed.
    assert checks(collect(two_gpus_nv18()), "fabric_manager", require_fabric_manager=True)[0]["status"] == "passed"


def test_all_topology_failures_come_together_in_the_summary():
    facts = collect(two_gpus_nv18(down={(0, 1)}))
    results = nvml.evaluate(facts, {"expected_gpu_count": 4, "require_all_nvlinks_up": True, "min_nvlinks_per_gpu_pair": 18,
                                    "min_gpu_connection": "NV"})
    assert [(r["check"], r["gpus"]) for r in nvml.failures(results)] == [
        ("expected_gpu_count", []), ("nvlinks_up", [0]), ("min_nvlinks_per_gpu_pair", [0, 1])]
    assert nvml.summary(results).startswith("3 GPU check(s) failed:")
