"""A plain torch.distributed all-reduce loop, the yardstick for gpu_fabric_test.

Written independently of the collection's worker on purpose: started by torchrun
(not torch.multiprocessing), timed with the host clock around
torch.cuda.synchronize() (not CUDA events). Run:

    python -m torch.distributed.run --standalone --nproc-per-node=N plain_allreduce.py OUT.json

PLAIN_ITERS sets the timed all-reduces per size (default 20, like the module).
Prints one line per size and writes the rows (bus bandwidth = bytes / time *
2(n-1)/n, GB/s = 1e9 B/s, time = mean per all-reduce on the slowest rank) to OUT.json.
"""

import json
import os
import sys
import time

import torch
import torch.distributed as dist

SIZES = [1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20, 1 << 30]
ITERS, WARMUP = int(os.environ.get("PLAIN_ITERS", "20")), 5


def main():
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    cuda = torch.cuda.is_available()  # without GPUs (a dry run of this script) gloo on the CPU
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo")
    device = "cuda" if cuda else "cpu"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rows = []
    for size in SIZES if cuda else SIZES[:2]:
        x = torch.rand(size // 4, dtype=torch.float32, device=device)
        for _step in range(WARMUP):
            dist.all_reduce(x)
        sync()
        dist.barrier()
        sync()
        t0 = time.perf_counter()
        for _step in range(ITERS):
            dist.all_reduce(x)
        sync()
        per_op = torch.tensor([(time.perf_counter() - t0) / ITERS], dtype=torch.float64, device=device)
        dist.all_reduce(per_op, op=dist.ReduceOp.MAX)
        seconds = per_op.item()
        busbw = size / seconds / 1e9 * 2 * (world - 1) / world
        rows.append({"size_bytes": size, "time_us": round(seconds * 1e6, 2), "busbw_gbps": round(busbw, 2)})
        if rank == 0:
            print("%12d B  %10.1f us  busbw %8.2f GB/s" % (size, seconds * 1e6, busbw), flush=True)
    if rank == 0:
        with open(sys.argv[1], "w") as handle:
            json.dump({"world_size": world, "iterations": ITERS, "warmup": WARMUP, "torch_version": torch.__version__,
                       "nccl_version": ".".join(map(str, torch.cuda.nccl.version())) if cuda else None, "results": rows}, handle, indent=1)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
