"""model_fetch's parallel ranges and progress file against real loopback servers (nginx with Range, fault server)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests

from ansible_collections.llmops.inference.plugins.module_utils import model_fetch as mf
from ansible_collections.llmops.inference.plugins.module_utils import model_fetch_ranges as mr
from ansible_collections.llmops.inference.plugins.module_utils import model_fetch_transfer as transfer

from model_fetch_servers import FaultServer, NginxHub, blob, sha256

MiB = 1024 * 1024
CHUNK = 256 * 1024


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = NginxHub(tmp_path_factory.mktemp("nginx-ranges")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def slow_hub(tmp_path_factory):
    """nginx capping each request at 1 MB/s: a 24 MiB file takes long enough to watch and interrupt.

    nginx's limit_rate lets each request send one second's worth at once, then paces it; chunks of 4 MiB keep
    the pacing in charge.
    """
    server = NginxHub(tmp_path_factory.mktemp("nginx-slow"), limit_rate="1m").start()
    yield server
    server.stop()


@pytest.fixture
def fault():
    server = FaultServer().start()
    yield server
    server.stop()


def file_gets(entries, name):
    return [e for e in entries if e["method"] == "GET" and e["uri"].endswith("/" + name)]


def test_parallel_ranges_are_correct_and_hashed_once(hub, tmp_path, monkeypatch):
    data = blob(5 * MiB + 12345, "parallel")
    repo = "acme/par-%s" % uuid.uuid4().hex[:8]
    hub.add_repo(repo, {"model.safetensors": data, "config.json": b"{}\n"})
    # No second pass over the file: hash_file must not run, and the prefix hasher reads each byte back once.
    monkeypatch.setattr(transfer, "hash_file", lambda *a, **k: pytest.fail("the file was read again after download"))
    read_back = [0]
    real_preadv = os.preadv

    def counting_preadv(fd, buffers, offset):
        n = real_preadv(fd, buffers, offset)
        read_back[0] += n
        return n

    monkeypatch.setattr(mr.os, "preadv", counting_preadv)
    # Plain HTTP bodies are read straight from the socket (MSG_WAITALL), one reader per range request.
    direct = []
    real_reader = transfer.socket_reader

    def counting_reader(resp, timeout):
        reader = real_reader(resp, timeout)
        direct.append(reader is not None)
        return reader

    monkeypatch.setattr(transfer, "socket_reader", counting_reader)
    mark = hub.mark()
    res = mf.run({"repo_id": repo, "endpoint": hub.url, "dest": str(tmp_path / "d"), "connections": 4, "chunk_size": CHUNK})
    item = next(f for f in res["files"] if f["path"] == "model.safetensors")
    assert item["status"] == "downloaded" and item["connections"] == 4 and item["sha256"] == sha256(data)
    assert (tmp_path / "d" / "model.safetensors").read_bytes() == data
    assert read_back[0] == len(data)
    assert direct == [True] * -(-len(data) // CHUNK)
    gets = file_gets(hub.since(mark), "model.safetensors")
    assert len(gets) == -(-len(data) // CHUNK)  # one request per chunk, no retries
    assert {g["status"] for g in gets} == {206}
    assert sum(g["bytes"] for g in gets) == len(data) == item["bytes_transferred"]
    starts = sorted(int(g["range"].split("=")[1].split("-")[0]) for g in gets)
    assert starts == list(range(0, len(data), CHUNK))
    assert not (tmp_path / "d" / mf.STAGING_DIR).exists()


def test_server_ignoring_range_falls_back_to_one_stream(fault, tmp_path):
    data = blob(3 * MiB, "norange-par")
    fault.files["w.bin"] = data
    res = mf.run({"dest": str(tmp_path / "d"), "connections": 4, "chunk_size": CHUNK, "backoff": 0.01,
                  "urls": [{"url": fault.url + "/norange/w.bin", "sha256": sha256(data), "size": len(data)}]})
    item = res["files"][0]
    assert item["status"] == "downloaded" and item["restarted"] is True and item["connections"] == 1
    assert (tmp_path / "d" / "w.bin").read_bytes() == data
    gets = fault.gets("w.bin")
    # The first ranged GET got a 200 and was dropped; only one probe went out before falling back.
    assert gets[0]["range"] == "bytes=0-%d" % (CHUNK - 1) and gets[0]["status"] == 200
    assert [g["range"] for g in gets[1:]] == [None] and item["bytes_transferred"] == len(data)


def test_interrupted_parallel_download_resumes_every_partial_range(fault, tmp_path):
    data = blob(4 * MiB, "resume-par")
    fault.files["w.bin"] = data
    fault.drop_after = 100_000
    fault.default_drops = 3  # three connections break mid-range; retries=0 fails the run
    dest = tmp_path / "d"
    p = {"dest": str(dest), "connections": 4, "chunk_size": MiB, "retries": 0, "backoff": 0.01,
         "urls": [{"url": fault.url + "/drop/w.bin", "sha256": sha256(data), "size": len(data)}]}
    with pytest.raises(mf.TransientError):
        mf.run(p)
    spec = mf.url_plan(p["urls"]).files[0]
    staging = str(dest / mf.STAGING_DIR / mf.staging_name(spec))
    state = mr.load_ranges(staging, len(data))
    have = state.done_bytes()
    assert 0 < have < len(data)
    partial = [g for g in state.missing() if g[0] % MiB]  # gaps that start inside a chunk: partial ranges
    assert partial, state.done()
    with open(staging, "rb") as f:
        for a, b in state.done():
            f.seek(a)
            assert f.read(b - a) == data[a:b]

    first_run = len(fault.requests)
    res = mf.run(p)
    second = [r for r in fault.requests[first_run:] if r["method"] == "GET"]
    item = res["files"][0]
    assert item["status"] == "resumed" and (dest / "w.bin").read_bytes() == data
    # Only the missing bytes crossed the wire, and each gap was asked for from where it began.
    assert sum(r["bytes"] for r in second) == len(data) - have == item["bytes_transferred"]
    asked = {int(r["range"].split("=")[1].split("-")[0]) for r in second}
    assert {a for a, b in state.missing()} <= asked


def _poll_progress(path, stop, seen):
    while not stop.is_set():
        try:
            seen.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
        time.sleep(0.1)


def test_progress_file_while_running_and_in_result(slow_hub, tmp_path):
    data = blob(8 * MiB, "progress")
    repo = "acme/prog-%s" % uuid.uuid4().hex[:8]
    slow_hub.add_repo(repo, {"model.safetensors": data})
    dest = tmp_path / "d"
    dest.mkdir()
    path = dest / mf.PROGRESS_NAME
    stop, seen = threading.Event(), []
    poller = threading.Thread(target=_poll_progress, args=(path, stop, seen))
    poller.start()
    try:
        res = mf.run({"repo_id": repo, "endpoint": slow_hub.url, "dest": str(dest), "connections": 2, "chunk_size": 4 * MiB,
                      "progress_id": "job-42"})
    finally:
        stop.set()
        poller.join()
    running = [s for s in seen if s["state"] == "running" and 0 < s["bytes_done"] < len(data)]
    assert running, seen[-3:]
    assert all(s["bytes_total"] == len(data) and s["id"] == "job-42" for s in running)
    assert any(s["rate"] > 0 and s["eta_s"] is not None for s in running)
    final = json.loads(path.read_text())
    assert final["state"] == "done" and final["bytes_done"] == len(data) and final["eta_s"] == 0.0
    assert res["progress"] == final and res["progress_file"] == str(path)
    # A re-run writes a fresh report: nothing to fetch.
    again = mf.run({"repo_id": repo, "endpoint": slow_hub.url, "dest": str(dest)})
    assert again["changed"] is False and again["progress"]["bytes_total"] == 0 and again["progress"]["state"] == "done"


KILLED_RUN = """
import sys
sys.path[:0] = {paths!r}
from ansible_collections.llmops.inference.plugins.module_utils import model_fetch as mf
mf.run({params!r})
"""


def test_killed_parallel_download_resumes_missing_bytes_only(slow_hub, tmp_path):
    """SIGKILL mid-download (no cleanup at all), then re-run: nginx sends only what the saved range state lacks."""
    data = blob(24 * MiB, "killed")
    repo = "acme/kill-%s" % uuid.uuid4().hex[:8]
    commit = slow_hub.add_repo(repo, {"model.safetensors": data})
    dest = tmp_path / "d"
    params = {"repo_id": repo, "endpoint": slow_hub.url, "dest": str(dest), "connections": 4, "chunk_size": 4 * MiB}
    code = KILLED_RUN.format(paths=[p for p in sys.path if p], params=params)
    mark = slow_hub.mark()
    proc = subprocess.Popen([sys.executable, "-c", code])
    progress = dest / mf.PROGRESS_NAME
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if json.loads(progress.read_text())["bytes_done"] > 6 * MiB:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # nginx logs the broken requests
    plan = mf.hub_plan(requests.Session(), slow_hub.url, repo, revision=commit)
    staging = str(dest / mf.STAGING_DIR / mf.staging_name(plan.files[0]))
    have = mr.load_ranges(staging, len(data)).done_bytes()
    assert 6 * MiB <= have < len(data)
    first = slow_hub.since(mark)

    mark = slow_hub.mark()
    res = mf.run(params)
    second = file_gets(slow_hub.since(mark), "model.safetensors")
    assert res["files"][0]["status"] == "resumed" and (dest / "model.safetensors").read_bytes() == data
    assert sum(e["bytes"] for e in second) == len(data) - have == res["bytes_transferred"]
    # Nothing was fetched twice beyond what the 0.5 s state interval had not yet recorded when the process died.
    sent_first = sum(e["bytes"] for e in file_gets(first, "model.safetensors"))
    assert sent_first + sum(e["bytes"] for e in second) >= len(data)
