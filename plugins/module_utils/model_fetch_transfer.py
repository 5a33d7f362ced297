# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Moving one file's bytes: HTTP sessions, the receive pipeline, single-stream and parallel-range downloads.

``download_one`` fetches a file into its staging path, verifies it and renames it into place:

* files larger than ``chunk_size`` with a known size are fetched as parallel ``Range`` requests over
  ``connections`` connections (``model_fetch_ranges``), resuming every partial range of an earlier run;
* smaller files, files of unknown size, ``connections: 1`` and servers that ignore ``Range`` use one stream,
  hashed in the receiving thread while the bytes are still in the CPU cache, resuming from the partial file.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import threading
import time
import traceback
from dataclasses import dataclass

from ansible_collections.llmops.inference.plugins.module_utils.model_fetch_common import (
    BUFFER_SIZE,
    DEFAULTS,
    USER_AGENT,
    HashMismatch,
    PermanentError,
    StreamHasher,
    TransientError,
    format_digest,
    fsync_dir,
    hash_file,
    pipeline,
)
from ansible_collections.llmops.inference.plugins.module_utils.model_fetch_plan import raise_for_http
from ansible_collections.llmops.inference.plugins.module_utils.model_fetch_ranges import (
    PrefixHasher,
    drop_ranges,
    load_ranges,
    plan_chunks,
    save_ranges,
    state_path,
)

try:
    import requests
    from requests.adapters import HTTPAdapter

    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported by the module (missing_required_lib)
    requests = None
    HTTPAdapter = object
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = traceback.format_exc()

STATE_SAVE_INTERVAL = 0.2  # seconds between saves of a ranged download's state (a small JSON file, not fsynced)
# Range workers do not hash what they receive (the prefix hasher does, in order), so they read bigger buffers:
# fewer Python-level iterations per byte.
RANGE_BUFFER_SIZE = 1024 * 1024


@dataclass
class Options:
    parallel: int = DEFAULTS["parallel"]
    connections: int = DEFAULTS["connections"]
    chunk_size: int = DEFAULTS["chunk_size"]
    retries: int = DEFAULTS["retries"]
    backoff: float = DEFAULTS["backoff"]
    backoff_max: float = 30.0
    timeout: float = DEFAULTS["timeout"]
    buffer_size: int = BUFFER_SIZE
    verify: str = DEFAULTS["verify"]  # fast: trust manifest size+mtime; full: re-hash everything
    prune: bool = DEFAULTS["prune"]
    token: str | None = None

    def delay(self, failures):
        return min(self.backoff_max, self.backoff * (2 ** (failures - 1)))


class Sessions:
    """One requests.Session per thread (Session is not thread-safe); each keeps its connection alive."""

    def __init__(self, validate_certs=True, ca_path=None, pool=4):
        self.local = threading.local()
        self.verify = (ca_path or True) if validate_certs else False
        self.pool = pool
        self.all = []
        self.lock = threading.Lock()

    def get(self):
        s = getattr(self.local, "session", None)
        if s is None:
            s = requests.Session()
            s.headers["User-Agent"] = USER_AGENT
            s.verify = self.verify
            adapter = HTTPAdapter(pool_connections=self.pool, pool_maxsize=self.pool)
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            self.local.session = s
            with self.lock:
                self.all.append(s)
        return s

    def close(self):
        with self.lock:
            for s in self.all:
                s.close()


def _headers(spec, opts):
    headers = {"Accept-Encoding": "identity"}
    if spec.auth and opts.token:
        headers["Authorization"] = "Bearer %s" % opts.token
    return headers


def head_size(session, spec, opts):
    try:
        resp = session.head(spec.url, headers=_headers(spec, opts), allow_redirects=True, timeout=opts.timeout)
    except requests.RequestException as exc:
        raise TransientError("%s: HEAD failed: %s" % (spec.path, exc), url=spec.url) from exc
    raise_for_http(resp, spec.url, bool(opts.token and spec.auth))
    length = resp.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


