# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Assign a host's GPUs to vLLM instances from gpu_validate's topology facts.

Rules, in order of importance:

* An instance gets ``tensor_parallel_size`` x ``pipeline_parallel_size`` GPUs, named by UUID
  (``CUDA_VISIBLE_DEVICES=GPU-...``), so a renumbering after a GPU is lost or
  added cannot move it onto another instance's GPUs.
* Every two GPUs of one tensor-parallel group (a pipeline stage; the stages
  follow each other in ``CUDA_VISIBLE_DEVICES``, as vLLM numbers its ranks) are joined at least as well as
  ``min_connection`` (``NV``: NVLink, directly or through NVSwitches; else a
  PCIe path type of ``nvidia-smi topo -m``). ``auto`` asks for NVLink on a host
  that has NVLink and for one NUMA node (``NODE``) on a host that has none.
* Among the groups that qualify: the best worst-pair connection, then one NUMA
  node, then the NVLink domain with the fewest free GPUs (so large domains stay
  whole for large groups), then the most NVLinks, then the lowest indices.
* Two instances never share a GPU unless both set ``gpu_sharing: true``.
* An instance whose ``environment`` already sets ``CUDA_VISIBLE_DEVICES`` is
  pinned there; the pin is checked (GPUs exist, enough of them, no sharing).

Impossible placements are returned as errors naming the instance and why.
"""

from __future__ import annotations

import itertools
import math

from ansible_collections.llmops.inference.plugins.module_utils.nvml_topology import CONNECTION_ORDER, connection_rank

MIN_CONNECTIONS = ("auto",) + CONNECTION_ORDER
_MAX_COMBINATIONS = 20000


class Host:
    """The GPUs of one host, their pairwise connections and NUMA nodes, from ansible_facts.nvidia."""

    def __init__(self, facts):
        self.gpus = list(facts.get("gpus") or [])
        self.count = len(self.gpus)
        topology = facts.get("topology") or {}
        self.connection = {}
        self.nvlinks = {}
        for pair in topology.get("pairs") or []:
            i, j = pair["gpus"]
            self.connection[(i, j)] = self.connection[(j, i)] = pair.get("connection")
            self.nvlinks[(i, j)] = self.nvlinks[(j, i)] = pair.get("nvlinks") or 0
        self.domain_of = {}
        for number, domain in enumerate(topology.get("nvlink_domains") or [[gpu["index"]] for gpu in self.gpus]):
            for index in domain:
                self.domain_of[index] = number
        self.has_nvlink = any(self.nvlinks.values())

    def numa_node(self, index):
        """The GPU's NUMA node, else its one nearest node; None when NVML reports neither."""
        gpu = self.gpus[index]
        if gpu.get("numa_node") is not None:
            return gpu["numa_node"]
        nodes = gpu.get("numa_affinity") or []
        return nodes[0] if len(nodes) == 1 else None

    def numa(self, index):
        """What groups GPUs by NUMA node: the node, else the CPU list (same list, same node); None if unknown."""
        node = self.numa_node(index)
        return node if node is not None else (self.gpus[index].get("cpu_affinity") or None)

    def rank(self, i, j):
        return connection_rank(self.connection.get((i, j)))

    def worst(self, group):
        """The worst connection string inside ``group`` (None for one GPU)."""
        pairs = list(itertools.combinations(group, 2))
        if not pairs:
            return None
        return self.connection.get(max(pairs, key=lambda pair: self.rank(*pair)))

    def resolve(self, entry):
        """A CUDA_VISIBLE_DEVICES entry (index or UUID, possibly abbreviated) -> GPU index, or None."""
        entry = str(entry).strip()
        if entry.isdigit():
            index = int(entry)
            return index if index < self.count else None
        matches = [gpu["index"] for gpu in self.gpus if gpu.get("uuid") and str(gpu["uuid"]).startswith(entry)]
        return matches[0] if len(matches) == 1 else None


def effective_limit(host, min_connection):
    """The connection type a tensor-parallel group needs: ``auto`` -> NV with NVLink on the host, else NODE."""
    if min_connection in (None, "", "auto"):
        return "NV" if host.has_nvlink else "NODE"
    if min_connection not in CONNECTION_ORDER:
        raise ValueError("min_connection must be one of %s, got %r" % (", ".join(MIN_CONNECTIONS), min_connection))
    return min_connection


