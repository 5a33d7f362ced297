# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""How the GPUs of a host are joined: NVLink links, the PCIe path, CPU and NUMA affinity.

Part of the logic behind ``llmops.inference.gpu_validate`` (see ``nvml.py``).
Reads only. Everything NVML does not support on a device is ``None``.

* :func:`gpu_links` lists a GPU's NVLink links (state, version, the remote
  PCI bus id and device type).
* :func:`gpu_affinity` reads the CPUs and NUMA nodes nearest to a GPU and the
  GPU's fabric registration (Hopper and later, set by Fabric Manager on
  NVSwitch systems).
* :func:`host_topology` builds the GPU-to-GPU matrix that ``nvidia-smi topo -m``
  prints (``NV<count>`` or the PCIe path type), the NVLink domains and the
  NVSwitch / Fabric Manager state.
"""

from __future__ import annotations

import ctypes
import os

# nvml.h return codes used here (also in nvml.py).
_NOT_SUPPORTED = 3
_INVALID_ARGUMENT = 2
_FUNCTION_NOT_FOUND = 13
_UNSUPPORTED_CODES = (_NOT_SUPPORTED, _FUNCTION_NOT_FOUND)

NVLINK_MAX_LINKS = 18  # NVLink 4 and 5 (Hopper, Blackwell) have 18 links; later links answer InvalidArgument

# nvmlNvlinkVersion_t: what nvmlDeviceGetNvLinkVersion answers.
NVLINK_VERSIONS = {1: "1.0", 2: "2.0", 3: "2.2", 4: "3.0", 5: "3.1", 6: "4.0", 7: "5.0", 8: "6.0"}

# nvmlNvLinkDeviceType_t.
REMOTE_TYPES = {0: "gpu", 1: "ibmnpu", 2: "switch", 255: "unknown"}

# nvmlGpuTopologyLevel_t -> the words of `nvidia-smi topo -m`.
# INTERNAL (two GPUs on one board) has no word of its own there; it is the closest PCIe path.
PCIE_PATHS = {0: "PIX", 10: "PIX", 20: "PXB", 30: "PHB", 40: "NODE", 50: "SYS"}

# Connection types from best to worst, as ranked by `nvidia-smi topo -m`'s legend.
CONNECTION_ORDER = ("NV", "PIX", "PXB", "PHB", "NODE", "SYS")

# nvmlGpuFabricState_t.
FABRIC_STATES = {0: "not_supported", 1: "not_started", 2: "in_progress", 3: "completed"}

FABRIC_MANAGER_PROCESS = "nv-fabricmanager"
_AFFINITY_SCOPE_NODE = 0
_NUMA_SET_WORDS = 1  # 64 NUMA nodes


def _code(exc):
    return getattr(exc, "value", None)


def _is_nvml_error(pynvml, exc):
    base = getattr(pynvml, "NVMLError", None)
    return base is not None and isinstance(exc, base)


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def normalize_bus_id(bus_id):
    """'00000000:18:00.0' and '0000:18:00.0' -> '0000:18:00.0' (lower case); None stays None."""
    bus_id = _text(bus_id)
    if not bus_id:
        return None
    parts = str(bus_id).strip().lower().split(":")
    if len(parts) != 3:
        return str(bus_id).strip().lower()
    try:
        domain = int(parts[0], 16)
    except ValueError:
        return str(bus_id).strip().lower()
    return "%04x:%s:%s" % (domain, parts[1], parts[2])


def cpu_list(words, bits=64):
    """An affinity bit mask (list of machine words, lowest CPU first) -> '0-31,64-95'; None stays None."""
    if words is None:
        return None
    cpus = [word_index * bits + bit for word_index, word in enumerate(words) for bit in range(bits) if int(word) >> bit & 1]
    if not cpus:
        return ""
    ranges = []
    start = prev = cpus[0]
    for cpu in cpus[1:]:
        if cpu == prev + 1:
            prev = cpu
            continue
        ranges.append((start, prev))
        start = prev = cpu
    ranges.append((start, prev))
    return ",".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in ranges)


def parse_cpu_list(text):
    """'0-3,8' -> {0, 1, 2, 3, 8}; None or '' -> empty set."""
    cpus = set()
    for item in (text or "").split(","):
        part = item.strip()
        if not part:
            continue
        low, _sep, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def gpu_links(read, pynvml, handle):
    """The NVLink links of one GPU, or None when the GPU has no NVLink.

    Each link: ``link``, ``state`` (``up`` / ``down``), ``version`` (as
    ``4.0``), ``version_raw``, ``remote_pci_bus_id``, ``remote_type``
    (``gpu``, ``switch``, ``ibmnpu``, ``unknown`` or None). ``remote_gpu`` is
    filled in later by :func:`host_topology`.
    """
    first = read("nvlinks", "nvmlDeviceGetNvLinkState", handle, 0)
    if first is None:
        return None
    links = []
    for link in range(NVLINK_MAX_LINKS):
        if link == 0:
            state = first
        else:
            try:
                state = pynvml.nvmlDeviceGetNvLinkState(handle, link)
            except Exception as exc:  # pylint: disable=broad-except
                if not _is_nvml_error(pynvml, exc):
                    raise
                if _code(exc) == _INVALID_ARGUMENT:
                    break  # past the last link of this GPU
                state = None
        links.append(_link_facts(pynvml, handle, link, state))
    return links


def _quiet(pynvml, name, *args):
    """Call an NVML function; None on an NVML error or when the bindings lack it."""
    func = getattr(pynvml, name, None)
    if func is None:
        return None
    try:
        return func(*args)
    except Exception as exc:  # pylint: disable=broad-except
        if not _is_nvml_error(pynvml, exc):
            raise
        return None


def _link_facts(pynvml, handle, link, state):
    version = _quiet(pynvml, "nvmlDeviceGetNvLinkVersion", handle, link)
    remote = _quiet(pynvml, "nvmlDeviceGetNvLinkRemotePciInfo", handle, link)
    remote_type = _quiet(pynvml, "nvmlDeviceGetNvLinkRemoteDeviceType", handle, link)
    return {
        "link": link,
        "state": None if state is None else ("up" if int(state) else "down"),
        "version": NVLINK_VERSIONS.get(version) if version is not None else None,
        "version_raw": version,
        "remote_pci_bus_id": normalize_bus_id(getattr(remote, "busId", None)) if remote is not None else None,
        "remote_type": REMOTE_TYPES.get(remote_type, "unknown") if remote_type is not None else None,
        "remote_gpu": None,
    }


def _fabric(read, pynvml, handle):
    """The GPU's fabric info: the versioned call (v2, as nvidia-smi reads it) first, else the first one."""
    info_cls = getattr(pynvml, "c_nvmlGpuFabricInfo_v2_t", None)
    version = getattr(pynvml, "nvmlGpuFabricInfo_v2", None)
    if info_cls is not None and version is not None and hasattr(pynvml, "nvmlDeviceGetGpuFabricInfoV"):
        info = info_cls()
        info.version = version
        try:
            pynvml.nvmlDeviceGetGpuFabricInfoV(handle, ctypes.byref(info))
            return info
        except Exception as exc:  # pylint: disable=broad-except
            if not _is_nvml_error(pynvml, exc):
                raise
            if _code(exc) != _FUNCTION_NOT_FOUND:  # a driver without the versioned call falls back below
                if _code(exc) in _UNSUPPORTED_CODES:
                    read.unsupported.append("fabric")
                else:
                    read.errors["fabric"] = str(exc)
                return None
    info_cls = getattr(pynvml, "c_nvmlGpuFabricInfo_t", None)
    if info_cls is None:
        read.unsupported.append("fabric")
        return None
    info = info_cls()
    if read("fabric", "nvmlDeviceGetGpuFabricInfo", handle, ctypes.byref(info)) is None:
        return None
    return info