def open_stream(session, spec, opts, start=0, end=None):
    """GET the file, from ``start`` (and up to ``end``, exclusive) when given."""
    headers = _headers(spec, opts)
    if start or end is not None:
        headers["Range"] = "bytes=%d-%s" % (start, "" if end is None else end - 1)
    try:
        return session.get(spec.url, headers=headers, stream=True, timeout=(opts.timeout, opts.timeout))
    except requests.RequestException as exc:
        raise TransientError("%s: request failed: %s" % (spec.path, exc), url=spec.url) from exc


class WriteError(Exception):
    """A local write failed (disk full, I/O error): not worth a network retry."""

    def __init__(self, error):
        super().__init__(str(error))
        self.error = error


def socket_reader(resp, timeout):
    """A read(view) that takes a plain-HTTP body straight from its socket with MSG_WAITALL, or None.

    One system call, and one round trip through the GIL, per buffer instead of one per batch of TCP segments
    that happened to arrive: with many connections in Python threads on a busy machine, each round trip waits
    for the scheduler. Only for an identity body of known length on a plain (not TLS) socket. The bytes
    http.client has buffered already are taken first; the socket is then switched to blocking reads with
    SO_RCVTIMEO as the timeout. urllib3 never sees the end of the body, so the connection is closed with the
    response instead of going back to the pool.
    """
    fp = getattr(resp.raw, "_fp", None)
    sockfile = getattr(fp, "fp", None)
    sock = getattr(getattr(sockfile, "raw", None), "_sock", None)
    if (not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket) or getattr(fp, "chunked", True)
            or not isinstance(getattr(fp, "length", None), int) or not hasattr(socket, "MSG_WAITALL") or not hasattr(sockfile, "peek")
            or resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")):
        return None
    state = {"direct": False}

    def read(view):
        want = min(len(view), fp.length or 0)
        if want <= 0:
            return 0
        if not state["direct"]:
            buffered = len(sockfile.peek(1))
            if buffered >= want:
                return fp.readinto(view[:want])
            n = fp.readinto(view[:buffered]) if buffered else 0
            sock.settimeout(None)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", int(timeout), int((timeout % 1) * 1e6)))
            state["direct"] = True
            if n:
                return n
        n = sock.recv_into(view[:want], want, socket.MSG_WAITALL)
        fp.length -= n
        return n

    return read


def pump(resp, drain, *, buffer_size, hasher=None, stop=None, threaded=True, direct_timeout=None):
    """Feed a response body to ``drain(view)`` through the buffer pipeline, hashing each buffer as it arrives.

    The socket is read with readinto() (http.client's response under urllib3, ``raw._fp``) into reused
    buffers; with ``hasher`` each is hashed right away, in the receiving thread, while its bytes are still in
    this core's cache; ``drain`` (a disk write) runs in the pipeline's second thread (in this one with
    ``threaded=False``: range workers, which overlap each other). A content-encoded body, or a response without
    ``_fp``, is read with read1() and copied into the same buffers. ``stop`` (an Event) ends the body early.
    With ``direct_timeout``, a plain-HTTP body is read by ``socket_reader``. ``drain`` errors surface as WriteError.
    """
    raw = resp.raw
    fp = getattr(raw, "_fp", None)
    encoding = resp.headers.get("Content-Encoding", "identity").lower()
    read = socket_reader(resp, direct_timeout) if direct_timeout else None
    if read is not None:
        pass
    elif fp is not None and hasattr(fp, "readinto") and encoding in ("", "identity"):
        def read(view):
            return fp.readinto(view)
    else:
        reader = getattr(raw, "read1", None) or raw.read

        def read(view):
            chunk = reader(len(view), decode_content=True)
            view[:len(chunk)] = chunk
            return len(chunk)

    def fill(view):
        if stop is not None and stop.is_set():
            return 0
        n = read(view)
        if n and hasher is not None:
            hasher.update(view[:n])
        return n

    def guarded(view):
        try:
            drain(view)
        except OSError as exc:
            raise WriteError(exc) from exc

    pipeline(fill, guarded, buffer_size=buffer_size, threaded=threaded)


