# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""The manifest (``DEST/.llmops-manifest.json``: what model_fetch verified) and staging file names."""

from __future__ import annotations

import hashlib
import os

from ansible_collections.llmops.inference.plugins.module_utils.model_fetch_common import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    format_digest,
    read_json,
)


def manifest_path(dest):
    return os.path.join(dest, MANIFEST_NAME)


def load_manifest(dest):
    """The manifest, or an empty one when missing, unreadable or of another format."""
    data = read_json(manifest_path(dest))
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


def staging_name(spec):
    """Partial files are keyed by path and expected content, so a resume never mixes revisions."""
    tag = hashlib.sha256(spec.path.encode("utf-8")).hexdigest()[:16]
    return "%s-%s.part" % (tag, spec.expected[1][:16])
