# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Resumable, verified model downloads for llmops.inference.model_fetch: the entry point.

Everything here runs without Ansible so it can be unit tested and reused. The logic is split by concern:

* ``model_fetch_common``: option defaults (stated once), errors, digests, the buffer pipeline;
* ``model_fetch_plan``: ``hub_plan`` / ``url_plan`` turn a source into a list of ``FileSpec``;
* ``model_fetch_manifest``: the manifest that lets a re-run trust files it verified before;
* ``model_fetch_ranges`` / ``model_fetch_transfer``: moving bytes (parallel ranges, one stream, resume);
* ``model_fetch_progress``: the progress file and figures;
* this file: ``fetch`` makes a destination directory match a plan, ``run`` takes module-style parameters.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.llmops.inference.plugins.module_utils.model_fetch_common import (  # noqa: F401 (re-exported)
    BUFFER_SIZE,
    DEFAULT_ENDPOINT,
    DEFAULTS,
    FILE_BUFFER_SIZE,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    PROGRESS_NAME,
    STAGING_DIR,
    FetchError,
    HashMismatch,
    PermanentError,
    StreamHasher,
    TransientError,
    format_digest,
    free_bytes,
    git_blob_sha1,
    hash_file,
    human_bytes,
    parse_digest,
    pipeline,
    write_json_atomic,
)
from ansible_collections.llmops.inference.plugins.module_utils.model_fetch_manifest import (  # noqa: F401 (re-exported)
    load_manifest,
    manifest_entry,
    manifest_entry_matches,
    manifest_path,
    staging_name,
)
from ansible_collections.llmops.inference.plugins.module_utils.model_fetch_plan import (  # noqa: F401 (re-exported)
    FileSpec,
    Plan,
    filter_paths,
    hub_api_url,
    hub_entries_from_siblings,
    hub_entries_from_tree,
    hub_file_url,
    hub_list,
    hub_plan,
    hub_source_key,
    safe_relpath,
    url_plan,
)
from ansible_collections.llmops.inference.plugins.module_utils.model_fetch_progress import Progress
from ansible_collections.llmops.inference.plugins.module_utils.model_fetch_ranges import load_ranges
from ansible_collections.llmops.inference.plugins.module_utils.model_fetch_transfer import (  # noqa: F401 (re-exported)
    HAS_REQUESTS,
    REQUESTS_IMPORT_ERROR,
    Options,
    Sessions,
    download_one,
    head_size,
    pump,
)

# The public names of model_fetch, wherever they live (tests, benchmarks and the module import them from here).
__all__ = [
    "BUFFER_SIZE", "DEFAULT_ENDPOINT", "DEFAULTS", "FILE_BUFFER_SIZE", "HAS_REQUESTS", "MANIFEST_FORMAT", "MANIFEST_NAME",
    "PROGRESS_NAME", "REQUESTS_IMPORT_ERROR", "STAGING_DIR", "FetchError", "FileSpec", "HashMismatch", "Options", "PermanentError",
    "Plan", "Progress", "Sessions", "StreamHasher", "TransientError", "download_one", "fetch", "filter_paths", "format_digest",
    "free_bytes", "git_blob_sha1", "hash_file", "head_size", "hub_api_url", "hub_entries_from_siblings", "hub_entries_from_tree",
    "hub_file_url", "hub_list", "hub_plan", "hub_source_key", "human_bytes", "load_manifest", "manifest_entry",
    "manifest_entry_matches", "manifest_path", "parse_digest", "pipeline", "pump", "run", "safe_relpath", "staging_name",
    "url_plan", "write_json_atomic",
]


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


def _staged_bytes(dest, spec):
    """Bytes of this file already in the staging area (a partial range set or a single-stream prefix)."""
    staging = os.path.join(dest, STAGING_DIR, staging_name(spec))
    if spec.size is None:
        try:
            return os.path.getsize(staging)
        except OSError:
            return 0
    return load_ranges(staging, spec.size).done_bytes()


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


def _make_dest(dest):
    """Create ``dest`` when missing; returns the directories created, outermost first."""
    missing = []
    p = dest
    while p and not os.path.exists(p):
        missing.append(p)
        p = os.path.dirname(p)
    os.makedirs(dest, exist_ok=True)
    return list(reversed(missing))


def _sort_plan(dest, plan, old_files, opts):
    """Split the plan into files already right (results, manifest entries) and files to fetch."""
    results, entries, to_fetch = {}, {}, []
    for spec in plan.files:
        state, st, digests, replace = _inspect(dest, spec, old_files.get(spec.path), opts)
        if state in ("present", "verified"):
            entries[spec.path] = manifest_entry(spec, st, digests) if state == "verified" else dict(old_files[spec.path])
            results[spec.path] = {"path": spec.path, "status": state, "size": st.st_size, "bytes_transferred": 0,
                                  "sha256": digests.get("sha256")}
        else:
            to_fetch.append((spec, replace))
    return results, entries, to_fetch