def write_all(fd, view, offset=None):
    """Write all of ``view`` to ``fd`` (at ``offset`` with pwrite when given)."""
    while len(view):
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        view = view[n:]
        if offset is not None:
            offset += n


# ---------------------------------------------------------------------------
# one stream


def _stream_offset(staging, spec):
    """Bytes of ``staging`` that are a usable prefix for a single stream (a ranged partial keeps its prefix)."""
    if os.path.exists(state_path(staging)) and spec.size is not None:
        prefix = load_ranges(staging, spec.size).prefix()
        with open(staging, "r+b") as f:
            f.truncate(prefix)
        os.unlink(state_path(staging))
        return prefix
    try:
        offset = os.path.getsize(staging)
    except OSError:
        return 0
    if spec.size is not None and offset > spec.size:
        os.unlink(staging)
        return 0
    return offset


def _check_stream_answer(resp, spec, offset, opts, stats):
    """Returns the offset the body starts at (0 when the server ignored Range) and the body length if known."""
    raise_for_http(resp, spec.url, bool(opts.token and spec.auth))
    if offset and resp.status_code == 206:
        crange = resp.headers.get("Content-Range", "")
        if not crange.startswith("bytes %d-" % offset):
            raise TransientError("%s: server answered range %r for offset %d" % (spec.path, crange, offset))
        stats["resumed"] = True
    elif offset:
        stats["restarted"] = True  # 200 to a Range request: the server ignores Range; restart this file
        offset = 0
    length = resp.headers.get("Content-Length", "")
    length = int(length) if length.isdigit() else None
    if spec.size is not None and length is not None and offset + length != spec.size:
        raise PermanentError("%s: server offers %d bytes from offset %d, expected size is %d"
                             % (spec.path, length, offset, spec.size), url=spec.url)
    return offset, length


def _stream_attempt(session, spec, staging, opts, *, progress, stats, carry):
    """One GET of the rest of the file, appended to ``staging``. Returns the hasher, or None to go again."""
    offset = _stream_offset(staging, spec)
    hasher = carry.pop("hasher", None)
    if hasher is None or hasher.count != offset:
        hasher = StreamHasher(spec.git_size)
        if offset:
            hash_file(staging, hasher=hasher)  # the bytes already here, once
    if spec.size is not None and offset >= spec.size:
        return hasher
    resp = open_stream(session, spec, opts, offset)
    written = [0]
    try:
        if resp.status_code == 416 and offset:
            os.unlink(staging)  # our partial is at or past the server's end: start over
            stats["restarted"] = True
            return None
        start, length = _check_stream_answer(resp, spec, offset, opts, stats)
        if start != offset:
            hasher = StreamHasher(spec.git_size)
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if start else os.O_TRUNC), 0o644)
        try:
            def drain(view):
                write_all(fd, view)
                written[0] += len(view)
                if progress is not None:
                    progress.add(len(view))
            try:
                pump(resp, drain, buffer_size=opts.buffer_size, hasher=hasher)
            except WriteError as exc:
                raise PermanentError("%s: cannot write %s: %s" % (spec.path, staging, exc.error), path=spec.path) from exc.error
            except Exception as exc:  # urllib3 ProtocolError, IncompleteRead, timeouts, resets
                carry["hasher"] = hasher
                raise TransientError("%s: connection broken after %d bytes: %s" % (spec.path, start + written[0], exc)) from exc
            carry["hasher"] = hasher
            if (spec.size is not None and start + written[0] < spec.size) or (length is not None and written[0] < length):
                raise TransientError("%s: short read: %d of %d bytes" % (spec.path, start + written[0], spec.size or length))
            os.fsync(fd)
        finally:
            os.close(fd)
        carry.pop("hasher", None)
        return hasher
    finally:
        carry["progressed"] = written[0]
        stats["transferred"] += written[0]
        resp.close()


