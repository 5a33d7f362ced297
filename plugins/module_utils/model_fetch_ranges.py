# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Parallel ranges within one file: which bytes are on disk, what is left to ask for, and the prefix hasher.

A ranged download writes into ``STAGING/NAME.part`` (sized to the whole file up front) and keeps the byte
intervals already written in ``STAGING/NAME.part.ranges`` (JSON, saved every second or so after the data
is flushed). A later run loads it and asks only for the gaps, so every partial range resumes where it
stopped. A ``.part`` without a ``.ranges`` file is a contiguous prefix (left by a single-stream download).

The sha256 is computed over the file's contiguous prefix while ranges land: ``PrefixHasher`` reads each
just-written stretch back with ``pread`` (from the page cache: measured as zero ``read_bytes`` from storage
on a fresh download) and feeds it to the hasher, so nothing is read again after the last byte arrives.
"""

from __future__ import annotations

import os
import threading

from ansible_collections.llmops.inference.plugins.module_utils.model_fetch_common import (
    BUFFER_SIZE,
    read_json,
    write_json_atomic,
)

STATE_FORMAT = 1
STATE_SUFFIX = ".ranges"


class Ranges:
    """The byte intervals ``[start, end)`` of a file of ``size`` bytes that are on disk; merged, sorted, thread-safe.

    ``cond`` is notified when the contiguous prefix grows (the prefix hasher waits on it).
    """

    def __init__(self, size, done=()):
        self.size = int(size)
        self.cond = threading.Condition()
        self._done = []
        for start, end in done:
            self._insert(int(start), int(end))

    def _insert(self, start, end):
        start, end = max(0, start), min(self.size, end)
        if end <= start:
            return
        merged = []
        for a, b in self._done:
            if b < start or a > end:
                merged.append([a, b])
            else:
                start, end = min(a, start), max(b, end)
        merged.append([start, end])
        merged.sort()
        self._done = merged

    def add(self, start, end):
        with self.cond:
            before = self._prefix()
            self._insert(start, end)
            if self._prefix() != before:
                self.cond.notify_all()  # only the prefix hasher waits, and only for the prefix to grow

    def _prefix(self):
        return self._done[0][1] if self._done and self._done[0][0] == 0 else 0

    def done(self):
        with self.cond:
            return [list(x) for x in self._done]

    def done_bytes(self):
        with self.cond:
            return sum(b - a for a, b in self._done)

    def prefix(self):
        """End of the contiguous stretch that starts at byte 0."""
        with self.cond:
            return self._prefix()

    def missing(self):
        """The gaps, as ``[start, end)`` pairs in file order."""
        with self.cond:
            gaps = []
            pos = 0
            for a, b in self._done:
                if a > pos:
                    gaps.append([pos, a])
                pos = max(pos, b)
            if pos < self.size:
                gaps.append([pos, self.size])
            return gaps

    def complete(self):
        return not self.missing()


def plan_chunks(gaps, chunk_size):
    """Split gaps into requests of at most ``chunk_size`` bytes, in file order (so the hashed prefix grows steadily)."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    out = []
    for start, end in gaps:
        pos = start
        while pos < end:
            out.append((pos, min(end, pos + chunk_size)))
            pos += chunk_size
    return out


def state_path(staging):
    return staging + STATE_SUFFIX


def load_ranges(staging, size):
    """What a previous run left for a file of ``size`` bytes: a ``Ranges`` (empty when nothing usable is there)."""
    try:
        on_disk = os.path.getsize(staging)
    except OSError:
        return Ranges(size)
    if not os.path.exists(state_path(staging)):
        # A single-stream partial: its bytes are a prefix (a longer file is not ours to trust).
        return Ranges(size, [(0, on_disk)] if on_disk <= size else ())
    state = read_json(state_path(staging))
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("size") != size:
        return Ranges(size)
    try:
        done = [(int(a), int(b)) for a, b in state.get("done") or []]
    except (TypeError, ValueError):
        return Ranges(size)
    # Only intervals inside what the .part file really holds.
    return Ranges(size, [(a, min(b, on_disk)) for a, b in done if 0 <= a < b])


def save_ranges(staging, ranges):
    write_json_atomic(state_path(staging), {"format": STATE_FORMAT, "size": ranges.size, "done": ranges.done()}, durable=False)


def drop_ranges(staging):
    for path in (staging, state_path(staging)):
        try:
            os.unlink(path)
        except OSError:
            pass


class PrefixHasher:
    """Feeds ``hasher`` with the file's contiguous prefix as ``ranges`` grows, in a thread of its own.

    Bytes are read back with ``os.pread`` into one reused buffer right after they were written, so they come
    from the page cache; after the last range lands only the last stretch is left to hash.
    """

    def __init__(self, fd, ranges, hasher, buffer_size=BUFFER_SIZE):
        self.fd = fd
        self.ranges = ranges
        self.hasher = hasher
        self.buffer = memoryview(bytearray(buffer_size))
        self.stopping = False
        self.error = None
        self.thread = threading.Thread(target=self._run, name="model_fetch-prefix-hash", daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while True:
                with self.ranges.cond:
                    while not self.stopping and self.ranges.prefix() <= self.hasher.count:
                        self.ranges.cond.wait(0.5)
                    target = self.ranges.prefix()
                    if target <= self.hasher.count:
                        return  # stopping, and nothing new
                self._hash_to(target)
        except Exception as exc:  # an I/O error: raised by finish()
            self.error = exc

    def _hash_to(self, target):
        view = self.buffer
        while self.hasher.count < target:
            want = min(len(view), target - self.hasher.count)
            n = os.preadv(self.fd, [view[:want]], self.hasher.count)
            if not n:
                raise OSError("unexpected end of file at byte %d while hashing" % self.hasher.count)
            self.hasher.update(view[:n])

    def finish(self):
        """Wait until everything written so far is hashed; returns the hasher."""
        with self.ranges.cond:
            self.stopping = True
            self.ranges.cond.notify_all()
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.hasher
