"""Where does model_fetch's fresh-download time go? curl vs model_fetch vs model_fetch with hashing switched off.

    .venv/bin/python benchmarks/model_fetch/hash_cost.py [--size-gib 2] [--reps 3]

Same loopback nginx and random file as bench.py. "model_fetch, no hash" runs the
real engine (Range-capable transfer, writer thread, fsync, rename, manifest)
with StreamHasher replaced by a byte counter that reports the expected
digest: the difference to "model_fetch" is the cost of verifying, the
difference to curl (plus fsync) is the cost of the transfer machinery. Each
line: median wall seconds and median CPU seconds of the process (user+sys;
curl's as a child), interleaved repetitions.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
from bench import GiB, WORK, NginxHub, make_random_file, mf  # noqa: E402

from ansible_collections.llmops.inference.plugins.module_utils import model_fetch_transfer as transfer  # noqa: E402


class CountingHasher(mf.StreamHasher):
    expected = None

    def update(self, chunk):
        self.count += len(chunk)

    def digests(self):
        return {"sha256": self.expected}


def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-gib", type=float, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--chunk-kib", type=int, nargs="*", default=[], help="also run model_fetch with these buffer sizes")
    args = ap.parse_args()
    size = int(args.size_gib * GiB)
    src = WORK / ("src-%d.bin" % size)
    sha = make_random_file(src, size)
    CountingHasher.expected = sha
    shutil.rmtree(WORK / "srv-hc", ignore_errors=True)
    hub = NginxHub(WORK / "srv-hc").start()
    out = WORK / "out-hc"
    runs = {"curl -o, then fsync": [], "model_fetch": [], "model_fetch, no hash": []}
    runs.update({"model_fetch, %d KiB buffers" % k: [] for k in args.chunk_kib})
    try:
        commit = hub.add_repo("bench/hc", {"config.json": b"{}\n"}, link_files={bench.FILE: (src, sha)})
        url = "%s/bench/hc/resolve/%s/%s" % (hub.url, commit, bench.FILE)
        params = {"repo_id": "bench/hc", "endpoint": hub.url, "allow_patterns": [bench.FILE]}
        bench.warm(src)
        for _dummy in range(args.reps):
            for name, values in runs.items():
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                subprocess.run(["sync"], check=False)
                c0, t0 = cpu(), time.monotonic()
                if name.startswith("curl"):
                    subprocess.run(["curl", "-sS", "-o", str(out / bench.FILE), url], check=True)
                    fd = os.open(out / bench.FILE, os.O_RDONLY)
                    os.fsync(fd)
                    os.close(fd)
                elif name == "model_fetch":
                    mf.run(dict(params, dest=str(out), connections=1))  # the single-stream path this measures
                elif "KiB buffers" in name:
                    mf.run(dict(params, dest=str(out), connections=1, buffer_size=int(name.split()[1]) * 1024))
                else:
                    real = transfer.StreamHasher
                    transfer.StreamHasher = CountingHasher
                    try:
                        mf.run(dict(params, dest=str(out), connections=1))
                    finally:
                        transfer.StreamHasher = real
                values.append((time.monotonic() - t0, cpu() - c0))
                print("%-22s wall %6.2f s  cpu %6.2f s" % (name, *values[-1]), file=sys.stderr, flush=True)
    finally:
        hub.stop()
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(WORK / "srv-hc", ignore_errors=True)
    print("| %s, %d interleaved runs | median wall s | median CPU s |" % (bench.fmt_b(size), args.reps))
    print("|---|---|---|")
    for name, values in runs.items():
        print("| %s | %.2f | %.2f |" % (name, statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)))


if __name__ == "__main__":
    main()