def download_stream(sessions, spec, staging, opts, *, progress, stats):
    """Fetch (the rest of) a file over one connection, retrying transient failures; returns the hasher."""
    failures = 0
    carry = {}
    while True:
        stats["attempts"] += 1
        try:
            hasher = _stream_attempt(sessions.get(), spec, staging, opts, progress=progress, stats=stats, carry=carry)
            if hasher is not None:
                return hasher
        except TransientError as exc:
            if carry.get("progressed"):
                failures = 0  # progress was made: a flaky link may still finish
            failures += 1
            if failures > opts.retries:
                exc.details.setdefault("bytes_transferred", stats["transferred"])
                raise
            time.sleep(opts.delay(failures))


# ---------------------------------------------------------------------------
# parallel ranges


class RangeIgnored(Exception):
    """The server answered 200 to a ranged GET."""


class _RangedJob:
    """Shared state of one file's range workers."""

    def __init__(self, sessions, spec, fd, *, ranges, chunks, opts, progress, stats):
        self.sessions, self.spec, self.fd, self.ranges, self.opts = sessions, spec, fd, ranges, opts
        self.progress, self.stats = progress, stats
        self.chunks = list(chunks)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.probed = threading.Event()  # the first answer showed whether Range works
        self.errors = []

    def next_chunk(self):
        with self.lock:
            return self.chunks.pop(0) if self.chunks and not self.stop.is_set() else None

    def count(self, key, n=1):
        with self.lock:
            self.stats[key] += n

    def fail(self, exc):
        with self.lock:
            self.errors.append(exc)
        self.stop.set()
        self.probed.set()

    def worker(self, first):
        try:
            if not first:
                self.probed.wait()
            while True:
                chunk = self.next_chunk()
                if chunk is None:
                    return
                self.fetch_range(*chunk)
        except Exception as exc:  # reported by download_ranged
            self.fail(exc)

    def _check(self, resp, start, end):
        if resp.status_code == 200:
            raise RangeIgnored()
        raise_for_http(resp, self.spec.url, bool(self.opts.token and self.spec.auth))
        want = "bytes %d-%d/%d" % (start, end - 1, self.spec.size)
        got = resp.headers.get("Content-Range", "")
        if resp.status_code != 206 or got != want:
            raise PermanentError("%s: asked for %s, server answered %d with range %r" % (self.spec.path, want, resp.status_code, got),
                                 url=self.spec.url)
        self.probed.set()

    def fetch_range(self, start, end):
        """Fetch ``[start, end)``, retrying transient failures from where each attempt stopped."""
        pos = start
        failures = 0
        while pos < end and not self.stop.is_set():
            self.count("attempts")
            written = [0]
            try:
                self._fetch_once(pos, end, written)
            except TransientError:
                if written[0]:
                    failures = 0
                failures += 1
                if failures > self.opts.retries:
                    raise
                time.sleep(self.opts.delay(failures))
            finally:
                pos += written[0]

    def _fetch_once(self, pos, end, written):
        spec = self.spec
        resp = open_stream(self.sessions.get(), spec, self.opts, pos, end)
        try:
            self._check(resp, pos, end)

            def drain(view):
                at = pos + written[0]
                write_all(self.fd, view, at)
                written[0] += len(view)
                self.ranges.add(at, at + len(view))
                self.progress.add(len(view))
            try:
                pump(resp, drain, buffer_size=RANGE_BUFFER_SIZE, stop=self.stop, threaded=False, direct_timeout=self.opts.timeout)
            except WriteError as exc:
                raise PermanentError("%s: cannot write: %s" % (spec.path, exc.error), path=spec.path) from exc.error
            except Exception as exc:  # urllib3 ProtocolError, IncompleteRead, timeouts, resets
                raise TransientError("%s: connection broken at byte %d: %s" % (spec.path, pos + written[0], exc)) from exc
            if pos + written[0] < end and not self.stop.is_set():
                raise TransientError("%s: short read in range %d-%d at byte %d" % (spec.path, pos, end - 1, pos + written[0]))
        finally:
            self.count("transferred", written[0])
            resp.close()


def _save_loop(staging, ranges, stop):
    while not stop.wait(STATE_SAVE_INTERVAL):
        try:
            save_ranges(staging, ranges)
        except OSError:
            pass