def gpu_affinity(read, pynvml, handle, cpu_count=None):
    """``cpu_affinity`` ('0-31'), ``numa_affinity`` ([0]), ``fabric_state``, ``fabric_status``, ``fabric_clique_id``."""
    words = max(1, ((cpu_count or os.cpu_count() or 64) + 63) // 64)
    cpus = read("cpu_affinity", "nvmlDeviceGetCpuAffinity", handle, words)
    nodes = read("numa_affinity", "nvmlDeviceGetMemoryAffinity", handle, _NUMA_SET_WORDS, _AFFINITY_SCOPE_NODE)
    fabric = _fabric(read, pynvml, handle)
    numa = None
    if nodes is not None:
        numa = sorted(parse_cpu_list(cpu_list(list(nodes))))
    return {
        "cpu_affinity": cpu_list(list(cpus)) if cpus is not None else None,
        "numa_affinity": numa,
        "fabric_state": FABRIC_STATES.get(int(fabric.state), "unknown_%s" % fabric.state) if fabric is not None else None,
        "fabric_status": ("success" if int(fabric.status) == 0 else "nvml_error_%d" % int(fabric.status)) if fabric is not None else None,
        "fabric_clique_id": int(fabric.cliqueId) if fabric is not None else None,
    }


def fabric_manager_running(proc="/proc"):
    """True when an nv-fabricmanager process runs here; None when /proc cannot be read."""
    try:
        entries = os.listdir(proc)
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "comm")) as handle:
                if handle.read().strip() == FABRIC_MANAGER_PROCESS:
                    return True
        except OSError:
            continue
    return False


