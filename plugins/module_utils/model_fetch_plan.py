# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""What DEST should hold: a Hugging Face Hub repository at a revision, or plain URLs with sha256, as FileSpecs."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from urllib.parse import quote, urljoin

from ansible_collections.llmops.inference.plugins.module_utils.model_fetch_common import (
    RESERVED_NAMES,
    SHA1_RE as _SHA1_RE,
    PermanentError,
    TransientError,
    parse_digest,
)

try:
    import requests
except ImportError:  # pragma: no cover - reported by the module (missing_required_lib)
    requests = None

_RETRY_STATUSES = (408, 425, 429, 500, 502, 503, 504)


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


def raise_for_http(resp, what, token_given):
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
    raise_for_http(resp, what, token_given)
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
