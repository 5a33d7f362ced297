"""Unit tests for GPU placement (gpu_placement.py, the vllm_gpu_placement filters).

The facts come from nvml.collect over the fake pynvml, so placement reads the
same shapes as on a real host: 1, 2, 4 and 8 GPUs, NVLink (direct and through
NVSwitches), PCIe only and mixed topologies.
"""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

from ansible_collections.llmops.inference.plugins.filter import vllm_placement
from ansible_collections.llmops.inference.plugins.module_utils import gpu_placement, nvml


def _load_fake():
    path = pathlib.Path(__file__).resolve().parent / "test_gpu_fake_pynvml.py"
    spec = importlib.util.spec_from_file_location("llmops_gpu_fake_pynvml_placement", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fake = _load_fake()


def facts_of(gpus):
    return nvml.collect(fake.make_fake(gpus), process_name=lambda pid: None, fabric_manager=lambda: True)


def single():
    return facts_of([fake.h100()])


def nv_pair():
    """2 GPUs joined directly by 18 NVLinks (like the 2-GPU hosts here)."""
    return facts_of(fake.host(2, nvlink=lambda i: fake.direct_links(18, lambda link: 1 - i), pcie="SYS"))


def nvswitch(count=8):
    """NVSwitch host: every GPU 18 links to switches, NUMA node per half."""
    half = max(1, count // 2)
    return facts_of(fake.host(count, nvlink=lambda i: fake.switch_links(18), numa=lambda i: i // half,
                              pcie=lambda i, j: "NODE" if i // half == j // half else "SYS", fabric=lambda i: 3))


def pcie_only(count=4):
    """PCIe boards, no NVLink: GPUs 0,1 on NUMA node 0 and 2,3 on node 1 (NODE within, SYS across)."""
    half = count // 2
    return facts_of(fake.host(count, pcie=lambda i, j: "NODE" if i // half == j // half else "SYS", numa=lambda i: i // half))


def bridged_pairs(count=4):
    """Mixed: PCIe boards with NVLink bridges joining 0-1, 2-3, ... (4 links each); PCIe between pairs."""
    return facts_of(fake.host(count, nvlink=lambda i: fake.direct_links(4, lambda link: i ^ 1),
                              pcie=lambda i, j: "PHB" if i // 4 == j // 4 else "SYS"))


def six_mixed():
    """Mixed: GPUs 0-3 on NVSwitches, 4-5 joined by a bridge, PCIe between the two sets."""
    def links(i):
        return fake.switch_links(18) if i < 4 else fake.direct_links(4, lambda link: 9 - i)
    return facts_of(fake.host(6, nvlink=links, pcie="SYS"))


def model(name, tp=1, **extra):
    return dict({"name": name, "tensor_parallel_size": tp, "port": 8000, "path": "/m"}, **extra)


def place(facts, *models, min_connection="auto"):
    return vllm_placement.vllm_gpu_placement(list(models), facts, min_connection)


def gpus_of(result):
    assert result["errors"] == [], result["errors"]
    return {name: entry["gpus"] for name, entry in result["placements"].items()}


# ------------------------------------------------------------------ 1 GPU


def test_one_gpu_fits_one_instance_by_uuid():
    result = place(single(), model("a"))
    entry = result["placements"]["a"]
    assert entry["gpus"] == [0]
    assert entry["cuda_visible_devices"] == "GPU-f26a2ca7-3438-7f15-022e-94b45eea00db"
    assert (entry["connection"], entry["required_connection"], entry["pinned"], entry["shared_with"]) == (None, None, False, [])
    assert entry["cpus"] == "0-15"


def test_one_gpu_refuses_tp2_and_a_second_instance_unless_both_share():
    assert place(single(), model("big", 2))["errors"] == [
        "vllm_models[big]: tensor_parallel_size 2 needs 2 GPUs but this host has 1; lower it or place the model on a larger host"]
    errors = place(single(), model("a"), model("b"))["errors"]
    assert len(errors) == 1
    assert errors[0].startswith("vllm_models[b]: needs 1 GPU(s) but only 0 are free (in use: GPU 0 (a))")
    assert "gpu_sharing: true" in errors[0]
    # Only one of the two sharing is not enough.
    assert place(single(), model("a"), model("b", gpu_sharing=True))["errors"]
    result = place(single(), model("a", gpu_sharing=True), model("b", gpu_sharing=True))
    assert gpus_of(result) == {"a": [0], "b": [0]}
    assert result["placements"]["a"]["shared_with"] == ["b"]


# ------------------------------------------------------------------ 2 GPUs


def test_two_nvlinked_gpus_take_tp2_or_two_instances():
    result = place(nv_pair(), model("tp2", 2))
    assert gpus_of(result) == {"tp2": [0, 1]}
    entry = result["placements"]["tp2"]
    assert (entry["connection"], entry["required_connection"]) == ("NV18", "NV")
    assert entry["cuda_visible_devices"] == "GPU-00000000-0000-0000-0000-000000000000,GPU-00000001-0000-0000-0000-000000000001"
    assert gpus_of(place(nv_pair(), model("a"), model("b"))) == {"a": [0], "b": [1]}
    errors = place(nv_pair(), model("tp2", 2), model("small"))["errors"]
    assert errors[0].startswith("vllm_models[small]: needs 1 GPU(s) but only 0 are free (in use: GPU 0 (tp2), GPU 1 (tp2))")


def test_two_pcie_gpus_across_sockets_refuse_tp2_by_default():
    facts = facts_of(fake.host(2, pcie="SYS", numa=lambda i: i))
    errors = place(facts, model("tp2", 2))["errors"]
    assert errors == [
        "vllm_models[tp2]: tensor_parallel_size 2 needs 2 GPUs joined by NODE or better (vllm_gpu_placement_min_connection), "
        "but the largest such group of free GPUs is 1 (GPU 0); lower tensor_parallel_size, free GPUs of one NVLink domain, "
        "or accept a weaker connection with vllm_gpu_placement_min_connection"]
    result = place(facts, model("tp2", 2), min_connection="SYS")
    assert gpus_of(result) == {"tp2": [0, 1]}
    assert result["placements"]["tp2"]["connection"] == "SYS"
    assert result["placements"]["tp2"]["numa_nodes"] == [0, 1]


# ------------------------------------------------------------------ 4 GPUs


def test_four_nvswitch_gpus():
    assert gpus_of(place(nvswitch(4), model("tp4", 4))) == {"tp4": [0, 1, 2, 3]}
    # Two TP2 groups: each on one NUMA node.
    result = place(nvswitch(4), model("a", 2), model("b", 2))
    assert gpus_of(result) == {"a": [0, 1], "b": [2, 3]}
    assert result["placements"]["b"]["numa_nodes"] == [1]
    assert place(nvswitch(4), model("tp8", 8))["errors"][0].startswith("vllm_models[tp8]: tensor_parallel_size 8 needs 8 GPUs but this host has 4")


def test_four_pcie_only_gpus_keep_tp_groups_on_one_numa_node():
    assert gpus_of(place(pcie_only(), model("a", 2), model("b", 2))) == {"a": [0, 1], "b": [2, 3]}
    # A TP1 instance placed first must not split both nodes: bigger groups go first.
    assert gpus_of(place(pcie_only(), model("one"), model("two", 2))) == {"two": [0, 1], "one": [2]}
    errors = place(pcie_only(), model("tp4", 4))["errors"]
    assert "needs 4 GPUs joined by NODE or better" in errors[0] and "largest such group of free GPUs is 2 (GPU 0, 1)" in errors[0]
    assert gpus_of(place(pcie_only(), model("tp4", 4), min_connection="SYS")) == {"tp4": [0, 1, 2, 3]}


def test_four_mixed_bridged_pairs():
    facts = bridged_pairs(4)
    assert facts["topology"]["nvlink_domains"] == [[0, 1], [2, 3]]
    result = place(facts, model("a", 2), model("b", 2))
    assert gpus_of(result) == {"a": [0, 1], "b": [2, 3]}
    assert result["placements"]["a"]["connection"] == "NV4"
    errors = place(facts, model("tp4", 4))["errors"]
    assert "needs 4 GPUs joined by NV or better" in errors[0] and "is 2 (GPU 0, 1)" in errors[0]
    assert gpus_of(place(facts, model("tp4", 4), min_connection="PHB")) == {"tp4": [0, 1, 2, 3]}
    # A pinned TP1 on GPU 0 leaves the whole 2-3 domain for the TP2 group, and GPU 1 for the other TP1.
    result = place(facts, model("pin", environment={"CUDA_VISIBLE_DEVICES": "0"}), model("one"), model("two", 2))
    assert gpus_of(result) == {"pin": [0], "two": [2, 3], "one": [1]}


# ------------------------------------------------------------------ 8 GPUs


def test_eight_nvswitch_gpus_numa_aware():
    result = place(nvswitch(8), model("a", 4), model("b", 4))
    assert gpus_of(result) == {"a": [0, 1, 2, 3], "b": [4, 5, 6, 7]}
    assert [result["placements"][n]["numa_nodes"] for n in "ab"] == [[0], [1]]
    result = place(nvswitch(8), *[model("m%d" % k, 2) for k in range(4)])
    assert all(len(entry["numa_nodes"]) == 1 for entry in result["placements"].values())
    assert sorted(g for entry in result["placements"].values() for g in entry["gpus"]) == list(range(8))
    assert gpus_of(place(nvswitch(8), model("tp8", 8)))["tp8"] == list(range(8))
    errors = place(nvswitch(8), model("a", 4), model("b", 4), model("c", 1))["errors"]
    assert errors and errors[0].startswith("vllm_models[c]: needs 1 GPU(s) but only 0 are free")


def test_eight_mixed_bridged_pairs():
    facts = bridged_pairs(8)
    result = place(facts, *[model("m%d" % k, 2) for k in range(4)])
    assert sorted(entry["gpus"] for entry in result["placements"].values()) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    errors = place(facts, model("big", 4), model("small", 2))["errors"]
    assert [e.split(":")[0] for e in errors] == ["vllm_models[big]"]


def test_six_mixed_domains_best_fit():
    facts = six_mixed()
    assert facts["topology"]["nvlink_domains"] == [[0, 1, 2, 3], [4, 5]]
    # The first TP2 group takes the small domain, so the 4-GPU domain stays whole for the next ones.
    assert gpus_of(place(facts, model("a", 2), model("b", 2), model("c", 2))) == {"a": [4, 5], "b": [0, 1], "c": [2, 3]}
    assert gpus_of(place(facts, model("small", 2), model("big", 4))) == {"big": [0, 1, 2, 3], "small": [4, 5]}


# ------------------------------------------------------------------ pins and errors


def test_pins_by_index_and_uuid_prefix_are_checked():
    facts = nv_pair()
    uuid1 = facts["gpus"][1]["uuid"]
    result = place(facts, model("a", environment={"CUDA_VISIBLE_DEVICES": uuid1[:12]}), model("b"))
    assert gpus_of(result) == {"a": [1], "b": [0]}
    assert result["placements"]["a"]["pinned"] is True
    errors = place(facts, model("a", environment={"CUDA_VISIBLE_DEVICES": "7"}))["errors"]
    assert errors[0].startswith("vllm_models[a]: environment.CUDA_VISIBLE_DEVICES names 7, which this host does not have")
    errors = place(facts, model("a", 2, environment={"CUDA_VISIBLE_DEVICES": "0"}))["errors"]
    assert "tensor_parallel_size x pipeline_parallel_size is 2 but environment.CUDA_VISIBLE_DEVICES pins 1 GPU(s)" in errors[0]
    errors = place(facts, model("a", environment={"CUDA_VISIBLE_DEVICES": "0"}), model("b", environment={"CUDA_VISIBLE_DEVICES": "0"}))["errors"]
    assert errors == ["vllm_models[b]: its pinned GPUs are already used: GPU 0 (a); pin other GPUs, or set gpu_sharing: true "
                      "on every instance that may share a GPU"]


def test_every_impossible_instance_is_reported():
    errors = place(nv_pair(), model("a", 4), model("b", 2), model("c", 1))["errors"]
    assert [e.split(":")[0] for e in errors] == ["vllm_models[a]", "vllm_models[c]"]


def test_no_gpus_and_bad_min_connection():
    unavailable = nvml.unavailable_facts(nvml.NvmlUnavailable("driver_not_loaded", "the NVIDIA kernel driver is not loaded", "modprobe"))
    result = place(unavailable, model("a"))
    assert result["errors"] == ["no GPU to place vLLM instances on (the NVIDIA kernel driver is not loaded); check gpu_validate's facts"]
    assert place(unavailable)["errors"] == []
    with pytest.raises(Exception, match="min_connection must be one of auto, NV, PIX"):
        place(nv_pair(), model("a"), min_connection="NVLINK")
    with pytest.raises(Exception, match="must be ansible_facts.nvidia"):
        vllm_placement.vllm_gpu_placement([model("a")], None)


def test_environment_gets_uuids_and_pins_stay():
    facts = nv_pair()
    models = [model("a", environment={"VLLM_LOGGING_LEVEL": "INFO"}), model("pinned", environment={"CUDA_VISIBLE_DEVICES": "0"})]
    result = place(facts, *models)
    applied = vllm_placement.vllm_gpu_environment(models, result)
    assert applied[0]["environment"] == {"VLLM_LOGGING_LEVEL": "INFO", "CUDA_VISIBLE_DEVICES": facts["gpus"][1]["uuid"]}
    assert applied[1] is models[1]
    assert models[0]["environment"] == {"VLLM_LOGGING_LEVEL": "INFO"}  # the input is not changed
    filters = vllm_placement.FilterModule().filters()
    assert filters == {"vllm_gpu_placement": vllm_placement.vllm_gpu_placement, "vllm_gpu_environment": vllm_placement.vllm_gpu_environment}


def test_numa_falls_back_to_cpu_affinity():
    host = gpu_placement.Host({"gpus": [{"index": 0, "numa_node": None, "numa_affinity": None, "cpu_affinity": "0-31"},
                                        {"index": 1, "numa_node": None, "numa_affinity": [1], "cpu_affinity": None}],
                               "topology": {"pairs": [], "nvlink_domains": [[0], [1]]}})
    assert (host.numa(0), host.numa(1)) == ("0-31", 1)
    assert (host.numa_node(0), host.numa_node(1)) == (None, 1)


def test_pipeline_stages_each_keep_their_tp_group_joined():
    # Bridged pairs: TP2 x PP2 takes both pairs, one stage per NVLink pair, stages in rank order.
    result = place(bridged_pairs(4), model("pp", 2, pipeline_parallel_size=2))
    entry = result["placements"]["pp"]
    assert (entry["gpus"], entry["stages"], entry["connection"]) == ([0, 1, 2, 3], [[0, 1], [2, 3]], "NV4")
    assert entry["cuda_visible_devices"].split(",") == entry["uuids"]
    # TP1 x PP2 needs no link between the stages.
    assert gpus_of(place(pcie_only(), model("pp", 1, pipeline_parallel_size=2))) == {"pp": [0, 1]}
    errors = place(nv_pair(), model("pp", 2, pipeline_parallel_size=2))["errors"]
    assert errors == ["vllm_models[pp]: tensor_parallel_size 2 x pipeline_parallel_size 2 needs 4 GPUs but this host has 2; "
                      "lower it or place the model on a larger host"]
    # Six mixed GPUs: a TP2 x PP2 instance and a TP2 one fit (a stage may sit in either domain).
    result = place(six_mixed(), model("pp", 2, pipeline_parallel_size=2), model("tp", 2))
    assert sorted(g for entry in result["placements"].values() for g in entry["gpus"]) == list(range(6))
    assert all(e["connection"].startswith("NV") for e in result["placements"].values())