def _pcie_path(pynvml, handle_a, handle_b):
    level = _quiet(pynvml, "nvmlDeviceGetTopologyCommonAncestor", handle_a, handle_b)
    if level is None:
        return None
    return PCIE_PATHS.get(int(level), "unknown_%s" % level)


def _up(links):
    return [link for link in links or [] if link["state"] == "up"]


def _direct(gpu_a, gpu_b):
    bus_b = normalize_bus_id(gpu_b.get("pci_bus_id"))
    return len([link for link in _up(gpu_a.get("nvlinks")) if bus_b and link["remote_pci_bus_id"] == bus_b])


def _nvlinks_between(gpu_a, gpu_b):
    """Active NVLinks between two GPUs: direct links (both ends up), or through NVSwitches (the fewer of the two sides)."""
    ends = [_direct(a, b) for a, b in ((gpu_a, gpu_b), (gpu_b, gpu_a)) if a.get("nvlinks") is not None]
    if any(ends):
        return min(ends)
    switch_a = len([link for link in _up(gpu_a.get("nvlinks")) if link["remote_type"] == "switch"])
    switch_b = len([link for link in _up(gpu_b.get("nvlinks")) if link["remote_type"] == "switch"])
    return min(switch_a, switch_b)


def connection_rank(connection):
    """'NV18' -> 0, 'PIX' -> 1 ... 'SYS' -> 5; None (unknown) -> len(CONNECTION_ORDER)."""
    if not connection:
        return len(CONNECTION_ORDER)
    if connection.startswith("NV"):
        return 0
    return CONNECTION_ORDER.index(connection) if connection in CONNECTION_ORDER else len(CONNECTION_ORDER)


def _resolve_remotes(gpus):
    by_bus = {normalize_bus_id(gpu.get("pci_bus_id")): gpu["index"] for gpu in gpus if gpu.get("pci_bus_id")}
    for gpu in gpus:
        for link in gpu.get("nvlinks") or []:
            remote = by_bus.get(link["remote_pci_bus_id"])
            link["remote_gpu"] = remote
            if remote is not None and link["remote_type"] is None:
                link["remote_type"] = "gpu"


def _domains(count, pairs):
    """Connected components of the GPUs joined by NVLink, as sorted index lists."""
    parent = list(range(count))

    def find(node):
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for pair in pairs:
        if pair["nvlinks"]:
            a, b = pair["gpus"]
            parent[find(a)] = find(b)
    groups = {}
    for node in range(count):
        groups.setdefault(find(node), []).append(node)
    return sorted(groups.values())


def host_topology(pynvml, handles, gpus, fabric_manager=None):
    """The host's GPU topology from the per-GPU facts and NVML's PCIe answers.

    ``handles`` are the NVML handles in index order (None for a GPU that could
    not be opened). Returns ``matrix`` (list of rows, ``X`` on the diagonal,
    ``NV<n>`` or a PCIe path type, None where unknown), ``pairs``,
    ``nvlink_domains``, ``nvswitch_links`` and ``fabric_manager_running``.
    """
    _resolve_remotes(gpus)
    count = len(gpus)
    matrix = [["X" if i == j else None for j in range(count)] for i in range(count)]
    pairs = []
    for i in range(count):
        for j in range(i + 1, count):
            pcie = None
            if handles[i] is not None and handles[j] is not None:
                pcie = _pcie_path(pynvml, handles[i], handles[j])
            nvlinks = _nvlinks_between(gpus[i], gpus[j])
            connection = "NV%d" % nvlinks if nvlinks else pcie
            matrix[i][j] = matrix[j][i] = connection
            pairs.append({"gpus": [i, j], "nvlinks": nvlinks, "pcie": pcie, "connection": connection})
    switch_links = sum(1 for gpu in gpus for link in _up(gpu.get("nvlinks")) if link["remote_type"] == "switch")
    if fabric_manager is None:
        fabric_manager = fabric_manager_running
    return {
        "matrix": matrix,
        "pairs": pairs,
        "nvlink_domains": _domains(count, pairs),
        "nvswitch_links": switch_links,
        "fabric_manager_running": fabric_manager() if switch_links else None,
    }


def matrix_text(facts):
    """The matrix as `nvidia-smi topo -m` lays it out (GPU rows, CPU and NUMA affinity columns)."""
    gpus = facts.get("gpus") or []
    matrix = (facts.get("topology") or {}).get("matrix") or []
    names = ["GPU%d" % gpu["index"] for gpu in gpus]
    lines = ["\t" + "\t".join(names + ["CPU Affinity", "NUMA Affinity"])]
    for gpu, row in zip(gpus, matrix):
        numa = gpu.get("numa_affinity")
        cells = [cell or "?" for cell in row] + [gpu.get("cpu_affinity") or "N/A", ",".join(map(str, numa)) if numa else "N/A"]
        lines.append("GPU%d\t%s" % (gpu["index"], "\t".join(cells)))
    return "\n".join(lines)