def _would_change(plan, manifest, results, to_fetch, owned_gone):
    """What a real run's ``changed`` would be: files to fetch or drop, or a manifest it would rewrite."""
    if to_fetch or owned_gone or (plan.files and not manifest):
        return True
    if manifest and (manifest.get("source") != plan.source or manifest.get("complete") is not True):
        return True
    return any(r["status"] == "verified" for r in results.values())


def _check_mode_result(dest, plan, manifest, *, results, to_fetch, staged, pruned, summary):
    free = free_bytes(dest)
    summary["bytes_free"] = free
    if summary["bytes_to_fetch"] > free:
        summary["warnings"] = ["not enough free space in %s: %s to download, %s free"
                               % (dest, human_bytes(summary["bytes_to_fetch"]), human_bytes(free))]
    for spec, replace in to_fetch:
        results[spec.path] = {"path": spec.path, "status": "would_resume" if staged[spec.path] else "would_download",
                              "size": spec.size, "bytes_transferred": 0, "sha256": spec.sha256, "replace": replace}
    changed = _would_change(plan, manifest, results, to_fetch, summary.pop("owned_gone"))
    return dict(summary, changed=changed, files=[results[s.path] for s in plan.files],
                pruned=pruned, bytes_transferred=0, throughput=0, created_dirs=[])


def _download_all(dest, to_fetch, sessions, opts, *, progress, current, created_dirs):
    """Fetch the files (``opts.parallel`` at a time), recording each verified file in the manifest as it lands."""
    manifest_lock = threading.Lock()
    results, failures = {}, []

    def work(item):
        spec, replace = item
        created_dirs.extend(_missing_parents(dest, spec.path))
        staging = os.path.join(dest, STAGING_DIR, staging_name(spec))
        res = download_one(sessions, spec, os.path.join(dest, spec.path), staging, opts, progress=progress)
        st = os.stat(os.path.join(dest, spec.path))
        with manifest_lock:
            current["files"][spec.path] = manifest_entry(spec, st, res["digests"])
            write_json_atomic(manifest_path(dest), current)
        progress.file_done()
        return {"path": spec.path, "status": res["status"], "size": st.st_size, "bytes_transferred": res["bytes_transferred"],
                "sha256": res["digests"].get("sha256"), "restarted": res["restarted"], "replaced": replace,
                "attempts": res["attempts"], "connections": res["connections"]}

    ordered = sorted(to_fetch, key=lambda it: -(it[0].size or 0))
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
        details["failures"] = [dict(path=s.path, msg=e.msg, **{k: v for k, v in e.details.items() if k in ("expected", "actual", "status")})
                               for s, e in failures]
        details["bytes_transferred"] = progress.bytes
        raise type(first)(msg, **details)
    return results


def _prepare(dest, plan, sessions, opts, to_fetch):
    """Sizes (HEAD when unknown), bytes already staged, and bytes still to download."""
    for spec in [item[0] for item in to_fetch]:
        if spec.size is None:
            spec.size = head_size(sessions.get(), spec, opts)
    staged = {spec.path: _staged_bytes(dest, spec) for spec, dummy in to_fetch}
    need = sum(max(0, (spec.size or 0) - staged[spec.path]) for spec, dummy in to_fetch)
    return staged, need


def fetch(dest, plan_fn, opts, check_mode=False, *, sessions=None, progress=None):
    """Make ``dest`` match the plan returned by ``plan_fn(session, manifest)``.

    Returns a result dict (see the module's RETURN). Raises FetchError.
    """
    if not HAS_REQUESTS:
        raise FetchError("the requests library is required")
    started = time.monotonic()
    dest = os.path.abspath(dest)
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise PermanentError("dest %s exists and is not a directory" % dest)
    sessions = sessions or Sessions(pool=max(2, opts.parallel))
    progress = progress or Progress()
    lock = None
    created_dirs = []
    try:
        if not check_mode:
            if not os.path.isdir(dest):
                created_dirs.extend(_make_dest(dest))
            lock = _DirLock(dest)
            progress.start()
        manifest = load_manifest(dest)
        plan = plan_fn(sessions.get(), manifest)
        old_files = manifest.get("files", {}) if manifest else {}
        results, new_entries, to_fetch = _sort_plan(dest, plan, old_files, opts)
        staged, need = _prepare(dest, plan, sessions, opts, to_fetch)
        owned_gone = sorted(p for p in old_files if p not in {s.path for s in plan.files})
        pruned = owned_gone if opts.prune else []
        progress.plan(need, len(to_fetch))
        summary = {"dest": dest, "manifest": manifest_path(dest), "source": plan.source, "commit": plan.commit,
                   "network_used": plan.network_used, "bytes_to_fetch": need, "bytes_total": sum((s.size or 0) for s in plan.files),
                   "files_total": len(plan.files)}
        if check_mode:
            out = _check_mode_result(dest, plan, manifest, results=results, to_fetch=to_fetch, staged=staged, pruned=pruned,
                                     summary=dict(summary, owned_gone=owned_gone))
            out["elapsed"] = round(time.monotonic() - started, 3)
            return out
        if to_fetch:
            free = free_bytes(os.path.join(dest, STAGING_DIR))
            if need > free:
                raise PermanentError(
                    "not enough free space in %s: %s (%d bytes) still to download for %d file(s), only %s (%d bytes) free"
                    % (dest, human_bytes(need), need, len(to_fetch), human_bytes(free), free), bytes_needed=need, bytes_free=free)
            os.makedirs(os.path.join(dest, STAGING_DIR), exist_ok=True)
        # While files arrive the manifest is marked incomplete; it lists what is verified in place, plus
        # files a previous run owned that this plan drops (so a later run can still prune them).
        current = {"format": MANIFEST_FORMAT, "tool": "llmops.inference.model_fetch", "source": plan.source,
                   "complete": False, "files": dict(new_entries)}
        for path in owned_gone:
            current["files"][path] = old_files[path]
        if to_fetch:
            results.update(_download_all(dest, to_fetch, sessions, opts, progress=progress, current=current,
                                         created_dirs=created_dirs))
        changed = _finish(dest, plan, manifest, current, pruned=pruned, fetched=bool(to_fetch))
        elapsed = time.monotonic() - started
        return dict(summary, changed=changed, files=[results[s.path] for s in plan.files], pruned=pruned,
                    bytes_transferred=progress.bytes, elapsed=round(elapsed, 3),
                    throughput=int(progress.bytes / elapsed) if elapsed > 0 else 0, created_dirs=created_dirs)
    finally:
        if lock is not None:
            lock.release()
        sessions.close()


