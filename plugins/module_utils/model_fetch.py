# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Resumable, verified model downloads for llmops.inference.model_fetch.

Everything here runs without Ansible so it can be unit tested and reused:

* ``hub_plan`` / ``url_plan`` turn a source (Hugging Face Hub repo at a
  revision, or plain URLs with sha256) into a list of ``FileSpec``;
* ``fetch`` makes a destination directory match that list: it trusts a
  manifest (size + mtime) for files it verified before, re-hashes anything
  else, downloads what is missing into ``DEST/.llmops-staging/`` (resuming
  with HTTP Range), hashes while the bytes stream in, and renames verified
  files into place.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import hashlib
import json
import os
import queue
import re
import shutil
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import quote, urljoin

try:
    import requests
    from requests.adapters import HTTPAdapter

    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised on bare targets
    requests = None
    HTTPAdapter = object
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = traceback.format_exc()

STAGING_DIR = ".llmops-staging"
MANIFEST_NAME = ".llmops-manifest.json"
MANIFEST_FORMAT = 1
RESERVED_NAMES = (STAGING_DIR, MANIFEST_NAME)
DEFAULT_ENDPOINT = "https://huggingface.co"
# Network reads use buffers that fit a core's L2 cache: each buffer is hashed right after it arrives, while
# still hot. Measured on the 2-core EPYC CI host (benchmarks/model_fetch/hash_cost.py): with 256 KiB buffers
# verifying a 2 GiB download cost 0.7-1.9 CPU-s over not hashing at all; with 1 or 4 MiB buffers, 3.7-5.5 CPU-s
# (the bytes had left the cache before sha256 read them). Reading files from the page cache uses 4 MiB.
CHUNK_SIZE = 256 * 1024
FILE_CHUNK_SIZE = 4 * 1024 * 1024
USER_AGENT = "llmops.inference-model_fetch/1"

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
_RETRY_STATUSES = (408, 425, 429, 500, 502, 503, 504)


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

    Accepts ``sha256:HEX``, ``git-sha1:HEX`` (a git blob id) or a bare
    64-character sha256.
    """
    if not isinstance(value, str):
        raise FetchError("checksum must be a string, got %r" % (value,))
    text = value.strip().lower()
    algo, sep, hexpart = text.partition(":")
    if not sep:
        algo, hexpart = "sha256", text
    algo = {"sha-256": "sha256", "git": "git-sha1", "gitsha1": "git-sha1", "blob": "git-sha1"}.get(algo, algo)
    if algo == "sha256" and _SHA256_RE.match(hexpart):
        return ("sha256", hexpart)
    if algo == "git-sha1" and _SHA1_RE.match(hexpart):
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


def hash_file(path, git_size=None, limit=None, hasher=None, chunk_size=FILE_CHUNK_SIZE):
    """Hash a file (or its first ``limit`` bytes) in one pass over reused buffers.

    Files larger than two chunks are read by a helper thread while this thread hashes the previous buffer
    (both release the GIL), so the copy out of the page cache or the disk wait overlaps hashing.
    """
    hasher = hasher or StreamHasher(git_size)
    with open(path, "rb", buffering=0) as f:
        total = os.fstat(f.fileno()).st_size if limit is None else min(limit, os.fstat(f.fileno()).st_size)
        try:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except (AttributeError, OSError):
            pass
        if total <= 2 * chunk_size:
            buf = bytearray(chunk_size)
            view = memoryview(buf)
            remaining = total
            while remaining > 0:
                n = f.readinto(view[:min(chunk_size, remaining)])
                if not n:
                    break
                hasher.update(view[:n])
                remaining -= n
            return hasher

        free = queue.Queue()
        for buf in [bytearray(chunk_size) for dummy in range(3)]:
            free.put(buf)
        filled = queue.Queue()
        failure = []

        def read():
            remaining = total
            try:
                while remaining > 0:
                    buf = free.get()
                    if buf is None:
                        return
                    n = f.readinto(memoryview(buf)[:min(chunk_size, remaining)])
                    if not n:
                        break
                    filled.put((buf, n))
                    remaining -= n
            except Exception as exc:  # I/O error: reported by the hashing side
                failure.append(exc)
            finally:
                filled.put(None)

        reader = threading.Thread(target=read, name="model_fetch-reader", daemon=True)
        reader.start()
        try:
            while True:
                item = filled.get()
                if item is None:
                    break
                buf, n = item
                hasher.update(memoryview(buf)[:n])
                free.put(buf)
        finally:
            free.put(None)
            reader.join()
        if failure:
            raise failure[0]
    return hasher


# ---------------------------------------------------------------------------
# paths and patterns


def safe_relpath(path):
    """Validate a repository path so that it stays inside the destination."""
    if not isinstance(path, str) or not path or "\0" in path or "\\" in path:
        raise PermanentError("unsafe file path from source: %r" % (path,))
    if path.startswith("/"):
        raise PermanentError("unsafe file path from source (absolute): %r" % (path,))
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise PermanentError("unsafe file path from source: %r" % (path,))
    if parts[0] in RESERVED_NAMES:
        raise PermanentError("file path %r collides with model_fetch's own bookkeeping names" % (path,))
    return path


def _normalise_patterns(patterns):
    if patterns is None:
        return None
    if isinstance(patterns, str):
        patterns = [patterns]
    # Like huggingface_hub: "folder/" means everything under that folder.
    return [p + "*" if p.endswith("/") else p for p in patterns]


def filter_paths(paths, allow_patterns=None, ignore_patterns=None):
    """Keep paths matching any allow pattern (all when none) and no ignore pattern.

    fnmatch semantics, as huggingface_hub's snapshot_download: ``*`` also
    matches ``/``, and a pattern ending in ``/`` selects a whole folder.
    """
    allow = _normalise_patterns(allow_patterns)
    ignore = _normalise_patterns(ignore_patterns)
    out = []
    for path in paths:
        if allow is not None and not any(fnmatch.fnmatchcase(path, p) for p in allow):
            continue
        if ignore is not None and any(fnmatch.fnmatchcase(path, p) for p in ignore):
            continue
        out.append(path)
    return out


# ---------------------------------------------------------------------------
# plans


@dataclass
class FileSpec:
    path: str
    url: str
    size: int | None
    expected: tuple  # (algo, hex)
    sha256: str | None = None  # known content sha256 (LFS), recorded in the manifest
    auth: bool = False  # send the Hub token with this request

    @property
    def git_size(self):
        return self.size if self.expected[0] == "git-sha1" else None


@dataclass
class Plan:
    source: dict
    files: list
    commit: str | None = None
    network_used: bool = False
    notes: list = field(default_factory=list)


def _raise_for_http(resp, what, token_given):
    code = resp.status_code
    if code < 400:
        return
    err_code = resp.headers.get("X-Error-Code", "")
    err_msg = resp.headers.get("X-Error-Message", "")
    hint = ""
    if code == 401:
        hint = (
            "the server requires authentication: the repository is private or gated, or does not exist"
            + ("; check that the token is valid and has access" if token_given else "; set the token option (or HF_TOKEN)")
        )
    elif code == 403:
        hint = "access denied: the token lacks permission (gated repository: accept its terms on the Hub first)"
    elif code == 404:
        hint = "not found: check repo_id, revision and file names" if not err_code else err_code
    elif code == 416:
        hint = "range not satisfiable"
    detail = "; ".join(x for x in (err_msg, hint) if x)
    msg = "HTTP %d for %s%s" % (code, what, (": " + detail) if detail else "")
    if code in _RETRY_STATUSES:
        raise TransientError(msg, status=code, url=resp.url)
    raise PermanentError(msg, status=code, url=resp.url)


def _hub_repo_prefix(repo_type):
    return {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo_type]


def hub_file_url(endpoint, repo_id, commit, path, repo_type="model"):
    return "%s/%s%s/resolve/%s/%s" % (endpoint.rstrip("/"), _hub_repo_prefix(repo_type), repo_id, commit, quote(path))


def hub_api_url(endpoint, repo_id, revision, repo_type="model"):
    return "%s/api/%ss/%s/revision/%s" % (endpoint.rstrip("/"), repo_type, repo_id, quote(revision, safe=""))


def hub_entries_from_siblings(siblings):
    """Map the model-info ``siblings`` (with ``blobs=true``) to ``{path: (size, digest, sha256)}``."""
    out = {}
    for s in siblings or []:
        path = s.get("rfilename")
        lfs = s.get("lfs") or None
        if lfs and lfs.get("sha256"):
            out[path] = (int(lfs.get("size", s.get("size"))), ("sha256", lfs["sha256"].lower()), lfs["sha256"].lower())
        elif s.get("blobId") and s.get("size") is not None:
            out[path] = (int(s["size"]), ("git-sha1", s["blobId"].lower()), None)
        else:
            out[path] = None
    return out


def hub_entries_from_tree(items):
    """Map the tree API (``/api/models/{repo}/tree/{rev}?recursive=true``) entries."""
    out = {}
    for it in items or []:
        if it.get("type") != "file":
            continue
        lfs = it.get("lfs") or None
        if lfs and (lfs.get("oid") or lfs.get("sha256")):
            sha = (lfs.get("oid") or lfs.get("sha256")).lower()
            out[it["path"]] = (int(lfs.get("size", it.get("size"))), ("sha256", sha), sha)
        elif it.get("oid") and it.get("size") is not None:
            out[it["path"]] = (int(it["size"]), ("git-sha1", it["oid"].lower()), None)
    return out


def _get_json(session, url, what, *, headers, timeout, token_given, params=None):
    try:
        resp = session.get(url, headers=headers, timeout=timeout, params=params)
    except requests.RequestException as exc:
        raise TransientError("cannot reach %s at %s: %s" % (what, url, exc), url=url) from exc
    _raise_for_http(resp, what, token_given)
    try:
        return resp.json(), resp
    except ValueError as exc:
        raise PermanentError("%s at %s did not answer JSON (is endpoint a Hugging Face Hub API?)" % (what, url)) from exc


def hub_list(session, endpoint, repo_id, revision, *, repo_type="model", token=None, timeout=30):
    """Resolve ``revision`` to a commit and list files with sizes and hashes.

    Uses ``GET /api/{type}s/{repo}/revision/{rev}?blobs=true`` and falls
    back to the tree API when a mirror omits blob metadata.
    """
    headers = {"Authorization": "Bearer %s" % token} if token else {}
    what = "%s %s at revision %s" % (repo_type, repo_id, revision)
    info, dummy = _get_json(session, hub_api_url(endpoint, repo_id, revision, repo_type), what, headers=headers, timeout=timeout,
                            token_given=bool(token), params={"blobs": "true"})
    commit = info.get("sha")
    if not commit or not _SHA1_RE.match(str(commit).lower()):
        raise PermanentError("the Hub answer for %s has no commit sha; is endpoint %s a Hugging Face Hub?" % (what, endpoint))
    commit = commit.lower()
    entries = hub_entries_from_siblings(info.get("siblings"))
    if any(v is None for v in entries.values()):
        # Mirror without blob metadata: ask the tree API (paginated with Link headers).
        tree = {}
        url = "%s/api/%ss/%s/tree/%s" % (endpoint.rstrip("/"), repo_type, repo_id, commit)
        params = {"recursive": "true", "expand": "false"}
        while url:
            items, resp = _get_json(session, url, what + " (tree)", headers=headers, timeout=timeout, token_given=bool(token), params=params)
            tree.update(hub_entries_from_tree(items))
            nxt = resp.links.get("next", {}).get("url") if hasattr(resp, "links") else None
            url, params = (urljoin(url, nxt), None) if nxt else (None, None)
        for path, value in entries.items():
            if value is None and path in tree:
                entries[path] = tree[path]
    return commit, entries


def _apply_checksums(files, checksums):
    """Pinned checksums override what the server says; unknown paths are an error."""
    if not checksums:
        return files
    by_path = {f.path: f for f in files}
    unknown = sorted(set(checksums) - set(by_path))
    if unknown:
        raise PermanentError("checksums name files that are not selected from the source: %s" % ", ".join(unknown))
    for path, value in checksums.items():
        spec = by_path[path]
        spec.expected = parse_digest(value)
        if spec.expected[0] == "sha256":
            spec.sha256 = spec.expected[1]
    return files


def hub_source_key(repo_id, repo_type, commit, allow_patterns, ignore_patterns):
    return {
        "type": "hub",
        "repo_type": repo_type,
        "repo_id": repo_id,
        "commit": commit,
        "allow_patterns": list(allow_patterns) if allow_patterns else None,
        "ignore_patterns": list(ignore_patterns) if ignore_patterns else None,
    }


def hub_plan(session, endpoint, repo_id, *, revision="main", repo_type="model", allow_patterns=None, ignore_patterns=None,
             token=None, checksums=None, manifest=None, timeout=30):
    """List what ``DEST`` should hold for a Hub repository.

    A revision that is already a full commit hash, with a manifest recorded
    for the same repo, commit and patterns, needs no network at all: the
    manifest's file list is the plan (air-gapped re-runs stay green).
    """
    revision = revision or "main"
    files = []
    if _SHA1_RE.match(revision.lower()) and manifest:
        key = hub_source_key(repo_id, repo_type, revision.lower(), allow_patterns, ignore_patterns)
        if manifest.get("source") == key and manifest.get("complete") is True:
            for path, entry in sorted(manifest["files"].items()):
                expected = parse_digest(entry["expected"])
                files.append(FileSpec(path=safe_relpath(path), url=hub_file_url(endpoint, repo_id, key["commit"], path, repo_type),
                                      size=entry.get("size"), expected=expected, sha256=entry.get("sha256"), auth=True))
            return Plan(source=key, files=_apply_checksums(files, checksums), commit=key["commit"], network_used=False)
    commit, entries = hub_list(session, endpoint, repo_id, revision, repo_type=repo_type, token=token, timeout=timeout)
    selected = filter_paths(sorted(entries), allow_patterns, ignore_patterns)
    missing_meta = [p for p in selected if entries[p] is None and not (checksums and p in checksums)]
    if missing_meta:
        raise PermanentError("the server gave no size or hash for %s; pin them with the checksums option" % ", ".join(missing_meta))
    for path in selected:
        size, digest, sha = entries[path] if entries[path] is not None else (None, ("sha256", "0" * 64), None)
        files.append(FileSpec(path=safe_relpath(path), url=hub_file_url(endpoint, repo_id, commit, path, repo_type), size=size,
                              expected=digest, sha256=sha, auth=True))
    if not files:
        raise PermanentError("no files selected from %s at %s (check allow_patterns/ignore_patterns)" % (repo_id, commit))
    key = hub_source_key(repo_id, repo_type, commit, allow_patterns, ignore_patterns)
    return Plan(source=key, files=_apply_checksums(files, checksums), commit=commit, network_used=True)


def url_plan(urls, checksums=None):
    """Plain HTTP(S) files: each item has ``url``, ``sha256`` and optional ``path``/``size``."""
    files = []
    seen = set()
    for i, item in enumerate(urls or []):
        url = item.get("url")
        if not url or not re.match(r"^https?://", url):
            raise PermanentError("urls[%d].url must be an http(s) URL, got %r" % (i, url))
        path = item.get("path") or url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        safe_relpath(path)
        if path in seen:
            raise PermanentError("urls[%d]: two entries write the same path %r" % (i, path))
        seen.add(path)
        if not item.get("sha256"):
            raise PermanentError("urls[%d].sha256 is required: plain URLs are only fetched with a known checksum" % i)
        digest = parse_digest(item["sha256"])
        size = item.get("size")
        files.append(FileSpec(path=path, url=url, size=int(size) if size is not None else None, expected=digest,
                              sha256=digest[1] if digest[0] == "sha256" else None))
    if not files:
        raise PermanentError("urls is empty")
    key = {"type": "urls", "files": sorted([f.path, f.url] for f in files)}
    return Plan(source=key, files=_apply_checksums(files, checksums))


# ---------------------------------------------------------------------------
# manifest


def manifest_path(dest):
    return os.path.join(dest, MANIFEST_NAME)


def load_manifest(dest):
    """The manifest, or an empty one when missing, unreadable or of another format."""
    try:
        with open(manifest_path(dest), "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or not isinstance(data.get("files"), dict):
        return {}
    return data


def manifest_entry_matches(entry, spec, st):
    """True when ``entry`` proves the file at ``st`` is ``spec`` without reading it."""
    if not entry or st is None:
        return False
    if entry.get("size") != st.st_size or entry.get("mtime_ns") != st.st_mtime_ns:
        return False
    if spec.size is not None and spec.size != st.st_size:
        return False
    algo, hexd = spec.expected
    recorded = entry.get("sha256") if algo == "sha256" else entry.get("git_sha1")
    return recorded == hexd


def manifest_entry(spec, st, digests):
    entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "expected": format_digest(spec.expected), "sha256": digests.get("sha256")}
    if digests.get("git-sha1"):
        entry["git_sha1"] = digests["git-sha1"]
    return entry


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


def write_json_atomic(path, data):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    payload = json.dumps(data, indent=1, sort_keys=True).encode("utf-8") + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))


# ---------------------------------------------------------------------------
# download engine


def staging_name(spec):
    """Partial files are keyed by path and expected content, so a resume never mixes revisions."""
    tag = hashlib.sha256(spec.path.encode("utf-8")).hexdigest()[:16]
    return "%s-%s.part" % (tag, spec.expected[1][:16])


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


class _Sessions:
    """One requests.Session per worker thread (Session is not thread-safe)."""

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
        for s in self.all:
            s.close()


@dataclass
class Options:
    parallel: int = 4
    retries: int = 5
    backoff: float = 1.0
    backoff_max: float = 30.0
    timeout: float = 30.0
    chunk_size: int = CHUNK_SIZE
    verify: str = "fast"  # fast: trust manifest size+mtime; full: re-hash everything
    prune: bool = True
    token: str | None = None


class _Progress:
    def __init__(self):
        self.lock = threading.Lock()
        self.bytes = 0

    def add(self, n):
        with self.lock:
            self.bytes += n


def _open_stream(session, spec, offset, opts):
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = "bytes=%d-" % offset
    if spec.auth and opts.token:
        headers["Authorization"] = "Bearer %s" % opts.token
    try:
        return session.get(spec.url, headers=headers, stream=True, timeout=(opts.timeout, opts.timeout))
    except requests.RequestException as exc:
        raise TransientError("%s: request failed: %s" % (spec.path, exc), url=spec.url) from exc


def download_one(session, spec, final, staging, opts, *, progress=None):
    """Fetch one file into ``staging`` (resuming), verify it, and rename it to ``final``.

    Returns ``{"status", "bytes_transferred", "digests", "restarted", "attempts"}``.
    """
    failures = 0
    mismatches = 0
    transferred = 0
    resumed = False
    restarted = False
    attempts = 0
    carried = None
    while True:
        attempts += 1
        progressed = 0
        try:
            try:
                offset = os.path.getsize(staging)
            except OSError:
                offset = 0
            if spec.size is not None and offset > spec.size:
                os.unlink(staging)
                offset = 0
            if carried is not None and carried.count == offset:
                hasher = carried  # a retry in this run: the partial's bytes are already hashed
            else:
                hasher = StreamHasher(spec.git_size)
                if offset:
                    hash_file(staging, hasher=hasher)  # the bytes already here, once
            carried = None
            if spec.size is None or offset < spec.size:
                resp = _open_stream(session, spec, offset, opts)
                try:
                    if resp.status_code == 416 and offset:
                        # Our partial is at or past the server's end: start over.
                        os.unlink(staging)
                        restarted = True
                        continue
                    _raise_for_http(resp, spec.url, bool(opts.token and spec.auth))
                    mode = "ab"
                    if offset and resp.status_code == 206:
                        crange = resp.headers.get("Content-Range", "")
                        if not crange.startswith("bytes %d-" % offset):
                            raise TransientError("%s: server answered range %r for offset %d" % (spec.path, crange, offset))
                        resumed = True
                    elif offset:
                        # 200 to a Range request: the server ignores Range. Restart this file.
                        restarted = True
                        hasher = StreamHasher(spec.git_size)
                        offset = 0
                        mode = "wb"
                    expected_len = None
                    if resp.headers.get("Content-Length", "").isdigit():
                        expected_len = int(resp.headers["Content-Length"])
                    if spec.size is not None and expected_len is not None and offset + expected_len != spec.size:
                        raise PermanentError("%s: server offers %d bytes from offset %d, expected size is %d"
                                             % (spec.path, expected_len, offset, spec.size), url=spec.url)
                    with open(staging, mode, buffering=0) as out:
                        counter = [0]
                        try:
                            _pump(resp, out, hasher, chunk_size=opts.chunk_size, counter=counter, progress=progress)
                        except _WriteError as exc:
                            progressed = counter[0]
                            raise PermanentError("%s: cannot write %s: %s" % (spec.path, staging, exc.error), path=spec.path) from exc.error
                        except Exception as exc:  # urllib3 ProtocolError, IncompleteRead, timeouts, resets
                            progressed = counter[0]
                            carried = hasher
                            raise TransientError("%s: connection broken after %d bytes: %s" % (spec.path, offset + progressed, exc)) from exc
                        progressed = counter[0]
                        carried = hasher
                        progressed = counter[0]
                        if spec.size is not None and offset + progressed < spec.size:
                            raise TransientError("%s: short read: %d of %d bytes" % (spec.path, offset + progressed, spec.size))
                        if expected_len is not None and progressed < expected_len:
                            raise TransientError("%s: short read: %d of %d bytes" % (spec.path, progressed, expected_len))
                        os.fsync(out.fileno())
                finally:
                    transferred += progressed
                    resp.close()
            digests = hasher.digests()
            size = hasher.count
            algo, want = spec.expected
            got = digests.get(algo)
            if got is None:  # git blob expected but size was unknown up front
                got = git_blob_sha1_of_file(staging, size)
                digests["git-sha1"] = got
            if got != want or (spec.size is not None and size != spec.size):
                os.unlink(staging)
                mismatches += 1
                if mismatches >= 2 or failures >= opts.retries:
                    raise HashMismatch(
                        "%s: checksum mismatch after download: expected %s:%s, got %s:%s (%d bytes from %s)"
                        % (spec.path, algo, want, algo, got, size, spec.url),
                        path=spec.path, expected=format_digest(spec.expected), actual="%s:%s" % (algo, got), url=spec.url,
                    )
                continue
            parent = os.path.dirname(final)
            os.makedirs(parent, exist_ok=True)
            os.replace(staging, final)
            fsync_dir(parent)
            status = "resumed" if resumed and not restarted else "downloaded"
            return {"status": status, "bytes_transferred": transferred, "digests": digests, "restarted": restarted, "attempts": attempts}
        except TransientError as exc:
            if progressed:
                failures = 0  # progress was made: a flaky link may still finish
            failures += 1
            if failures > opts.retries:
                exc.details.setdefault("bytes_transferred", transferred)
                raise
            time.sleep(min(opts.backoff_max, opts.backoff * (2 ** (failures - 1))))


class _WriteError(Exception):
    """A local write failed (disk full, I/O error): not worth a network retry."""

    def __init__(self, error):
        super().__init__(str(error))
        self.error = error


def _write_all(fd, view):
    try:
        while len(view):
            n = os.write(fd, view)
            view = view[n:]
    except OSError as exc:
        raise _WriteError(exc) from exc


def _pump(resp, out, hasher, *, chunk_size, counter, progress=None):
    """Copy the response body to ``out`` while hashing it; ``counter[0]`` is the number of bytes written so far.

    Fast path: the socket is read with readinto() into a few reused buffers, each hashed right away while its
    bytes are still in this core's cache, while a second thread writes the previous buffers to disk (os.write
    releases the GIL, and blocks when the kernel throttles dirty pages), so receiving and hashing overlap disk
    writes, and no per-chunk allocation happens. It reads http.client's response under urllib3 (``raw._fp``);
    when that is not available, or the body is content-encoded, a plain read1() loop does the same serially.
    """
    fd = out.fileno()
    raw = resp.raw
    fp = getattr(raw, "_fp", None)
    encoding = resp.headers.get("Content-Encoding", "identity").lower()
    if fp is None or not hasattr(fp, "readinto") or encoding not in ("", "identity"):
        reader = getattr(raw, "read1", None) or raw.read
        while True:
            chunk = reader(chunk_size, decode_content=True)
            if not chunk:
                return
            hasher.update(chunk)
            _write_all(fd, memoryview(chunk))
            counter[0] += len(chunk)
            if progress is not None:
                progress.add(len(chunk))

    free = queue.Queue()
    for buf in [bytearray(chunk_size) for dummy in range(4)]:
        free.put(buf)
    filled = queue.Queue()
    failure = []

    def consume():
        while True:
            item = filled.get()
            if item is None:
                return
            buf, n = item
            try:
                if not failure:
                    _write_all(fd, memoryview(buf)[:n])
                    counter[0] += n
                    if progress is not None:
                        progress.add(n)
            except Exception as exc:  # disk full (_WriteError): stop the reader too
                failure.append(exc)
            free.put(buf)

    worker = threading.Thread(target=consume, name="model_fetch-writer", daemon=True)
    worker.start()
    try:
        while not failure:
            buf = free.get()
            view = memoryview(buf)
            n = fp.readinto(buf)  # fills the buffer unless the body ends (or breaks: then the rest is returned first)
            if not n:
                break
            hasher.update(view[:n])  # while the bytes are still in this core's cache
            filled.put((buf, n))
    finally:
        filled.put(None)
        worker.join()
    if failure:
        raise failure[0]


def git_blob_sha1_of_file(path, size):
    return hash_file(path, git_size=size).git.hexdigest()


def _inspect(dest, spec, entry, opts):
    """What to do with one file: ``present`` (manifest says so), ``verified`` (re-hashed, fine) or ``fetch``."""
    final = os.path.join(dest, spec.path)
    try:
        st = os.stat(final)
    except OSError:
        st = None
    if st is not None and not os.path.isfile(final):
        raise PermanentError("%s exists and is not a regular file" % final)
    if st is not None and opts.verify != "full" and manifest_entry_matches(entry, spec, st):
        return "present", st, {"sha256": entry.get("sha256"), "git-sha1": entry.get("git_sha1")}, False
    if st is not None and (spec.size is None or st.st_size == spec.size):
        digests = hash_file(final, git_size=st.st_size if spec.expected[0] == "git-sha1" else None).digests()
        if digests.get(spec.expected[0]) == spec.expected[1]:
            return "verified", st, digests, False
    return "fetch", st, None, st is not None


def _staged_offset(dest, spec):
    try:
        n = os.path.getsize(os.path.join(dest, STAGING_DIR, staging_name(spec)))
    except OSError:
        return 0
    return n if spec.size is None or n <= spec.size else 0


def _head_size(session, spec, opts):
    headers = {"Accept-Encoding": "identity"}
    if spec.auth and opts.token:
        headers["Authorization"] = "Bearer %s" % opts.token
    try:
        resp = session.head(spec.url, headers=headers, allow_redirects=True, timeout=opts.timeout)
    except requests.RequestException as exc:
        raise TransientError("%s: HEAD failed: %s" % (spec.path, exc), url=spec.url) from exc
    _raise_for_http(resp, spec.url, bool(opts.token and spec.auth))
    length = resp.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


class _DirLock:
    """flock on the destination directory: two runs on one DEST take turns."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self):
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def fetch(dest, plan_fn, opts, check_mode=False, sessions=None):
    """Make ``dest`` match the plan returned by ``plan_fn(session, manifest)``.

    Returns a result dict (see the module's RETURN). Raises FetchError.
    """
    if not HAS_REQUESTS:
        raise FetchError("the requests library is required")
    started = time.monotonic()
    dest = os.path.abspath(dest)
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise PermanentError("dest %s exists and is not a directory" % dest)
    sessions = sessions or _Sessions(pool=max(2, opts.parallel))
    lock = None
    created_dirs = []
    try:
        if not check_mode:
            if not os.path.isdir(dest):
                missing = []
                p = dest
                while p and not os.path.exists(p):
                    missing.append(p)
                    p = os.path.dirname(p)
                os.makedirs(dest, exist_ok=True)
                created_dirs.extend(reversed(missing))
            lock = _DirLock(dest)
        manifest = load_manifest(dest)
        plan = plan_fn(sessions.get(), manifest)
        old_files = manifest.get("files", {}) if manifest else {}

        results = {}
        new_entries = {}
        to_fetch = []
        for spec in plan.files:
            state, st, digests, replace = _inspect(dest, spec, old_files.get(spec.path), opts)
            if state in ("present", "verified"):
                new_entries[spec.path] = manifest_entry(spec, st, digests) if state == "verified" else dict(old_files[spec.path])
                results[spec.path] = {"path": spec.path, "status": state, "size": st.st_size, "bytes_transferred": 0,
                                      "sha256": digests.get("sha256")}
            else:
                to_fetch.append((spec, replace))

        # Sizes for the free-space check, before the first byte is written.
        for spec in [item[0] for item in to_fetch]:
            if spec.size is None:
                spec.size = _head_size(sessions.get(), spec, opts)
        offsets = {spec.path: _staged_offset(dest, spec) for spec, dummy in to_fetch}
        need = sum(max(0, (spec.size or 0) - offsets[spec.path]) for spec, dummy in to_fetch)
        pruned = sorted(p for p in old_files if p not in {s.path for s in plan.files})
        summary_base = {
            "dest": dest,
            "manifest": manifest_path(dest),
            "source": plan.source,
            "commit": plan.commit,
            "network_used": plan.network_used,
            "bytes_to_fetch": need,
            "bytes_total": sum((s.size or 0) for s in plan.files),
            "files_total": len(plan.files),
        }
        if check_mode:
            free = free_bytes(dest)
            summary_base["bytes_free"] = free
            if need > free:
                summary_base["warnings"] = ["not enough free space in %s: %s to download, %s free" % (dest, human_bytes(need), human_bytes(free))]
            for spec, replace in to_fetch:
                results[spec.path] = {"path": spec.path, "status": "would_resume" if offsets[spec.path] else "would_download",
                                      "size": spec.size, "bytes_transferred": 0, "sha256": spec.sha256, "replace": replace}
            files = [results[s.path] for s in plan.files]
            return dict(summary_base, changed=bool(to_fetch or pruned or (plan.files and not manifest)), files=files, pruned=pruned,
                        bytes_transferred=0, elapsed=round(time.monotonic() - started, 3), throughput=0, created_dirs=[])

        if to_fetch:
            free = free_bytes(os.path.join(dest, STAGING_DIR))
            if need > free:
                raise PermanentError(
                    "not enough free space in %s: %s (%d bytes) still to download for %d file(s), only %s (%d bytes) free"
                    % (dest, human_bytes(need), need, len(to_fetch), human_bytes(free), free),
                    bytes_needed=need, bytes_free=free,
                )
            os.makedirs(os.path.join(dest, STAGING_DIR), exist_ok=True)

        progress = _Progress()
        failures = []
        manifest_lock = threading.Lock()
        # While files arrive the manifest is marked incomplete; it lists what is verified in place, plus
        # files a previous run owned that this plan drops (so a later run can still prune them).
        current = {"format": MANIFEST_FORMAT, "tool": "llmops.inference.model_fetch", "source": plan.source,
                   "complete": False, "files": dict(new_entries)}
        for path in pruned:
            current["files"][path] = old_files[path]

        def record(spec, digests):
            st = os.stat(os.path.join(dest, spec.path))
            with manifest_lock:
                current["files"][spec.path] = manifest_entry(spec, st, digests)
                write_json_atomic(manifest_path(dest), current)
            return st

        def work(item):
            spec, replace = item
            final = os.path.join(dest, spec.path)
            staging = os.path.join(dest, STAGING_DIR, staging_name(spec))
            for d in _missing_parents(dest, spec.path):
                created_dirs.append(d)
            res = download_one(sessions.get(), spec, final, staging, opts, progress=progress)
            st = record(spec, res["digests"])
            return {"path": spec.path, "status": res["status"], "size": st.st_size, "bytes_transferred": res["bytes_transferred"],
                    "sha256": res["digests"].get("sha256"), "restarted": res["restarted"], "replaced": replace,
                    "attempts": res["attempts"]}

        ordered = sorted(to_fetch, key=lambda it: -(it[0].size or 0))
        if ordered:
            with ThreadPoolExecutor(max_workers=max(1, min(opts.parallel, len(ordered)))) as pool:
                futures = [(item[0], pool.submit(work, item)) for item in ordered]
                for spec, fut in futures:
                    try:
                        results[spec.path] = fut.result()
                    except FetchError as exc:
                        failures.append((spec, exc))
                    except OSError as exc:
                        failures.append((spec, FetchError("%s: %s" % (spec.path, exc))))

        if failures:
            with manifest_lock:
                write_json_atomic(manifest_path(dest), current)
            first = failures[0][1]
            msg = first.msg if len(failures) == 1 else "%d files failed; first: %s; others: %s" % (
                len(failures), first.msg, "; ".join(e.msg for dummy, e in failures[1:]))
            details = dict(first.details)
            details["failed"] = [dict(path=s.path, msg=e.msg, **{k: v for k, v in e.details.items() if k in ("expected", "actual", "status")})
                                 for s, e in failures]
            details["bytes_transferred"] = progress.bytes
            raise type(first)(msg, **details)

        # All selected files are in place: drop what the manifest owned but the plan no longer wants.
        if opts.prune:
            for path in pruned:
                _remove_owned(dest, path)
        else:
            pruned = []
        current["files"] = {s.path: current["files"][s.path] for s in plan.files}
        current["complete"] = True
        changed = bool(to_fetch or pruned)
        if current != manifest:
            write_json_atomic(manifest_path(dest), current)
            changed = True
        _clean_staging(dest)

        elapsed = time.monotonic() - started
        files = [results[s.path] for s in plan.files]
        return dict(summary_base, changed=changed, files=files, pruned=pruned, bytes_transferred=progress.bytes,
                    elapsed=round(elapsed, 3), throughput=int(progress.bytes / elapsed) if elapsed > 0 else 0,
                    created_dirs=created_dirs)
    finally:
        if lock is not None:
            lock.release()
        sessions.close()


