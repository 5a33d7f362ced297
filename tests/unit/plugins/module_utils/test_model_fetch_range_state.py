"""model_fetch's range planner, range state on disk, prefix hasher and progress figures."""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading

import pytest

from ansible_collections.llmops.inference.plugins.module_utils import model_fetch_ranges as mr
from ansible_collections.llmops.inference.plugins.module_utils.model_fetch_common import StreamHasher
from ansible_collections.llmops.inference.plugins.module_utils.model_fetch_progress import Progress, progress_line


def test_ranges_merge_prefix_and_gaps():
    r = mr.Ranges(100)
    assert r.missing() == [[0, 100]] and r.prefix() == 0 and r.done_bytes() == 0
    r.add(10, 20)
    r.add(30, 40)
    assert r.done() == [[10, 20], [30, 40]] and r.prefix() == 0
    assert r.missing() == [[0, 10], [20, 30], [40, 100]]
    r.add(0, 10)  # touching intervals merge
    assert r.done() == [[0, 20], [30, 40]] and r.prefix() == 20
    r.add(15, 35)  # overlapping both
    assert r.done() == [[0, 40]] and r.done_bytes() == 40
    r.add(90, 200)  # clipped to the file
    assert r.missing() == [[40, 90]] and not r.complete()
    r.add(40, 90)
    assert r.complete() and r.prefix() == 100 and r.missing() == []


def test_ranges_random_adds_equal_a_bitmap():
    rng = random.Random(7)
    size = 1000
    r = mr.Ranges(size)
    bitmap = [False] * size
    for _step in range(200):
        a = rng.randrange(size)
        b = min(size, a + rng.randrange(1, 50))
        r.add(a, b)
        for i in range(a, b):
            bitmap[i] = True
        assert r.done_bytes() == sum(bitmap)
        gaps = r.missing()
        assert sum(e - s for s, e in gaps) == size - sum(bitmap)
        assert all(not bitmap[i] for s, e in gaps for i in range(s, e))
        prefix = next((i for i, v in enumerate(bitmap) if not v), size)
        assert r.prefix() == prefix


def test_plan_chunks_splits_gaps_in_file_order():
    assert mr.plan_chunks([[0, 10]], 4) == [(0, 4), (4, 8), (8, 10)]
    assert mr.plan_chunks([[0, 3], [5, 13]], 4) == [(0, 3), (5, 9), (9, 13)]
    assert mr.plan_chunks([], 4) == []
    with pytest.raises(ValueError):
        mr.plan_chunks([[0, 1]], 0)
    # Every byte of every gap is asked for exactly once.
    gaps = [[0, 1000], [1500, 1501], [2000, 9999]]
    chunks = mr.plan_chunks(gaps, 333)
    assert all(e - s <= 333 for s, e in chunks)
    assert sum(e - s for s, e in chunks) == sum(e - s for s, e in gaps)


def test_state_roundtrip_and_resume_only_what_is_on_disk(tmp_path):
    part = str(tmp_path / "x.part")
    assert mr.load_ranges(part, 100).done() == []  # nothing there
    with open(part, "wb") as f:
        f.truncate(100)
    r = mr.Ranges(100, [(0, 10), (50, 60)])
    mr.save_ranges(part, r)
    assert json.loads((tmp_path / "x.part.ranges").read_text())["done"] == [[0, 10], [50, 60]]
    assert mr.load_ranges(part, 100).done() == [[0, 10], [50, 60]]
    # Another size (a new revision of the file): start over.
    assert mr.load_ranges(part, 101).done() == []
    # A .part shorter than the state claims (truncated by hand, a crash before the size was set): clip.
    with open(part, "r+b") as f:
        f.truncate(55)
    assert mr.load_ranges(part, 100).done() == [[0, 10], [50, 55]]
    # Garbage state: nothing trusted (not even as a prefix: a ranged .part has holes).
    (tmp_path / "x.part.ranges").write_text("{not json")
    assert mr.load_ranges(part, 100).done() == []
    (tmp_path / "x.part.ranges").write_text(json.dumps({"format": 1, "size": 100, "done": [["a", 3]]}))
    assert mr.load_ranges(part, 100).done() == []
    mr.drop_ranges(part)
    assert list(tmp_path.iterdir()) == []


def test_single_stream_partial_is_a_prefix(tmp_path):
    part = tmp_path / "y.part"
    part.write_bytes(b"x" * 40)
    assert mr.load_ranges(str(part), 100).done() == [[0, 40]]
    assert mr.load_ranges(str(part), 30).done() == []  # longer than the file: not ours to trust


def test_prefix_hasher_hashes_out_of_order_writes(tmp_path):
    data = os.urandom(300_000)
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, len(data))
        ranges = mr.Ranges(len(data))
        ph = mr.PrefixHasher(fd, ranges, StreamHasher(), buffer_size=4096)
        pieces = mr.plan_chunks([[0, len(data)]], 10_000)
        random.Random(3).shuffle(pieces)

        def write(chunk_list):
            for s, e in chunk_list:
                os.pwrite(fd, data[s:e], s)
                ranges.add(s, e)

        threads = [threading.Thread(target=write, args=(pieces[i::3],)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        hasher = ph.finish()
    finally:
        os.close(fd)
    assert hasher.count == len(data)
    assert hasher.sha256.hexdigest() == hashlib.sha256(data).hexdigest()


def test_prefix_hasher_stops_at_a_hole(tmp_path):
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"a" * 100, 0)
        os.pwrite(fd, b"b" * 100, 200)
        ranges = mr.Ranges(300, [(0, 100), (200, 300)])
        hasher = mr.PrefixHasher(fd, ranges, StreamHasher()).finish()
    finally:
        os.close(fd)
    assert hasher.count == 100 and hasher.sha256.hexdigest() == hashlib.sha256(b"a" * 100).hexdigest()


def test_progress_rate_eta_and_file(tmp_path):
    now = [100.0]
    path = tmp_path / "progress.json"
    p = Progress(path=str(path), progress_id="run-1", interval=60, clock=lambda: now[0])
    p.start()
    assert json.loads(path.read_text())["state"] == "starting"
    p.plan(1000, 2)
    now[0] += 2
    p.add(200)
    snap = p.snapshot()
    assert snap["bytes_done"] == 200 and snap["bytes_total"] == 1000 and snap["percent"] == 20.0
    assert snap["rate"] == 100 and snap["eta_s"] == 8.0 and snap["id"] == "run-1"
    assert "200 B of 1000 B (20.0%), 100 B/s, ETA 8s, files 0/2" in progress_line(snap)
    now[0] += 3
    p.add(800)
    p.file_done()
    p.file_done()
    final = p.stop("done")
    assert final["state"] == "done" and final["eta_s"] == 0.0 and final["rate"] == 200 and final["files_done"] == 2
    assert json.loads(path.read_text()) == final


def test_progress_window_forgets_old_samples():
    now = [0.0]
    p = Progress(clock=lambda: now[0])
    p.plan(100_000, 1)
    for _step in range(30):  # 1000 B/s for 30 s
        now[0] += 1
        p.add(1000)
        p.snapshot()
    for _step in range(15):  # then stalled
        now[0] += 1
        snap = p.snapshot()
    assert snap["rate"] == 0 and snap["eta_s"] is None
