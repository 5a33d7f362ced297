"""Benchmark model_fetch's parallel ranges against curl, aria2c and huggingface_hub + hf_transfer.

Run from the repository root with the controller venv (not in CI: it moves tens of GB through loopback):

    .venv/bin/python benchmarks/model_fetch/parallel.py [--size-gib 2] [--reps 3] [--rate 50m]

One 2 GiB file of random bytes is served by two local nginx instances on 127.0.0.1, the same tree: one caps
each request with ``limit_rate`` (50 MB/s by default, as a hub or CDN caps each connection), one does not.

Capped: curl (one connection), ``aria2c -x8 -s8`` (Debian's aria2, installed with apt-get when missing),
huggingface_hub's hf_hub_download with hf_transfer enabled (a throwaway venv from requirements-bench.txt,
never the controller venv) and model_fetch (its Python API in a fresh process, default options, plus a
variant with 256 MiB chunks, see README.md). Uncapped: model_fetch with its defaults against
``connections: 1`` (the single-stream path of the previous release), and curl.

For every run: wall time, bytes read from storage by the tool's process tree (``read_bytes`` of
/proc/PID/io of a wrapper shell, which includes waited-for children), and the sha256: model_fetch verifies
while downloading (its result is checked against the known sha256); the other tools do not verify, so
``sha256sum`` runs after them and its time is shown separately. Tools alternate order on each repetition.

Then the resume check: a capped model_fetch download is killed with SIGKILL at about 40 %, and re-run; the
bytes nginx sent on the re-run (its access log) are compared with the bytes the saved range state lacked.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import CACHE, FILE, GiB, REPO_ID, VENV_PY, WORK, NginxHub, fmt_b, log, make_random_file, measured, mf  # noqa: E402

from ansible_collections.llmops.inference.plugins.module_utils import model_fetch_ranges as mr  # noqa: E402

HFT_VENV = WORK / "hft-venv"
REQUIREMENTS = Path(__file__).resolve().parent / "requirements-bench.txt"
MB = 1000 * 1000

MF_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.llmops.inference.plugins.module_utils import model_fetch as mf
res = mf.run(json.loads(sys.argv[2]))
print(json.dumps({"sha256": res["files"][0]["sha256"], "bytes": res["bytes_transferred"], "conn": res["files"][0].get("connections")}))
"""

HF_SCRIPT = """
import sys
from huggingface_hub import hf_hub_download
print(hf_hub_download(sys.argv[1], sys.argv[2], revision=sys.argv[3], endpoint=sys.argv[4], local_dir=sys.argv[5]))
"""