def _missing_parents(dest, relpath):
    out = []
    parts = relpath.split("/")[:-1]
    p = dest
    for part in parts:
        p = os.path.join(p, part)
        if not os.path.isdir(p):
            out.append(p)
    return out


def _remove_owned(dest, relpath):
    path = os.path.join(dest, relpath)
    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
    parent = os.path.dirname(path)
    while parent != dest and parent.startswith(dest + os.sep):
        try:
            os.rmdir(parent)
        except OSError:
            break
        parent = os.path.dirname(parent)


def _clean_staging(dest):
    """After a complete run every selected file is in place: partials left are stale."""
    staging = os.path.join(dest, STAGING_DIR)
    try:
        names = os.listdir(staging)
    except OSError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(staging, name))
        except OSError:
            pass
    try:
        os.rmdir(staging)
    except OSError:
        pass


# ---------------------------------------------------------------------------
# entry point shared by the module and the tests

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
    "retries": 5,
    "backoff": 1.0,
    "timeout": 30,
    "validate_certs": True,
    "ca_path": None,
    "prune": True,
}


def run(params, check_mode=False):
    """Run model_fetch with module-style parameters (see the module's DOCUMENTATION)."""
    p = dict(DEFAULTS)
    p.update({k: v for k, v in params.items() if v is not None})
    if bool(p["repo_id"]) == bool(p["urls"]):
        raise PermanentError("set exactly one source: repo_id (Hugging Face Hub) or urls (plain HTTP(S) with sha256)")
    if p["parallel"] < 1 or p["retries"] < 0:
        raise PermanentError("parallel must be >= 1 and retries >= 0")
    checksums = p["checksums"] or None
    if checksums:
        for path, value in checksums.items():
            parse_digest(value)
            safe_relpath(path)
    opts = Options(parallel=p["parallel"], retries=p["retries"], backoff=float(p["backoff"]), timeout=float(p["timeout"]),
                   verify=p["verify"], prune=p["prune"], token=p["token"], chunk_size=int(p.get("chunk_size") or CHUNK_SIZE))
    if p["repo_id"]:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$", p["repo_id"]):
            raise PermanentError("repo_id %r is not a Hub repository id (expected 'namespace/name')" % p["repo_id"])
        endpoint = p["endpoint"].rstrip("/")

        def plan_fn(session, manifest):
            return hub_plan(session, endpoint, p["repo_id"], revision=p["revision"], repo_type=p["repo_type"],
                            allow_patterns=p["allow_patterns"], ignore_patterns=p["ignore_patterns"], token=p["token"],
                            checksums=checksums, manifest=manifest, timeout=opts.timeout)
    else:
        def plan_fn(session, manifest):
            return url_plan(p["urls"], checksums)

    sessions = _Sessions(validate_certs=p["validate_certs"], ca_path=p["ca_path"], pool=max(2, opts.parallel))
    return fetch(p["dest"], plan_fn, opts, check_mode=check_mode, sessions=sessions)
