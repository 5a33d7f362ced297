"""Benchmark llmops.inference.model_fetch against curl, ansible.builtin.get_url and huggingface_hub.

Run from the repository root with the controller venv:

    .venv/bin/python benchmarks/model_fetch/bench.py [--size-gib 2] [--reps 3] [--big-gib 20] [--out benchmarks/model_fetch/results.md]

Everything is local: one nginx on 127.0.0.1 (the same Hub-shaped server as the
integration tests) serves a file of real random bytes (AES-CTR keystream, not
sparse). Each tool downloads it into an empty directory (fresh), then runs
again on the complete directory (re-run). For every run we record wall time,
time until the data is on disk (wall + sync), and the bytes the tool's process
tree read: read_bytes (from storage) and rchar (all read() calls, page cache
included) from /proc/PID/io of a wrapper shell, which includes its waited-for
children. Before a re-run the destination file is evicted from the page cache
(fsync + posix_fadvise DONTNEED), so a tool that re-reads the file shows it in
read_bytes.

Big-file check (--big-gib): a file of that size is created, hard-linked into
the destination (no second copy on disk), adopted by one model_fetch run (which
hashes it once and writes the manifest), evicted from the page cache, then
re-run: the re-run must read no model bytes. Everything is deleted right after.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
CACHE = Path(os.environ.get("LLMOPS_CACHE_DIR", REPO / ".cache"))
sys.path.insert(0, str(CACHE / "collections"))

from ansible_collections.llmops.inference.plugins.module_utils import model_fetch as mf  # noqa: E402
from model_fetch_servers import NginxHub  # noqa: E402

WORK = CACHE / "bench-model-fetch"
VENV_PY = REPO / ".venv" / "bin" / "python"
ANSIBLE = REPO / ".venv" / "bin" / "ansible"
HF_VENV = WORK / "hf-venv"
GiB = 1024 ** 3
REPO_ID = "bench/model"
FILE = "model.safetensors"


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def make_random_file(path, size):
    """Random bytes from openssl's AES-CTR keystream (fast, incompressible, not sparse); returns sha256."""
    stamp = path.with_suffix(".sha256")
    if path.exists() and path.stat().st_size == size and stamp.exists():
        return stamp.read_text().split()[0]
    log("creating %s (%d GiB of random data)" % (path, size // GiB))
    h = hashlib.sha256()
    remaining = size
    keystream = ["openssl", "enc", "-aes-128-ctr", "-pass", "pass:llmops-bench-%d" % size, "-nosalt", "-pbkdf2"]
    with open("/dev/zero", "rb") as zero, \
            subprocess.Popen(keystream, stdin=zero, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc, \
            open(path, "wb") as out:
        while remaining:
            chunk = proc.stdout.read(min(8 << 20, remaining))
            h.update(chunk)
            out.write(chunk)
            remaining -= len(chunk)
        proc.kill()
    stamp.write_text(h.hexdigest() + "\n")
    return h.hexdigest()


def evict(path):
    """Drop one file's pages from the page cache (after writing them back)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def warm(path):
    with open(path, "rb", buffering=0) as f:
        while f.read(8 << 20):
            pass


def measured(cmd, env=None):
    """Run cmd under a wrapper shell; returns wall, wall+sync, read_bytes, rchar, rc, output."""
    script = '"$@"; rc=$?; echo "@@IO $(grep -E "^(rchar|read_bytes):" /proc/$$/io | tr "\\n" " ")"; exit $rc'
    t0 = time.monotonic()
    proc = subprocess.run(["bash", "-c", script, "bench"] + [str(c) for c in cmd], capture_output=True, text=True, env=env, check=False)
    wall = time.monotonic() - t0
    subprocess.run(["sync"], check=False)
    synced = time.monotonic() - t0
    m = re.search(r"@@IO rchar: (\d+) read_bytes: (\d+)", proc.stdout)
    if proc.returncode != 0 or not m:
        raise RuntimeError("command failed (%s): %s\n%s\n%s" % (proc.returncode, " ".join(map(str, cmd)), proc.stdout[-3000:], proc.stderr[-3000:]))
    return {"wall": wall, "wall_sync": synced, "rchar": int(m.group(1)), "read_bytes": int(m.group(2)), "stdout": proc.stdout}


def ansible_env():
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(CACHE / "collections"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
                ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
                ANSIBLE_NOCOLOR="1")


def ansible_cmd(module, args):
    cmd = [ANSIBLE, "localhost", "-c", "local", "-m", module, "-e", "ansible_python_interpreter=%s" % VENV_PY]
    return cmd + (["-a", json.dumps(args)] if args else [])


def ansible_result(stdout):
    text = stdout.split("@@IO")[0]
    return json.loads(text)["plays"][0]["tasks"][0]["hosts"]["localhost"]


def ensure_hf_venv():
    py = HF_VENV / "bin" / "python"
    if not py.exists():
        log("creating throwaway venv with huggingface_hub at %s" % HF_VENV)
        subprocess.run([sys.executable, "-m", "venv", str(HF_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "huggingface_hub"], check=True)
    version = subprocess.run([str(py), "-c", "import huggingface_hub; print(huggingface_hub.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    return py, version


HF_SCRIPT = """
import sys
from huggingface_hub import hf_hub_download
print(hf_hub_download(sys.argv[1], sys.argv[2], revision=sys.argv[3], endpoint=sys.argv[4], local_dir=sys.argv[5]))
"""


def openssl_sha256_rate(elapsed=False):
    """openssl's own figure: by default bytes per second of user CPU time; with -elapsed, of wall time."""
    cmd = ["openssl", "speed"] + (["-elapsed"] if elapsed else []) + ["-evp", "sha256", "-bytes", str(8 << 20), "-seconds", "3"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.search(r"^sha256\s+([\d.]+)k", out, re.M)
    return float(m.group(1)) * 1000  # openssl reports 1000s of bytes per second


def module_hash_rate(path):
    """The module's hash_file over a file in the page cache: (bytes per wall second, bytes per CPU second)."""
    warm(path)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    mf.hash_file(str(path))
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    size = os.path.getsize(path)
    return size / wall, size / cpu


def fmt_s(x):
    return "%.2f" % x


def fmt_b(n):
    if n >= GiB:
        return "%.2f GiB" % (n / GiB)
    if n >= 1 << 20:
        return "%.1f MiB" % (n / (1 << 20))
    if n >= 1024:
        return "%.0f KiB" % (n / 1024)
    return "%d B" % n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-gib", type=float, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--big-gib", type=float, default=20, help="0 to skip the big-file re-run check")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "model_fetch" / "results.md"))
    ap.add_argument("--keep", action="store_true", help="keep the 2 GiB source file for the next run")
    args = ap.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    size = int(args.size_gib * GiB)
    src = WORK / ("src-%d.bin" % size)
    sha = make_random_file(src, size)
    hf_py, hf_version = ensure_hf_venv()
    shutil.rmtree(WORK / "srv", ignore_errors=True)
    hub = NginxHub(WORK / "srv").start()
    results = {}
    big = None
    try:
        commit = hub.add_repo(REPO_ID, {"config.json": b'{"model_type": "bench"}\n'}, link_files={FILE: (src, sha)})
        url = "%s/%s/resolve/%s/%s" % (hub.url, REPO_ID, commit, FILE)
        warm(src)

        def dest_for(tool):
            return WORK / "out" / tool

        tools = {
            "curl -o": lambda d: ["curl", "-sS", "-o", d / FILE, url],
            "get_url (checksum)": lambda d: ansible_cmd("ansible.builtin.get_url", {"url": url, "dest": str(d / FILE), "checksum": "sha256:" + sha}),
            "hf_hub_download": lambda d: [hf_py, "-c", HF_SCRIPT, REPO_ID, FILE, commit, hub.url, d],
            "model_fetch (ansible)": lambda d: ansible_cmd("llmops.inference.model_fetch",
                                                           {"repo_id": REPO_ID, "endpoint": hub.url, "dest": str(d), "allow_patterns": [FILE]}),
            "model_fetch (Python API)": lambda d: [VENV_PY, "-c",
                                                   "import sys; sys.path.insert(0, %r); from ansible_collections.llmops.inference.plugins."
                                                   "module_utils.model_fetch import run; r = run({'repo_id': %r, 'endpoint': %r, 'dest': %r, "
                                                   "'allow_patterns': [%r]}); print(r['files'][0]['status'])"
                                                   % (str(CACHE / "collections"), REPO_ID, hub.url, str(d), FILE)],
        }
        env_hf = dict(os.environ, HF_HOME=str(WORK / "hf-home"), HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1",
                      HF_HUB_ENABLE_HF_TRANSFER="0")
        ping = [measured(ansible_cmd("ansible.builtin.ping", {}), env=ansible_env())["wall"] for _dummy in range(2)]
        results["ansible ping (fixed overhead)"] = {"fresh": [{"wall": min(ping), "wall_sync": min(ping), "rchar": 0, "read_bytes": 0}], "rerun": []}

        for rep in range(args.reps):
            for tool, make in tools.items():
                d = dest_for(re.sub(r"[^a-z]+", "-", tool.lower()).strip("-"))
                shutil.rmtree(d, ignore_errors=True)
                shutil.rmtree(WORK / "hf-home", ignore_errors=True)
                d.mkdir(parents=True)
                subprocess.run(["sync"], check=False)
                env = env_hf if tool == "hf_hub_download" else ansible_env()
                log("rep %d: %s fresh" % (rep + 1, tool))
                fresh = measured(make(d), env=env)
                got = hashlib.sha256()
                if rep == 0:  # check the bytes once per tool (outside the timing)
                    with open(d / FILE, "rb") as f:
                        while chunk := f.read(8 << 20):
                            got.update(chunk)
                    assert got.hexdigest() == sha, tool
                evict(d / FILE)
                log("rep %d: %s re-run" % (rep + 1, tool))
                rerun = measured(make(d), env=env) if tool != "curl -o" else None
                if tool.startswith("model_fetch (ansible)"):
                    res = ansible_result(rerun["stdout"])
                    assert res["changed"] is False and res["bytes_transferred"] == 0, res
                    fres = ansible_result(fresh["stdout"])
                    fresh["module_throughput"] = fres["throughput"]
                r = results.setdefault(tool, {"fresh": [], "rerun": []})
                r["fresh"].append(fresh)
                if rerun:
                    r["rerun"].append(rerun)
                shutil.rmtree(d, ignore_errors=True)

        log("hash throughput: openssl speed vs the module's hash_file")
        rates = {"openssl": [], "openssl_elapsed": [], "module": [], "module_cpu": []}
        for _dummy in range(3):
            rates["openssl"].append(openssl_sha256_rate())
            rates["openssl_elapsed"].append(openssl_sha256_rate(elapsed=True))
            wall_rate, cpu_rate = module_hash_rate(src)
            rates["module"].append(wall_rate)
            rates["module_cpu"].append(cpu_rate)
        results["hash"] = rates

        if args.big_gib:
            big = big_file_check(hub, int(args.big_gib * GiB))
    finally:
        hub.stop()
        shutil.rmtree(WORK / "out", ignore_errors=True)
        shutil.rmtree(WORK / "srv", ignore_errors=True)
        shutil.rmtree(WORK / "hf-home", ignore_errors=True)
        if not args.keep:
            for p in WORK.glob("src-*"):
                p.unlink()

    write_report(args, size, results, big, hf_version)


def big_file_check(hub, size):
    """Create, adopt, evict, re-run, delete: a re-run on SIZE bytes reads no model bytes."""
    src = WORK / "big.bin"
    d = WORK / "out" / "big"
    try:
        t0 = time.monotonic()
        sha = make_random_file(src, size)
        created = time.monotonic() - t0
        commit = hub.add_repo("bench/big", {"config.json": b"{}\n"}, link_files={FILE: (src, sha)})
        d.mkdir(parents=True, exist_ok=True)
        os.link(src, d / FILE)  # the same bytes, no second copy on disk
        args = {"repo_id": "bench/big", "endpoint": hub.url, "dest": str(d), "revision": commit}
        evict(src)
        log("big: adopting %d GiB (one hashing pass)" % (size // GiB))
        adopt = measured(ansible_cmd("llmops.inference.model_fetch", args), env=ansible_env())
        ares = ansible_result(adopt["stdout"])
        evict(src)
        log("big: re-run")
        rerun = measured(ansible_cmd("llmops.inference.model_fetch", args), env=ansible_env())
        rres = ansible_result(rerun["stdout"])
        assert rres["changed"] is False and {f["status"] for f in rres["files"]} == {"present"}, rres
        return {"size": size, "created_s": created, "adopt": adopt, "adopt_status": {f["path"]: f["status"] for f in ares["files"]},
                "rerun": rerun, "rerun_network_used": rres["network_used"]}
    finally:
        shutil.rmtree(d, ignore_errors=True)
        for p in (src, src.with_suffix(".sha256")):
            if p.exists():
                p.unlink()
        shutil.rmtree(hub.www / "bench" / "big", ignore_errors=True)


def write_report(args, size, results, big, hf_version):
    med = statistics.median
    lines = []
    lines.append("## Run of %s (generated by bench.py)\n" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    lines.append("Host: %s, %d CPUs (shared with other engineers' jobs: figures are noisy), Python %s, huggingface_hub %s, %s.\n"
                 % (platform.machine(), os.cpu_count(), platform.python_version(), hf_version,
                    subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False).stderr.strip()))
    lines.append("File: %s of random bytes served by nginx on 127.0.0.1 (source warm in the page cache). Median of %d runs; "
                 "min-max in brackets.\n" % (fmt_b(size), args.reps))
    lines.append("| tool | fresh wall s | fresh wall+sync s | fresh read_bytes | re-run wall s | re-run read_bytes | re-run rchar |")
    lines.append("|---|---|---|---|---|---|---|")
    for tool, r in results.items():
        if tool == "hash":
            continue
        f = r["fresh"]
        fw = [x["wall"] for x in f]
        fs = [x["wall_sync"] for x in f]
        fresh = (tool, fmt_s(med(fw)), fmt_s(min(fw)), fmt_s(max(fw)), fmt_s(med(fs)), fmt_b(int(med([x["read_bytes"] for x in f]))))
        row = "| %s | %s [%s-%s] | %s | %s |" % fresh
        if r["rerun"]:
            rw = [x["wall"] for x in r["rerun"]]
            rerun = (fmt_s(med(rw)), fmt_s(min(rw)), fmt_s(max(rw)),
                     fmt_b(int(med([x["read_bytes"] for x in r["rerun"]]))), fmt_b(int(med([x["rchar"] for x in r["rerun"]]))))
            row += " %s [%s-%s] | %s | %s |" % rerun
        else:
            row += " n/a | n/a | n/a |"
        lines.append(row)
    lines.append("")
    if "curl -o" in results:
        c = med([x["wall"] for x in results["curl -o"]["fresh"]])
        cs = med([x["wall_sync"] for x in results["curl -o"]["fresh"]])
        for tool in ("model_fetch (ansible)", "model_fetch (Python API)", "get_url (checksum)", "hf_hub_download"):
            if tool in results:
                w = med([x["wall"] for x in results[tool]["fresh"]])
                ws = med([x["wall_sync"] for x in results[tool]["fresh"]])
                lines.append("- %s fresh / curl: %.2fx wall, %.2fx wall+sync" % (tool, w / c, ws / cs))
    h = results.get("hash")
    if h:
        o, oe, m, mc = (med(h[k]) for k in ("openssl", "openssl_elapsed", "module", "module_cpu"))
        lines.append("- sha256, medians of 3 interleaved runs: `openssl speed -evp sha256` (8 MiB blocks, per user-CPU second) %.0f MB/s, "
                     "with `-elapsed` (per wall second) %.0f MB/s; the module's hash_file over the %s file in the page cache "
                     "%.0f MB/s wall = **%.0f%% of openssl's figure** (%.0f%% of openssl -elapsed measured alongside); per CPU "
                     "second (user+sys, including the copy out of the page cache) %.0f MB/s."
                     % (o / 1e6, oe / 1e6, fmt_b(size), m / 1e6, 100 * m / o, 100 * m / oe, mc / 1e6))
        lines.append("  Runs: openssl %s; openssl -elapsed %s; module wall %s"
                     % tuple(", ".join("%.0f" % (x / 1e6) for x in h[k]) for k in ("openssl", "openssl_elapsed", "module")))
    if big:
        a, r = big["adopt"], big["rerun"]
        lines.append("- %s file (created in %.0f s, hard-linked into the destination, deleted after): first run hashed it once "
                     "(status %s) in %.1f s, read_bytes %s; re-run (page cache evicted) %.2f s, read_bytes %s, rchar %s, "
                     "network used: %s"
                     % (fmt_b(big["size"]), big["created_s"], ", ".join(sorted(set(big["adopt_status"].values()))), a["wall"],
                        fmt_b(a["read_bytes"]), r["wall"], fmt_b(r["read_bytes"]), fmt_b(r["rchar"]), big["rerun_network_used"]))
    lines.append("")
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    header = "# model_fetch benchmark results\n\nMethod: see README.md beside this file. Newest run first.\n\n"
    old = out.read_text() if out.exists() else header
    if not old.startswith(header):
        old = header + old
    out.write_text(header + text + "\n" + old[len(header):])
    (WORK / "last-results.json").write_text(json.dumps(dict(results), default=str, indent=1))


if __name__ == "__main__":
    main()
