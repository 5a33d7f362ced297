# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""All-reduce bandwidth across a host's GPUs, as nccl-tests' ``all_reduce_perf`` reports it.

This file is a script: ``llmops.inference.gpu_fabric_test`` writes its source
to the target and runs it with the Python that serves the models (the one
with torch, for example vLLM's virtualenv). It starts one process per GPU
(``torch.multiprocessing``), joins them with ``torch.distributed`` (NCCL on
GPUs; gloo on CPUs, for testing without GPUs), checks one all-reduce's sum,
then times ``iterations`` in-place all-reduces per message size after
``warmup`` ones, and prints one JSON document on stdout:

    {"world_size": 2, "results": [{"size_bytes": ..., "time_us": ...,
     "algbw_gbps": ..., "busbw_gbps": ..., "correct": true}, ...], ...}

``algbw`` is bytes / time; ``busbw`` = algbw * 2 (n - 1) / n, the bandwidth
each link carries in a ring all-reduce (nccl-tests' PERFORMANCE.md), so it
can be compared with the hardware's link speed whatever the GPU count. The
time of one size is the slowest rank's. GB/s are 10^9 bytes per second.

It imports torch only when run, so the collection can import it anywhere.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

DTYPES = ("float32", "bfloat16")


def bus_factor(world_size):
    """nccl-tests' all-reduce bus bandwidth factor 2 (n - 1) / n."""
    return 2.0 * (world_size - 1) / world_size if world_size > 0 else 0.0


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _time_size(torch, dist, config, size_bytes, device):
    """Check one all-reduce's sum, then time ``iterations``; return this rank's seconds per all-reduce and correctness."""
    dtype = getattr(torch, config["dtype"])
    element = torch.tensor([], dtype=dtype).element_size()
    count = max(1, size_bytes // element)
    world, rank = dist.get_world_size(), dist.get_rank()
    buf = torch.full((count,), float(rank + 1), dtype=dtype, device=device)
    dist.all_reduce(buf)
    correct = bool(torch.all(buf == world * (world + 1) / 2).item())
    buf.uniform_(0.0, 1.0)
    for _step in range(config["warmup"]):
        dist.all_reduce(buf)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dist.barrier()
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _step in range(config["iterations"]):
            dist.all_reduce(buf)
        end.record()
        end.synchronize()
        seconds = start.elapsed_time(end) / 1000.0
    else:
        began = time.perf_counter()
        for _step in range(config["iterations"]):
            dist.all_reduce(buf)
        seconds = time.perf_counter() - began
    return seconds / config["iterations"], correct, count, count * element


def _worker(rank, config, port, queue):
    import torch  # noqa: PLC0415  # pylint: disable=import-error,import-outside-toplevel
    import torch.distributed as dist  # noqa: PLC0415  # pylint: disable=import-error,import-outside-toplevel

    world = config["world_size"]
    if config["device"] == "cuda":
        torch.cuda.set_device(rank)
        device, backend = torch.device("cuda", rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    dist.init_process_group(backend=backend, init_method="tcp://127.0.0.1:%d" % port, rank=rank, world_size=world)
    try:
        rows = []
        for size in config["sizes"]:
            seconds, correct, count, size_bytes = _time_size(torch, dist, config, size, device)
            # The slowest rank's time, and whether every rank summed right.
            stats = torch.tensor([seconds, 0.0 if correct else 1.0], dtype=torch.float64, device=device)
            dist.all_reduce(stats, op=dist.ReduceOp.MAX)
            seconds, wrong = float(stats[0].item()), bool(stats[1].item())
            algbw = size_bytes / seconds / 1e9
            rows.append({
                "size_bytes": size_bytes, "count": count, "time_us": round(seconds * 1e6, 2), "algbw_gbps": round(algbw, 2),
                "busbw_gbps": round(algbw * bus_factor(world), 2), "correct": not wrong,
            })
        if rank == 0:
            queue.put(rows)
    finally:
        dist.destroy_process_group()


def _describe(torch, config):
    info = {"torch_version": torch.__version__, "nccl_version": None, "gpus": []}
    if config["device"] == "cuda":
        version = torch.cuda.nccl.version()
        info["nccl_version"] = ".".join(str(part) for part in version) if isinstance(version, tuple) else str(version)
        for index in range(config["world_size"]):
            props = torch.cuda.get_device_properties(index)
            info["gpus"].append({"index": index, "name": props.name, "uuid": "GPU-%s" % props.uuid if getattr(props, "uuid", None) else None})
    return info


def run(config):
    """Measure; return the JSON-ready result. ``config``: device, world_size (0: every GPU), sizes, dtype, iterations, warmup."""
    import torch  # noqa: PLC0415  # pylint: disable=import-error,import-outside-toplevel
    import torch.multiprocessing as mp  # noqa: PLC0415  # pylint: disable=import-error,import-outside-toplevel

    config = dict(config)
    if config["device"] == "cuda":
        available = torch.cuda.device_count()
        if available < 1:
            raise RuntimeError("torch sees no CUDA GPU (torch %s, CUDA_VISIBLE_DEVICES=%r)" % (
                torch.__version__, os.environ.get("CUDA_VISIBLE_DEVICES")))
        config["world_size"] = config.get("world_size") or available
        if config["world_size"] > available:
            raise RuntimeError("asked for %d GPUs but torch sees %d" % (config["world_size"], available))
    else:
        config["world_size"] = config.get("world_size") or 2
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    began = time.time()
    mp.start_processes(_worker, args=(config, _free_port(), queue), nprocs=config["world_size"], join=True, start_method="spawn")
    result = {
        "world_size": config["world_size"], "device": config["device"], "dtype": config["dtype"],
        "iterations": config["iterations"], "warmup": config["warmup"], "bus_factor": bus_factor(config["world_size"]),
        "results": queue.get(), "seconds": round(time.time() - began, 1),
    }
    result.update(_describe(torch, config))
    return result


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    config = json.loads(argv[0])
    try:
        result = run(config)
    except Exception as exc:  # pylint: disable=broad-except
        result = {"error": "%s: %s" % (type(exc).__name__, exc)}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 1 if "error" in result else 0


if __name__ == "__main__":
    raise SystemExit(main())
