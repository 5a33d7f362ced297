# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Shared pieces of model_fetch: option defaults, errors, digests, the buffer pipeline, small file helpers.

``DEFAULTS`` is the one place an option's default is stated: the module's argument spec and ``run()`` read it.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import shutil
import threading

STAGING_DIR = ".llmops-staging"
MANIFEST_NAME = ".llmops-manifest.json"
PROGRESS_NAME = ".llmops-progress.json"
MANIFEST_FORMAT = 1
RESERVED_NAMES = (STAGING_DIR, MANIFEST_NAME, PROGRESS_NAME)
DEFAULT_ENDPOINT = "https://huggingface.co"
USER_AGENT = "llmops.inference-model_fetch/2"
MiB = 1024 * 1024

# Network reads use buffers that fit a core's L2 cache: each buffer is hashed right after it arrives, while
# still hot. Measured on the 2-core EPYC CI host (benchmarks/model_fetch/hash_cost.py): with 256 KiB buffers
# verifying a 2 GiB download cost 0.7-1.9 CPU-s over not hashing at all; with 1 or 4 MiB buffers, 3.7-5.5 CPU-s
# (the bytes had left the cache before sha256 read them). Reading files from the page cache uses 4 MiB.
BUFFER_SIZE = 256 * 1024
FILE_BUFFER_SIZE = 4 * MiB

# Every option default, once. The module's argument_spec reads these (default=DEFAULTS[...]).
DEFAULTS = {
    "repo_id": None,
    "repo_type": "model",
    "revision": "main",
    "endpoint": DEFAULT_ENDPOINT,
    "token": None,
    "allow_patterns": None,
    "ignore_patterns": None,
    "urls": None,
    "checksums": None,
    "verify": "fast",
    "parallel": 4,
    "connections": 8,
    "chunk_size": 16 * MiB,
    "retries": 5,
    "backoff": 1.0,
    "timeout": 30.0,
    "validate_certs": True,
    "ca_path": None,
    "prune": True,
    "progress_file": None,
    "progress_id": None,
}

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
SHA1_RE = re.compile(r"^[0-9a-f]{40}$")


class FetchError(Exception):
    """A failure to report to the user; ``details`` go into the task result."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


class PermanentError(FetchError):
    """Retrying will not help (401/403/404, bad metadata)."""


class TransientError(FetchError):
    """Connection dropped, short read, 5xx: retry, resuming from the partial file."""


class HashMismatch(FetchError):
    """The downloaded bytes do not hash to the expected value."""


# ---------------------------------------------------------------------------
# digests


def parse_digest(value):
    """Normalise an expected digest to ``(algorithm, hex)``.

    Accepts ``sha256:HEX``, ``git-sha1:HEX`` (a git blob id) or a bare 64-character sha256.
    """
    if not isinstance(value, str):
        raise FetchError("checksum must be a string, got %r" % (value,))
    text = value.strip().lower()
    algo, sep, hexpart = text.partition(":")
    if not sep:
        algo, hexpart = "sha256", text
    algo = {"sha-256": "sha256", "git": "git-sha1", "gitsha1": "git-sha1", "blob": "git-sha1"}.get(algo, algo)
    if algo == "sha256" and SHA256_RE.match(hexpart):
        return ("sha256", hexpart)
    if algo == "git-sha1" and SHA1_RE.match(hexpart):
        return ("git-sha1", hexpart)
    raise FetchError("invalid checksum %r: use a 64-hex sha256, 'sha256:HEX' or 'git-sha1:HEX'" % (value,))


def format_digest(digest):
    return "%s:%s" % digest


def git_blob_header(size):
    return b"blob %d\0" % size


def git_blob_sha1(data):
    """Git's blob id: sha1 over ``blob {size}\\0`` and the content."""
    h = hashlib.sha1(git_blob_header(len(data)))
    h.update(data)
    return h.hexdigest()


class StreamHasher:
    """Hashes bytes as they arrive: sha256 always, a git blob sha1 when the size is known and wanted."""

    def __init__(self, git_size=None):
        self.sha256 = hashlib.sha256()
        self.git = hashlib.sha1(git_blob_header(git_size)) if git_size is not None else None
        self.count = 0

    def update(self, chunk):
        self.sha256.update(chunk)
        if self.git is not None:
            self.git.update(chunk)
        self.count += len(chunk)

    def digests(self):
        out = {"sha256": self.sha256.hexdigest()}
        if self.git is not None:
            out["git-sha1"] = self.git.hexdigest()
        return out


# ---------------------------------------------------------------------------
# the buffer pipeline (network -> disk, disk -> hash)


def pipeline(fill, drain, *, buffer_size, buffers=4, threaded=True):
    """Move data through a few reused buffers: ``fill(view) -> n`` here, ``drain(view)`` in a helper thread.

    ``fill`` returns 0 at the end. Both sides usually release the GIL (socket/file reads, os.write, hashlib),
    so filling one buffer overlaps draining the previous one, without a per-chunk allocation. Every buffer
    filled before ``fill`` raises is drained before the exception propagates; a ``drain`` failure stops the
    filling side and is raised. ``threaded=False`` runs both in this thread (small inputs).
    """
    if not threaded:
        view = memoryview(bytearray(buffer_size))
        while True:
            n = fill(view)
            if not n:
                return
            drain(view[:n])
    free = queue.Queue()
    for view in [memoryview(bytearray(buffer_size)) for dummy in range(buffers)]:
        free.put(view)
    filled = queue.Queue()
    failure = []

    def consume():
        while True:
            item = filled.get()
            if item is None:
                return
            view, n = item
            try:
                if not failure:
                    drain(view[:n])
            except Exception as exc:  # disk full, I/O error: stop the filling side too
                failure.append(exc)
            free.put(view)

    worker = threading.Thread(target=consume, name="model_fetch-drain", daemon=True)
    worker.start()
    try:
        while not failure:
            view = free.get()
            n = fill(view)
            if not n:
                break
            filled.put((view, n))
    finally:
        filled.put(None)
        worker.join()
    if failure:
        raise failure[0]


def hash_file(path, git_size=None, limit=None, hasher=None, *, chunk_size=FILE_BUFFER_SIZE, start=0):
    """Hash a file's bytes ``[start, limit)`` (the whole file by default) in one pass over reused buffers."""
    hasher = hasher or StreamHasher(git_size)
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        total = size if limit is None else min(limit, size)
        try:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except (AttributeError, OSError):
            pass
        f.seek(start)
        remaining = [max(0, total - start)]

        def fill(view):
            if remaining[0] <= 0:
                return 0
            n = f.readinto(view[:min(len(view), remaining[0])])
            remaining[0] -= n or 0
            return n

        pipeline(fill, hasher.update, buffer_size=chunk_size, buffers=3, threaded=remaining[0] > 2 * chunk_size)
    return hasher


# ---------------------------------------------------------------------------
# small file-system helpers


def free_bytes(path):
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return shutil.disk_usage(path or "/").free


def human_bytes(n):
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024
    return str(n)


def fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path, data, durable=True):
    """Replace ``path`` with ``data`` as JSON; ``durable`` also fsyncs the file and its directory."""
    tmp = "%s.tmp.%d.%d" % (path, os.getpid(), threading.get_ident())
    payload = json.dumps(data, indent=1, sort_keys=True).encode("utf-8") + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, payload)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(os.path.dirname(path))


def read_json(path):
    """A JSON file's content, or None when missing or unreadable."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
