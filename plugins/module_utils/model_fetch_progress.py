# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Progress of a fetch: bytes received, rate and ETA, written to a small JSON file while the module runs.

The role runs model_fetch with ``async`` and reads this file on every poll, so an operator sees a line per
poll during a long download; the last figures also go into the module's result.
"""

from __future__ import annotations

import os
import threading
import time

from ansible_collections.llmops.inference.plugins.module_utils.model_fetch_common import human_bytes, write_json_atomic

RATE_WINDOW = 10.0  # seconds of samples behind the reported rate


class Progress:
    """Thread-safe byte counter with a sliding-window rate; optionally mirrored to ``path`` every ``interval`` s."""

    def __init__(self, path=None, progress_id=None, interval=1.0, clock=time.monotonic):
        self.lock = threading.Lock()
        self.bytes = 0
        self.total = 0
        self.files_done = 0
        self.files_total = 0
        self.path = path
        self.progress_id = progress_id
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.samples = [(self.started, 0)]
        self.state = "starting"
        self._stop = threading.Event()
        self._thread = None

    def add(self, n):
        with self.lock:
            self.bytes += n

    def file_done(self):
        with self.lock:
            self.files_done += 1

    def plan(self, bytes_total, files_total):
        with self.lock:
            self.total = bytes_total
            self.files_total = files_total
            self.state = "running"

    def _rate(self, now):
        """Bytes per second over the last RATE_WINDOW seconds (call with the lock held)."""
        self.samples.append((now, self.bytes))
        while len(self.samples) > 2 and now - self.samples[1][0] >= RATE_WINDOW:
            self.samples.pop(0)
        t0, b0 = self.samples[0]
        return int((self.bytes - b0) / (now - t0)) if now > t0 else 0

    def snapshot(self):
        now = self.clock()
        with self.lock:
            rate = self._rate(now)
            left = max(0, self.total - self.bytes)
            eta = round(left / rate, 1) if rate > 0 and left else (0.0 if not left else None)
            return {
                "state": self.state,
                "bytes_done": self.bytes,
                "bytes_total": self.total,
                "percent": round(100.0 * self.bytes / self.total, 1) if self.total else 100.0,
                "rate": rate,
                "eta_s": eta,
                "elapsed_s": round(now - self.started, 1),
                "files_done": self.files_done,
                "files_total": self.files_total,
                "id": self.progress_id,
                "pid": os.getpid(),
                "updated": round(time.time(), 3),
            }

    def write(self):
        if self.path:
            try:
                write_json_atomic(self.path, self.snapshot(), durable=False)
            except OSError:
                pass  # progress is a courtesy: never fail a download over it

    def start(self):
        self.write()
        if self.path and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="model_fetch-progress", daemon=True)
            self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.interval):
            self.write()

    def stop(self, state):
        """Final report (``done`` or ``failed``); returns the last snapshot."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self.lock:
            self.state = state
        snap = self.snapshot()
        if state == "done":
            elapsed = max(self.clock() - self.started, 1e-9)
            snap["rate"] = int(self.bytes / elapsed)  # the run's average, not the last window
            snap["eta_s"] = 0.0
        if self.path:
            try:
                write_json_atomic(self.path, snap, durable=False)
            except OSError:
                pass
        return snap


def progress_line(snap):
    """One human line, as the role prints it per poll."""
    eta = snap.get("eta_s")
    return "%s %s of %s (%.1f%%), %s/s, ETA %s, files %d/%d" % (
        snap.get("state"), human_bytes(snap.get("bytes_done", 0)), human_bytes(snap.get("bytes_total", 0)),
        snap.get("percent", 0.0), human_bytes(snap.get("rate", 0)), "?" if eta is None else "%ds" % eta,
        snap.get("files_done", 0), snap.get("files_total", 0))