def instances_from_models(models):
    """vllm_models entries (present ones) -> placement requests."""
    requests = []
    for model in models or []:
        pinned = ((model.get("environment") or {}).get("CUDA_VISIBLE_DEVICES"))
        requests.append({
            "name": model.get("name"),
            "gpus": int(model.get("tensor_parallel_size") or 1),
            "stages": int(model.get("pipeline_parallel_size") or 1),
            "sharing": bool(model.get("gpu_sharing", False)),
            "pinned": [part for part in str(pinned).split(",") if part.strip()] if pinned not in (None, "") else None,
        })
    return requests


class _State:
    def __init__(self, host):
        self.users = {index: [] for index in range(host.count)}  # GPU -> [(name, sharing)]

    def exclusive(self, index):
        return any(not sharing for _name, sharing in self.users[index])

    def usable(self, index, sharing):
        return not self.users[index] or (sharing and not self.exclusive(index))

    def take(self, group, name, sharing):
        for index in group:
            self.users[index].append((name, sharing))

    def describe_used(self, indices):
        return ", ".join("GPU %d (%s)" % (i, ", ".join(name for name, _s in self.users[i])) for i in indices if self.users[i])


def _score(host, state, group, free):
    domain_free = sum(1 for i in free if host.domain_of.get(i) == host.domain_of.get(group[0]))
    nvlinks = sum(host.nvlinks.get(pair, 0) for pair in itertools.combinations(group, 2))
    sharers = sum(len(state.users[i]) for i in group)
    numa_nodes = len({host.numa(i) for i in group})
    worst = max([host.rank(*pair) for pair in itertools.combinations(group, 2)] or [0])
    return (worst, sharers, numa_nodes, domain_free, -nvlinks, list(group))


def _groups(host, free, size, limit):
    """Candidate groups of ``size`` GPUs from ``free`` whose every pair meets ``limit``."""
    if math.comb(len(free), size) <= _MAX_COMBINATIONS:
        candidates = itertools.combinations(free, size)
    else:  # very large hosts: consecutive GPUs within each NVLink domain and NUMA node
        candidates = (tuple(free[k:k + size]) for k in range(len(free) - size + 1))
    for group in candidates:
        if all(host.rank(i, j) <= limit for i, j in itertools.combinations(group, 2)):
            yield group


def _largest_joined(host, free, limit):
    """The largest set of ``free`` GPUs that are pairwise joined within ``limit`` (greedy over components)."""
    best = []
    for start in free:
        group = [start]
        for other in free:
            if other != start and all(host.rank(other, member) <= limit for member in group):
                group.append(other)
        if len(group) > len(best):
            best = group
    return sorted(best)


def _place_pinned(host, state, request, limit_word, errors):
    name = request["name"]
    indices = [host.resolve(entry) for entry in request["pinned"]]
    unknown = [entry for entry, index in zip(request["pinned"], indices) if index is None]
    if unknown:
        errors.append("vllm_models[%s]: environment.CUDA_VISIBLE_DEVICES names %s, which this host does not have (GPUs %s); "
                      "use indices 0-%d or the UUIDs of ansible_facts.nvidia.gpus" % (
                          name, ", ".join(unknown), ", ".join("%d=%s" % (g["index"], g.get("uuid")) for g in host.gpus), host.count - 1))
        return None
    total = request["gpus"] * request["stages"]
    if len(indices) < total:
        errors.append("vllm_models[%s]: tensor_parallel_size x pipeline_parallel_size is %d but environment.CUDA_VISIBLE_DEVICES "
                      "pins %d GPU(s); pin %d GPUs or lower tensor_parallel_size" % (name, total, len(indices), total))
        return None
    taken = [i for i in indices if not state.usable(i, request["sharing"])]
    if taken:
        errors.append("vllm_models[%s]: its pinned GPUs are already used: %s; pin other GPUs, or set gpu_sharing: true on "
                      "every instance that may share a GPU" % (name, state.describe_used(taken)))
        return None
    state.take(indices, name, request["sharing"])
    return _entry(host, indices, pinned=True, limit=limit_word, stage_size=request["gpus"])


def _place_free(host, state, request, limit_word, errors):
    name, size, sharing = request["name"], request["gpus"], request["sharing"]
    limit = connection_rank(limit_word) if size > 1 else len(CONNECTION_ORDER)
    chosen = []
    for _stage in range(request["stages"]):
        free = [i for i in range(host.count) if state.usable(i, sharing) and i not in chosen]
        groups = list(_groups(host, free, size, limit)) if size <= len(free) else []
        if not groups:
            errors.append(_why_not(host, state, request, [i for i in range(host.count) if state.usable(i, sharing)], limit_word))
            return None
        chosen.extend(min(groups, key=lambda g: _score(host, state, g, free)))
    state.take(chosen, name, sharing)
    return _entry(host, chosen, pinned=False, limit=limit_word, stage_size=size)