def _finish(dest, plan, manifest, current, *, pruned, fetched):
    """All selected files are in place: prune, complete the manifest, clean the staging area. Returns changed."""
    for path in pruned:
        _remove_owned(dest, path)
    current["files"] = {s.path: current["files"][s.path] for s in plan.files}
    current["complete"] = True
    changed = bool(fetched or pruned)
    if current != manifest:
        write_json_atomic(manifest_path(dest), current)
        changed = True
    _clean_staging(dest)
    return changed


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


def _validate(p):
    if bool(p["repo_id"]) == bool(p["urls"]):
        raise PermanentError("set exactly one source: repo_id (Hugging Face Hub) or urls (plain HTTP(S) with sha256)")
    if p["parallel"] < 1 or p["retries"] < 0:
        raise PermanentError("parallel must be >= 1 and retries >= 0")
    if p["connections"] < 1 or p["chunk_size"] < BUFFER_SIZE:
        raise PermanentError("connections must be >= 1 and chunk_size >= %d (256 KiB)" % BUFFER_SIZE)
    for path, value in (p["checksums"] or {}).items():
        parse_digest(value)
        safe_relpath(path)
    if p["repo_id"] and not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$", p["repo_id"]):
        raise PermanentError("repo_id %r is not a Hub repository id (expected 'namespace/name')" % p["repo_id"])


def run(params, check_mode=False):
    """Run model_fetch with module-style parameters (see the module's DOCUMENTATION); ``DEFAULTS`` fill the gaps."""
    p = dict(DEFAULTS)
    p.update({k: v for k, v in params.items() if v is not None})
    _validate(p)
    checksums = p["checksums"] or None
    opts = Options(parallel=p["parallel"], connections=p["connections"], chunk_size=int(p["chunk_size"]), retries=p["retries"],
                   backoff=float(p["backoff"]), timeout=float(p["timeout"]), verify=p["verify"], prune=p["prune"], token=p["token"],
                   buffer_size=int(params.get("buffer_size") or BUFFER_SIZE))
    if p["repo_id"]:
        endpoint = p["endpoint"].rstrip("/")

        def plan_fn(session, manifest):
            return hub_plan(session, endpoint, p["repo_id"], revision=p["revision"], repo_type=p["repo_type"],
                            allow_patterns=p["allow_patterns"], ignore_patterns=p["ignore_patterns"], token=p["token"],
                            checksums=checksums, manifest=manifest, timeout=opts.timeout)
    else:
        def plan_fn(session, manifest):
            return url_plan(p["urls"], checksums)

    dest = os.path.abspath(p["dest"])
    progress_file = p["progress_file"] or os.path.join(dest, PROGRESS_NAME)
    progress = Progress(path=None if check_mode else progress_file, progress_id=p["progress_id"])
    sessions = Sessions(validate_certs=p["validate_certs"], ca_path=p["ca_path"], pool=max(2, opts.parallel))
    try:
        result = fetch(dest, plan_fn, opts, check_mode=check_mode, sessions=sessions, progress=progress)
    except BaseException:
        if not check_mode and progress.path and os.path.isdir(os.path.dirname(progress.path)):
            progress.stop("failed")
        raise
    if not check_mode:
        result["progress"] = progress.stop("done")
        result["progress_file"] = progress_file
    return result
