# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Checks of how the GPUs are joined: NVLink links up, links per GPU pair, connection type, Fabric Manager.

Called by ``nvml_checks.evaluate``; every failure names the GPU (pair) and the link.
"""

from __future__ import annotations

from ansible_collections.llmops.inference.plugins.module_utils.nvml_topology import CONNECTION_ORDER, connection_rank

TOPOLOGY_OPTIONS = (
    "require_all_nvlinks_up",
    "min_nvlinks_per_gpu_pair",
    "min_gpu_connection",
    "require_fabric_manager",
)

_CONNECTION_WORDS = {
    "NV": "NVLink",
    "PIX": "at most one PCIe switch",
    "PXB": "several PCIe switches, no host bridge",
    "PHB": "a PCIe host bridge (one CPU)",
    "NODE": "PCIe host bridges within one NUMA node",
    "SYS": "PCIe and the link between CPU sockets (SMP interconnect)",
}

_LINK_FIX = ("see 'nvidia-smi nvlink --status -i %d' and 'dmesg' (Xid 74 is an NVLink error); drain the GPU, "
             "reset it or reboot, and have the NVLink bridge, board or NVSwitch tray serviced if the link stays down")


def _link_name(link):
    if link.get("remote_gpu") is not None:
        peer = "GPU %d" % link["remote_gpu"]
    elif link.get("remote_type") == "switch":
        peer = "NVSwitch %s" % (link.get("remote_pci_bus_id") or "(bus unknown)")
    elif link.get("remote_pci_bus_id"):
        peer = "%s %s" % (link.get("remote_type") or "device", link["remote_pci_bus_id"])
    else:
        peer = "peer unknown"
    return "link %d (to %s)" % (link["link"], peer)


def _pair_name(facts, pair):
    i, j = pair["gpus"]
    gpus = facts["gpus"]
    return "GPU %d (%s) and GPU %d (%s)" % (i, gpus[i].get("pci_bus_id") or "bus unknown", j, gpus[j].get("pci_bus_id") or "bus unknown")


def _check_links_up(facts, make, where):
    results = []
    for gpu in facts["gpus"]:
        links = gpu.get("nvlinks")
        if links is None:
            msg = "%s: NVML reports no NVLink on this GPU; check skipped" % where(gpu)
            results.append(make("nvlinks_up", "not_supported", None, "all up", msg, gpu=gpu["index"]))
            continue
        down = [link for link in links if link["state"] != "up"]
        if not down:
            msg = "%s: all %d NVLink links are up" % (where(gpu), len(links))
            results.append(make("nvlinks_up", "passed", [], "all up", msg, gpu=gpu["index"]))
            continue
        msg = "%s: %d of %d NVLink links are not up: %s; %s" % (
            where(gpu), len(down), len(links), ", ".join(_link_name(link) for link in down), _LINK_FIX % gpu["index"])
        results.append(make("nvlinks_up", "failed", [link["link"] for link in down], "all up", msg, gpu=gpu["index"]))
    return results


def _down_links_of(facts, index):
    links = facts["gpus"][index].get("nvlinks") or []
    return [str(link["link"]) for link in links if link["state"] != "up"]


def _check_pair_links(facts, want, make):
    results = []
    for pair in facts["topology"]["pairs"]:
        have = pair["nvlinks"]
        name = _pair_name(facts, pair)
        if have >= want:
            msg = "%s are joined by %d active NVLink(s) (need >= %d)" % (name, have, want)
            results.append(make("min_nvlinks_per_gpu_pair", "passed", have, want, msg, gpus=list(pair["gpus"])))
            continue
        downs = ["GPU %d links %s" % (i, ",".join(_down_links_of(facts, i))) for i in pair["gpus"] if _down_links_of(facts, i)]
        msg = "%s are joined by %d active NVLink(s), need >= %d; the path between them is %s%s; %s" % (
            name, have, want, pair["pcie"] or "unknown",
            " (not up: %s)" % "; ".join(downs) if downs else "",
            _LINK_FIX % pair["gpus"][0] if downs else "place tensor-parallel groups only on GPUs joined by NVLink")
        results.append(make("min_nvlinks_per_gpu_pair", "failed", have, want, msg, gpus=list(pair["gpus"])))
    return results


def _check_connection(facts, want, make):
    results = []
    limit = connection_rank(want)
    for pair in facts["topology"]["pairs"]:
        have = pair["connection"]
        name = _pair_name(facts, pair)
        if have is None:
            msg = "%s: NVML does not report how these GPUs are joined; check skipped" % name
            results.append(make("min_gpu_connection", "not_supported", None, want, msg, gpus=list(pair["gpus"])))
            continue
        ok = connection_rank(have) <= limit
        kind = "NV" if have.startswith("NV") else have
        msg = "%s are joined by %s (%s)%s" % (
            name, have, _CONNECTION_WORDS.get(kind, "unknown"),
            "" if ok else ", worse than the required %s (%s); NVLink traffic between them is lost: check the links "
                          "(nvlinks_up) or keep tensor-parallel groups off this pair" % (want, _CONNECTION_WORDS[want]))
        results.append(make("min_gpu_connection", "passed" if ok else "failed", have, want, msg, gpus=list(pair["gpus"])))
    return results


def _check_fabric_manager(facts, make, where):
    """Fabric Manager where NVLinks reach NVSwitches.

    On Hopper and later NVML reports each GPU's fabric registration, which
    Fabric Manager completes: that decides. A GPU whose state is
    ``not_supported`` does not register here (seen on 2 x H200 in a VM whose
    NVSwitches the hypervisor manages, NVLink working); older GPUs and drivers
    do not answer at all. Then the nv-fabricmanager process decides, except
    that its absence next to ``not_supported`` states cannot be judged.
    """
    topology = facts["topology"]
    if not topology["nvswitch_links"]:
        msg = "no NVLink reaches an NVSwitch on this host, so Fabric Manager is not needed"
        return [make("fabric_manager", "passed", None, "running", msg)]
    fix = ("start NVIDIA Fabric Manager ('systemctl enable --now nvidia-fabricmanager'; package nvidia-fabricmanager "
           "of the driver's branch) and wait for it to register the GPUs")
    results = []
    for gpu in facts["gpus"]:
        state = gpu.get("fabric_state")
        if state in (None, "not_supported"):
            continue
        ok = state == "completed" and gpu.get("fabric_status") == "success"
        msg = "%s: NVSwitch fabric registration %s (status %s)%s" % (
            where(gpu), state, gpu.get("fabric_status"), "" if ok else "; " + fix)
        results.append(make("fabric_manager", "passed" if ok else "failed", state, "completed", msg, gpu=gpu["index"]))
    if results:
        return results
    running = topology.get("fabric_manager_running")
    links = topology["nvswitch_links"]
    if running:
        return [make("fabric_manager", "passed", True, "running", "%d NVLink links reach NVSwitches and nv-fabricmanager runs" % links)]
    if running is False and not any(gpu.get("fabric_state") == "not_supported" for gpu in facts["gpus"]):
        msg = "%d NVLink links reach NVSwitches but no nv-fabricmanager process runs; %s" % (links, fix)
        return [make("fabric_manager", "failed", False, "running", msg)]
    msg = ("%d NVLink links reach NVSwitches, but NVML reports no fabric registration for these GPUs and %s; expected where "
           "the NVSwitches are managed outside this machine (a VM); check skipped" % (
               links, "no nv-fabricmanager runs here" if running is False else "/proc cannot tell whether nv-fabricmanager runs"))
    return [make("fabric_manager", "not_supported", running, "running", msg)]


def check_topology(facts, thresholds, make, where):
    """Run the topology checks whose thresholds are set; ``make`` builds a result, ``where`` names a GPU."""
    if not facts.get("topology"):
        return []
    results = []
    if thresholds.get("require_all_nvlinks_up"):
        results.extend(_check_links_up(facts, make, where))
    want = thresholds.get("min_nvlinks_per_gpu_pair")
    if want is not None:
        results.extend(_check_pair_links(facts, want, make))
    want = thresholds.get("min_gpu_connection")
    if want:
        if want not in CONNECTION_ORDER:
            raise ValueError("min_gpu_connection must be one of %s" % ", ".join(CONNECTION_ORDER))
        results.extend(_check_connection(facts, want, make))
    if thresholds.get("require_fabric_manager"):
        results.extend(_check_fabric_manager(facts, make, where))
    return results