def _why_not(host, state, request, free, limit_word):
    name, size, total = request["name"], request["gpus"], request["gpus"] * request["stages"]
    what = "tensor_parallel_size %d" % size if request["stages"] == 1 else "tensor_parallel_size %d x pipeline_parallel_size %d" % (
        size, request["stages"])
    if total > host.count:
        return ("vllm_models[%s]: %s needs %d GPUs but this host has %d; lower it or place the model on a larger host"
                % (name, what, total, host.count))
    used = state.describe_used([i for i in range(host.count) if i not in free])
    if total > len(free):
        return ("vllm_models[%s]: needs %d GPU(s) but only %d are free (%s); remove or shrink another instance, or set "
                "gpu_sharing: true on the instances that may share a GPU" % (name, total, len(free), "in use: " + used if used else "none in use"))
    largest = _largest_joined(host, free, connection_rank(limit_word))
    return ("vllm_models[%s]: tensor_parallel_size %d needs %d GPUs joined by %s or better (vllm_gpu_placement_min_connection), "
            "but the largest such group of free GPUs is %d (GPU %s)%s; lower tensor_parallel_size, free GPUs of one NVLink domain, "
            "or accept a weaker connection with vllm_gpu_placement_min_connection" % (
                name, size, size, limit_word, len(largest), ", ".join(map(str, largest)) or "none",
                "; in use: " + used if used else ""))


def _entry(host, group, *, pinned, limit, stage_size=None):
    stage_size = stage_size or len(group)
    stages = [group[k:k + stage_size] for k in range(0, len(group), stage_size)]
    worst = [host.worst(stage) for stage in stages if len(stage) > 1]
    numa = sorted({host.numa_node(i) for i in group} - {None})
    cpus = {host.gpus[i].get("cpu_affinity") for i in group}
    uuids = [host.gpus[i].get("uuid") for i in group]
    return {
        "gpus": list(group),
        "uuids": uuids,
        "cuda_visible_devices": ",".join(str(u) for u in uuids) if all(uuids) else ",".join(map(str, group)),
        "connection": max(worst, key=connection_rank) if worst else None,
        "required_connection": limit if stage_size > 1 else None,
        "stages": stages,
        "numa_nodes": numa,
        "cpus": cpus.pop() if len(cpus) == 1 else None,
        "pinned": pinned,
        "shared_with": [],
    }


def place(instances, facts, min_connection="auto"):
    """Place ``instances`` (see :func:`instances_from_models`) on the GPUs of ``facts``.

    Returns ``{"placements": {name: entry}, "errors": [message], "min_connection": word}``.
    """
    host = Host(facts)
    errors, placements = [], {}
    if not facts.get("available", True) or host.count == 0:
        message = "no GPU to place vLLM instances on (%s); check gpu_validate's facts" % (facts.get("message") or "NVML found none")
        return {"placements": {}, "errors": [message] if instances else [], "min_connection": None}
    limit = effective_limit(host, min_connection)
    state = _State(host)
    order = [r for r in instances if r["pinned"]] + sorted((r for r in instances if not r["pinned"]), key=lambda r: (-r["gpus"], -r["stages"]))
    for request in order:
        if request["gpus"] < 1 or request["stages"] < 1:
            errors.append("vllm_models[%s]: tensor_parallel_size and pipeline_parallel_size must be 1 or more" % request["name"])
            continue
        place_one = _place_pinned if request["pinned"] else _place_free
        entry = place_one(host, state, request, limit, errors)
        if entry is not None:
            placements[request["name"]] = entry
    for name, entry in placements.items():
        entry["shared_with"] = sorted({other for i in entry["gpus"] for other, _s in state.users[i] if other != name})
    return {"placements": placements, "errors": errors, "min_connection": limit}


def apply(models, placement):
    """vllm_models with ``environment.CUDA_VISIBLE_DEVICES`` set from ``placement`` (pinned ones unchanged)."""
    result = []
    for model in models or []:
        entry = (placement.get("placements") or {}).get(model.get("name"))
        if entry is None or entry["pinned"]:
            result.append(model)
            continue
        environment = dict(model.get("environment") or {})
        environment["CUDA_VISIBLE_DEVICES"] = entry["cuda_visible_devices"]
        result.append(dict(model, environment=environment))
    return result