def download_ranged(sessions, spec, staging, opts, *, progress, stats):
    """Fetch the missing ranges of a file over ``opts.connections`` connections; returns the hasher.

    Raises RangeIgnored (nothing kept) when the server answers a ranged GET with 200.
    """
    ranges = load_ranges(staging, spec.size)
    if ranges.done_bytes():
        stats["resumed"] = True
    chunks = plan_chunks(ranges.missing(), opts.chunk_size)
    fd = os.open(staging, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size != spec.size:
            os.ftruncate(fd, spec.size)
        save_ranges(staging, ranges)
        prefix = PrefixHasher(fd, ranges, StreamHasher(spec.git_size), opts.buffer_size)
        job = _RangedJob(sessions, spec, fd, ranges=ranges, chunks=chunks, opts=opts,
                         progress=progress if progress is not None else _NullProgress(), stats=stats)
        saver_stop = threading.Event()
        saver = threading.Thread(target=_save_loop, args=(staging, ranges, saver_stop), daemon=True)
        saver.start()
        workers = [threading.Thread(target=job.worker, args=(i == 0,), name="model_fetch-range-%d" % i, daemon=True)
                   for i in range(max(1, min(opts.connections, len(chunks))))] if chunks else []
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        saver_stop.set()
        saver.join()
        hasher = prefix.finish()
        if job.errors:
            raise job.errors[0]
        os.fsync(fd)
    except RangeIgnored:
        os.close(fd)
        fd = None
        drop_ranges(staging)
        raise
    except BaseException:
        os.fdatasync(fd)  # what the state lists is on disk before the state says so
        save_ranges(staging, ranges)
        raise
    finally:
        if fd is not None:
            os.close(fd)
    os.unlink(state_path(staging))
    return hasher


class _NullProgress:
    def add(self, n):
        pass


# ---------------------------------------------------------------------------
# one file, end to end


def _transfer(sessions, spec, staging, opts, *, progress, stats):
    if spec.size is not None and opts.connections > 1 and spec.size > opts.chunk_size:
        try:
            stats["connections"] = opts.connections
            return download_ranged(sessions, spec, staging, opts, progress=progress, stats=stats)
        except RangeIgnored:
            stats["restarted"] = True  # no Range support: one stream from byte 0
            stats["connections"] = 1
    return download_stream(sessions, spec, staging, opts, progress=progress, stats=stats)


def download_one(sessions, spec, final, staging, opts, *, progress=None):
    """Fetch one file into ``staging`` (resuming), verify it, and rename it to ``final``.

    Returns ``{"status", "bytes_transferred", "digests", "restarted", "attempts", "connections"}``.
    """
    stats = {"transferred": 0, "attempts": 0, "resumed": False, "restarted": False, "connections": 1}
    mismatches = 0
    while True:
        hasher = _transfer(sessions, spec, staging, opts, progress=progress, stats=stats)
        digests = hasher.digests()
        algo, want = spec.expected
        got = digests.get(algo)
        if got is None:  # git blob expected but the size was unknown up front
            got = digests["git-sha1"] = hash_file(staging, git_size=hasher.count).git.hexdigest()
        if got == want and (spec.size is None or hasher.count == spec.size):
            break
        drop_ranges(staging)
        mismatches += 1
        if mismatches >= 2:
            raise HashMismatch(
                "%s: checksum mismatch after download: expected %s:%s, got %s:%s (%d bytes from %s)"
                % (spec.path, algo, want, algo, got, hasher.count, spec.url),
                path=spec.path, expected=format_digest(spec.expected), actual="%s:%s" % (algo, got), url=spec.url,
            )
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    os.replace(staging, final)
    fsync_dir(parent)
    status = "resumed" if stats["resumed"] and not stats["restarted"] else "downloaded"
    return {"status": status, "bytes_transferred": stats["transferred"], "digests": digests, "restarted": stats["restarted"],
            "attempts": stats["attempts"], "connections": stats["connections"]}