def ensure_aria2c():
    if not shutil.which("aria2c"):
        log("installing Debian's aria2 (apt-get)")
        subprocess.run(["apt-get", "install", "-y", "-q", "aria2"], check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run(["aria2c", "--version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0]


def ensure_hft_venv():
    py = HFT_VENV / "bin" / "python"
    if not py.exists():
        log("creating a throwaway venv with %s at %s" % (REQUIREMENTS.name, HFT_VENV))
        subprocess.run([sys.executable, "-m", "venv", str(HFT_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True)
    code = "import huggingface_hub, hf_transfer; print(huggingface_hub.__version__, hf_transfer.__version__)"
    return py, subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def sha256sum(path):
    t0 = time.monotonic()
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]
    return out, time.monotonic() - t0


class Runner:
    def __init__(self, size, sha, commit, hubs, hft_py):
        self.size, self.sha, self.commit, self.hubs, self.hft_py = size, sha, commit, hubs, hft_py
        self.out = WORK / "par-out"

    def fresh_dir(self):
        shutil.rmtree(self.out, ignore_errors=True)
        self.out.mkdir(parents=True)
        subprocess.run(["sync"], check=False)
        return self.out

    def url(self, hub):
        return "%s/%s/resolve/%s/%s" % (self.hubs[hub].url, REPO_ID, self.commit, FILE)

    def run(self, tool, hub):
        """One fresh download; returns wall, verify time, read_bytes, MB/s."""
        out = self.fresh_dir()
        target = out / FILE
        env = dict(os.environ)
        if tool.startswith("model_fetch"):
            params = {"repo_id": REPO_ID, "revision": self.commit, "endpoint": self.hubs[hub].url, "dest": str(out)}
            params.update({"single": {"connections": 1}, "256m": {"chunk_size": 256 << 20}}.get(tool.split(":")[-1], {}))
            m = measured([VENV_PY, "-c", MF_SCRIPT, str(CACHE / "collections"), json.dumps(params)])
            res = json.loads(m["stdout"].split("@@IO")[0].strip().splitlines()[-1])
            if res["sha256"] != self.sha:
                raise RuntimeError("%s: sha256 %s, expected %s" % (tool, res["sha256"], self.sha))
            verify = 0.0
        else:
            if tool == "curl":
                cmd = ["curl", "-sS", "-o", target, self.url(hub)]
            elif tool == "aria2c":
                cmd = ["aria2c", "-x8", "-s8", "--file-allocation=none", "--console-log-level=warn", "--summary-interval=0",
                       "--download-result=hide", "-d", out, "-o", FILE, self.url(hub)]
            else:
                env.update(HF_HUB_ENABLE_HF_TRANSFER="1", HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
                           HF_HOME=str(WORK / "hf-home"))
                cmd = [self.hft_py, "-c", HF_SCRIPT, REPO_ID, FILE, self.commit, self.hubs[hub].url, out]
            m = measured(cmd, env=env)
            got, verify = sha256sum(target)
            if got != self.sha:
                raise RuntimeError("%s: sha256 %s, expected %s" % (tool, got, self.sha))
        wall = m["wall"]
        return {"wall": wall, "verify": verify, "read_bytes": m["read_bytes"], "rate": self.size / wall / MB,
                "rate_verified": self.size / (wall + verify) / MB}


def resume_check(runner, hub_name, kill_at=0.4):
    """Kill a parallel download at about ``kill_at`` of the file, re-run, count what nginx sends the second time."""
    hub = runner.hubs[hub_name]
    out = runner.fresh_dir()
    params = {"repo_id": REPO_ID, "revision": runner.commit, "endpoint": hub.url, "dest": str(out)}
    mark = hub.mark()
    proc = subprocess.Popen([str(VENV_PY), "-c", MF_SCRIPT, str(CACHE / "collections"), json.dumps(params)], stdout=subprocess.DEVNULL)
    progress = out / mf.PROGRESS_NAME
    while proc.poll() is None:
        try:
            if json.loads(progress.read_text()).get("bytes_done", 0) >= kill_at * runner.size:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1)
    first = sum(e["bytes"] for e in hub.since(mark) if e["uri"].endswith(FILE))
    spec = mf.hub_plan(requests.Session(), hub.url, REPO_ID, revision=runner.commit).files[0]
    state = mr.load_ranges(str(out / mf.STAGING_DIR / mf.staging_name(spec)), runner.size)
    have, partial = state.done_bytes(), len([g for g in state.missing() if g[0] % (16 << 20)])
    mark = hub.mark()
    m = measured([VENV_PY, "-c", MF_SCRIPT, str(CACHE / "collections"), json.dumps(params)])
    res = json.loads(m["stdout"].split("@@IO")[0].strip().splitlines()[-1])
    second = sum(e["bytes"] for e in hub.since(mark) if e["uri"].endswith(FILE))
    if res["sha256"] != runner.sha:
        raise RuntimeError("resume: wrong sha256")
    return {"sent_first": first, "have": have, "missing": runner.size - have, "sent_second": second, "reported": res["bytes"],
            "gaps": len(state.missing()), "partial_gaps": partial, "gets_second": len([e for e in hub.since(mark) if e["uri"].endswith(FILE)])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rate", default="50m", help="nginx limit_rate per request on the capped server")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results-parallel.md"))
    args = ap.parse_args()
    size = int(args.size_gib * GiB)
    aria = ensure_aria2c()
    hft_py, hft_version = ensure_hft_venv()
    WORK.mkdir(parents=True, exist_ok=True)
    src = WORK / ("par-source-%d.bin" % size)
    sha = make_random_file(src, size)
    hubs = {"capped": NginxHub(WORK / "nginx-capped", limit_rate=args.rate), "uncapped": NginxHub(WORK / "nginx-uncapped")}
    commit = None
    for hub in hubs.values():
        shutil.rmtree(hub.www, ignore_errors=True)
        commit = hub.add_repo(REPO_ID, {}, link_files={FILE: (str(src), sha)})
        hub.start()
    runner = Runner(size, sha, commit, hubs, hft_py)
    capped = ["curl", "aria2c", "hf_transfer", "model_fetch", "model_fetch:256m"]
    uncapped = ["model_fetch", "model_fetch:single", "curl"]
    results = {("capped", t): [] for t in capped}
    results.update({("uncapped", t): [] for t in uncapped})
    try:
        for rep in range(args.reps):
            for hub, tools in (("capped", capped), ("uncapped", uncapped)):
                order = tools[rep % len(tools):] + tools[:rep % len(tools)]
                for tool in order:
                    r = runner.run(tool, hub)
                    results[(hub, tool)].append(r)
                    log("rep %d %-8s %-18s %6.2f s %7.1f MB/s (+%.2f s sha256sum) read_bytes %s"
                        % (rep + 1, hub, tool, r["wall"], r["rate"], r["verify"], fmt_b(r["read_bytes"])))
        resume = resume_check(runner, "capped")
        log("resume: %s" % resume)
    finally:
        for hub in hubs.values():
            hub.stop()
        shutil.rmtree(runner.out, ignore_errors=True)
    write_report(args, size, results, resume, versions=(aria, hft_version))


def _med(runs, key):
    return statistics.median(r[key] for r in runs)


def write_report(args, size, results, resume, *, versions):
    aria, hft_version = versions
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False).stderr.strip()
    lines = ["## Run of %s UTC (generated by parallel.py)" % time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "",
             "Host: %s, %d CPUs, load average %s at the end (on a shared machine figures are noisy: compare within this run), "
             "Python %s, %s, huggingface_hub + hf_transfer %s, %s." % (platform.machine(), os.cpu_count(),
                                                                       " ".join("%.2f" % x for x in os.getloadavg()),
                                                                       platform.python_version(), aria, hft_version, nginx),
             "", "File: %s of random bytes; capped server: nginx `limit_rate %s` per request. Median of %d runs, tools alternating; "
             "MB = 10^6 bytes." % (fmt_b(size), args.rate, args.reps), "",
             "| server | tool | wall s | MB/s | sha256 | MB/s incl. sha256 | read_bytes (median) | runs (s) |", "|---|---|---|---|---|---|---|---|"]
    for (hub, tool), runs in results.items():
        verify = _med(runs, "verify")
        lines.append("| %s | %s | %.2f | %.1f | %s | %.1f | %s | %s |" % (
            hub, tool, _med(runs, "wall"), _med(runs, "rate"), "while downloading" if tool.startswith("model_fetch") else "sha256sum %.2f s" % verify,
            _med(runs, "rate_verified"), fmt_b(statistics.median(r["read_bytes"] for r in runs)), ", ".join("%.2f" % r["wall"] for r in runs)))
    cap = {t: _med(r, "rate") for (h, t), r in results.items() if h == "capped"}
    capv = {t: _med(r, "rate_verified") for (h, t), r in results.items() if h == "capped"}
    unc = {t: _med(r, "rate") for (h, t), r in results.items() if h == "uncapped"}
    best = max(cap["aria2c"], cap["hf_transfer"])
    bestv = max(capv["aria2c"], capv["hf_transfer"])
    lines += ["",
              "- capped, model_fetch (defaults) / curl: **%.2fx** (goal >= 4x); / best of aria2c and hf_transfer (download only): "
              "**%.2fx**; / best of them with their sha256sum: **%.2fx** (goal >= 0.9x)"
              % (cap["model_fetch"] / cap["curl"], cap["model_fetch"] / best, cap["model_fetch"] / bestv),
              "- capped, model_fetch (256 MiB chunks) / curl: %.2fx; / best of aria2c and hf_transfer: %.2fx (%.2fx with their sha256sum)"
              % (cap["model_fetch:256m"] / cap["curl"], cap["model_fetch:256m"] / best, cap["model_fetch:256m"] / bestv),
              "- uncapped, model_fetch (defaults) / model_fetch connections=1: **%.2fx** (goal >= 1.0x); / curl: %.2fx"
              % (unc["model_fetch"] / unc["model_fetch:single"], unc["model_fetch"] / unc["curl"]),
              "- resume after SIGKILL at ~40%% (capped server, defaults): first run nginx sent %s; the saved range state held %s in %d "
              "gaps (%d of them partial ranges); the re-run made %d requests and nginx sent **%s** for **%s** missing "
              "(model_fetch reported %s)." % (fmt_b(resume["sent_first"]), fmt_b(resume["have"]), resume["gaps"], resume["partial_gaps"],
                                              resume["gets_second"], fmt_b(resume["sent_second"]), fmt_b(resume["missing"]),
                                              fmt_b(resume["reported"])), ""]
    out = Path(args.out)
    old = out.read_text() if out.exists() else "# model_fetch parallel ranges: benchmark results\n\nMethod: see README.md. Newest run first.\n\n"
    head, sep, rest = old.partition("## Run of")
    out.write_text(head + "\n".join(lines) + "\n" + (sep + rest if sep else ""))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
