#!/usr/bin/python
# Copyright (c) llmops.inference contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_fetch
short_description: Download model files completely, verified and resumably, and re-check them cheaply
version_added: "0.1.0"
description:
  - Makes O(dest) hold exactly the files of a Hugging Face Hub repository at a pinned revision, or a list of
    plain HTTP(S) files with known sha256.
  - The Hub revision is resolved to a commit hash, and files are downloaded from that commit, so a branch that moves
    during the download never mixes revisions.
  - Every file is hashed while its bytes stream in (sha256 from the Hub's LFS metadata, the git blob sha1 for small
    non-LFS files, or a checksum you pin in O(checksums)), written to C(DEST/.llmops-staging/), fsynced, and renamed
    into place only when it matches. A corrupt or partial file never sits at its final path.
  - Files larger than O(chunk_size) are fetched as O(connections) parallel HTTP Range requests. The sha256 of the
    contiguous prefix is computed while ranges land, from the page cache, so the file is not read back from disk
    after the download.
  - An interrupted transfer resumes on the next attempt or the next run. A parallel download keeps the list of byte
    ranges already written in the staging area, and asks only for the missing ones. A server that ignores Range is
    handled by fetching over one stream from the start.
  - While it runs the module writes bytes done, rate and ETA to O(progress_file); the last figures are in RV(progress).
  - Free space for the bytes still to come is checked before the first byte is written.
  - A manifest, C(DEST/.llmops-manifest.json), records the source, the commit, and each file's size, hashes and mtime.
    A re-run on a complete directory reads no file data (with a commit-hash O(revision) it makes no network request
    either). Files whose size or mtime differ from the manifest are re-hashed; O(verify=full) re-hashes everything.
  - With O(prune=true), files that an earlier run of this module placed in O(dest) and that the current selection no
    longer includes are removed. Files the module did not place are never removed.
author:
  - llmops.inference maintainers (@llmops)
requirements:
  - requests (Python library on the managed host)
extends_documentation_fragment:
  - ansible.builtin.files
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports which files would be downloaded or resumed and how many bytes. Existing files without a matching
      manifest entry are read (not changed) to verify them.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  dest:
    description:
      - Directory that receives the files. Created when missing.
      - O(owner) and O(group) apply to this directory, the directories the module creates, the files and the manifest;
        O(mode) applies to the files only.
    type: path
    required: true
  repo_id:
    description:
      - Hugging Face Hub repository, C(namespace/name). Mutually exclusive with O(urls).
    type: str
  repo_type:
    description:
      - Kind of Hub repository.
    type: str
    choices: [model, dataset, space]
    default: model
  revision:
    description:
      - Branch, tag or commit hash. It is resolved to a commit hash once per run; pin a full commit hash for
        reproducible fleets and network-free re-runs.
    type: str
    default: main
  endpoint:
    description:
      - Base URL of the Hub or of a mirror with the same API (C(/api/models/{repo}/revision/{rev}?blobs=true) and
        C({endpoint}/{repo}/resolve/{commit}/{path})).
      - Defaults to the E(HF_ENDPOINT) environment variable of the managed host, then C(https://huggingface.co).
    type: str
  token:
    description:
      - Hub access token for private or gated repositories. Sent to O(endpoint) only (it is dropped when the Hub
        redirects to a CDN host). Defaults to E(HF_TOKEN) on the managed host.
    type: str
  allow_patterns:
    description:
      - Only files matching at least one of these shell patterns are fetched (as C(huggingface_hub)'s
        C(snapshot_download)); C(*) also matches C(/), a pattern ending in C(/) selects a folder.
    type: list
    elements: str
  ignore_patterns:
    description:
      - Files matching any of these patterns are skipped.
    type: list
    elements: str
  urls:
    description:
      - Plain HTTP(S) files to fetch instead of a Hub repository. Mutually exclusive with O(repo_id).
    type: list
    elements: dict
    suboptions:
      url:
        description: HTTP or HTTPS URL of the file.
        type: str
        required: true
      sha256:
        description: Expected sha256 (64 hex digits, or C(sha256:HEX)).
        type: str
        required: true
      path:
        description: Path relative to O(dest). Defaults to the last component of the URL.
        type: str
      size:
        description: Size in bytes, if known (otherwise a HEAD request asks the server before the free-space check).
        type: int
  checksums:
    description:
      - "Pinned expected hashes, a mapping of file path to sha256 (or C(sha256:HEX), C(git-sha1:HEX)). They override
        what the server says, so a compromised or changed mirror cannot slip in other bytes."
    type: dict
  verify:
    description:
      - V(fast) trusts the manifest for files whose size and mtime are unchanged; V(full) re-hashes every file.
    type: str
    choices: [fast, full]
    default: fast
  parallel:
    description: How many files are downloaded at once.
    type: int
    default: 4
  connections:
    description:
      - Connections per file. A file larger than O(chunk_size) whose size is known is fetched as parallel HTTP
        C(Range) requests over this many connections (as C(aria2c -x) or C(hf_transfer) do), which is what gets a
        download to line rate where a hub, CDN or proxy caps each connection.
      - V(1) fetches every file over one stream. A server that ignores C(Range) (answers 200) is detected on the
        first request and the file is fetched over one stream.
      - At most O(parallel) times O(connections) connections are open at once.
    type: int
    default: 8
    version_added: "0.2.0"
  chunk_size:
    description:
      - Size in bytes of each C(Range) request of a parallel download (default 16 MiB). Smaller chunks spread the
        tail of a file over more connections; each chunk costs one request.
      - At least 262144 (256 KiB).
    type: int
    default: 16777216
    version_added: "0.2.0"
  retries:
    description:
      - Retries per file after a connection error, short read or 5xx answer, with exponential backoff. Each retry
        resumes from the bytes already received. An attempt that made progress resets the count. A checksum mismatch
        is retried once from scratch.
    type: int
    default: 5
  backoff:
    description: First backoff delay in seconds; doubled on each retry, at most 30 seconds.
    type: float
    default: 1.0
  timeout:
    description: Connect and read timeout in seconds for each request.
    type: float
    default: 30.0
  validate_certs:
    description: Verify TLS certificates.
    type: bool
    default: true
  ca_path:
    description: CA bundle to verify the server with (an internal mirror's CA).
    type: path
  prune:
    description:
      - Remove files recorded in the manifest by an earlier run that the current selection no longer includes.
    type: bool
    default: true
  progress_file:
    description:
      - JSON file the module rewrites about once a second while it runs, with bytes done, total, rate and ETA
        (see RV(progress) for the keys), and a last time with C(state) V(done) or V(failed).
      - Defaults to C(DEST/.llmops-progress.json). Run the task with C(async) and read this file on each poll to
        show progress during a long download (the fetch step of the C(llmops.inference.vllm) role does).
      - Not written in check mode.
    type: path
    version_added: "0.2.0"
  progress_id:
    description:
      - Opaque text copied into the progress file as C(id), so that a poller can tell this run's reports from those
        an earlier run left.
    type: str
    version_added: "0.2.0"
notes:
  - The destination must be on a file system with room for the files still to download; partial files live in
    C(DEST/.llmops-staging/) on the same file system so that the final rename is atomic.
  - Two runs on the same O(dest) take turns (an exclusive lock on the directory).
seealso:
  - module: ansible.builtin.get_url
    description: One plain file with an optional checksum, without resume or manifest.
  - module: ansible.builtin.async_status
    description: Poll a model_fetch task started with C(async) (the progress file tells how far it got).
  - name: model_fetch operator guide
    description: Layout, resume, parallel ranges, progress, errors and benchmark figures (docs/model_fetch.md in the collection).
    link: https://github.com/llmops/inference/blob/main/docs/model_fetch.md
  - name: Hugging Face Hub HTTP API
    description: The API shapes used to list and download files.
    link: https://huggingface.co/docs/hub/api
"""

EXAMPLES = r"""
- name: Fetch a model at a pinned commit, weights and config only
  llmops.inference.model_fetch:
    repo_id: Qwen/Qwen2.5-7B-Instruct
    revision: a09a35458c702b33eeacc393d103063234e8bc28
    dest: /srv/models/qwen2.5-7b-instruct
    allow_patterns: ["*.json", "*.safetensors", "tokenizer*"]
    token: "{{ hf_token }}"
    owner: vllm
    group: vllm
    mode: "0644"

- name: Same, through an internal mirror, with pinned hashes for the weights
  llmops.inference.model_fetch:
    repo_id: Qwen/Qwen2.5-7B-Instruct
    revision: a09a35458c702b33eeacc393d103063234e8bc28
    endpoint: https://hf-mirror.internal.example
    ca_path: /etc/ssl/certs/internal-ca.pem
    dest: /srv/models/qwen2.5-7b-instruct
    checksums:
      model-00001-of-00004.safetensors: "sha256:0f4b..."

- name: Fetch a GGUF file from a plain web server
  llmops.inference.model_fetch:
    dest: /srv/models/smollm2
    urls:
      - url: https://files.internal.example/smollm2-135m-instruct-q4_1.gguf
        sha256: b179c952...
        path: model.gguf

- name: Re-hash everything (after a disk incident)
  llmops.inference.model_fetch:
    repo_id: Qwen/Qwen2.5-7B-Instruct
    revision: a09a35458c702b33eeacc393d103063234e8bc28
    dest: /srv/models/qwen2.5-7b-instruct
    verify: full
"""

RETURN = r"""
dest:
  description: Absolute destination directory.
  returned: always
  type: str
manifest:
  description: Path of the manifest file.
  returned: always
  type: str
commit:
  description: Commit hash the Hub revision resolved to (null for O(urls)).
  returned: always
  type: str
  sample: 0123456789abcdef0123456789abcdef01234567
source:
  description: What the directory was made to match (as recorded in the manifest).
  returned: always
  type: dict
network_used:
  description: Whether the file list came from the network (false when a commit-hash revision matched the manifest).
  returned: always
  type: bool
files:
  description: One entry per selected file.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: Path relative to O(dest).
      type: str
    status:
      description:
        - V(present) (the manifest proves it, nothing read), V(verified) (re-hashed and correct), V(downloaded),
          V(resumed) (continued from a partial file); in check mode V(would_download) or V(would_resume).
      type: str
    size:
      description: Size in bytes.
      type: int
    bytes_transferred:
      description: Bytes received over the network for this file in this run.
      type: int
    sha256:
      description: sha256 of the file, when known.
      type: str
    replaced:
      description: A wrong file was at this path and was replaced (downloaded files only).
      type: bool
    restarted:
      description: The server ignored C(Range), so the file was fetched from byte 0 over one stream (downloaded files only).
      type: bool
    attempts:
      description: HTTP requests made for this file's data, retries included (downloaded files only).
      type: int
    connections:
      description: Connections used for this file (V(1) for one stream; downloaded files only).
      type: int
    replace:
      description: In check mode, whether a wrong file at this path would be replaced.
      type: bool
  sample:
    - {path: model.safetensors, status: downloaded, size: 269060552, bytes_transferred: 269060552, sha256: "9f86..."}
pruned:
  description: Files removed because the selection no longer includes them.
  returned: always
  type: list
  elements: str
bytes_transferred:
  description: Bytes received over the network in this run.
  returned: always
  type: int
bytes_to_fetch:
  description: Bytes that still had to be downloaded when the run started (after resumable partial files).
  returned: always
  type: int
bytes_total:
  description: Total size of the selected files.
  returned: always
  type: int
files_total:
  description: Number of selected files.
  returned: always
  type: int
elapsed:
  description: Seconds the fetch took.
  returned: always
  type: float
throughput:
  description: Bytes per second received over the network (0 when nothing was downloaded).
  returned: always
  type: int
bytes_free:
  description: Free bytes on the destination file system (also returned when a run fails for lack of space).
  returned: in check mode
  type: int
progress:
  description: The last progress report, as written to RV(progress_file).
  returned: when not in check mode
  type: dict
  contains:
    state:
      description: V(done) (or V(starting), V(running), V(failed) in the file while or after a run).
      type: str
    bytes_done:
      description: Bytes received in this run.
      type: int
    bytes_total:
      description: Bytes this run had to download (RV(bytes_to_fetch)).
      type: int
    percent:
      description: RV(progress.bytes_done) as a percentage of RV(progress.bytes_total).
      type: float
    rate:
      description: Bytes per second; the run's average when done, over the last 10 seconds while running.
      type: int
    eta_s:
      description: Seconds left at the current rate (null while unknown).
      type: float
    elapsed_s:
      description: Seconds since the run started.
      type: float
    files_done:
      description: Files downloaded and verified so far in this run.
      type: int
    files_total:
      description: Files this run had to download.
      type: int
    id:
      description: O(progress_id).
      type: str
    pid:
      description: Process id of the module.
      type: int
    updated:
      description: When the report was written (seconds since the epoch).
      type: float
  sample: {state: done, bytes_done: 2147483648, bytes_total: 2147483648, percent: 100.0, rate: 401234567, eta_s: 0.0,
           elapsed_s: 5.4, files_done: 1, files_total: 1, id: null, pid: 4242, updated: 1795698000.5}
progress_file:
  description: Path of the progress file.
  returned: when not in check mode
  type: str
failures:
  description: On failure, one entry per failed file (C(path), C(msg), and C(expected)/C(actual) hashes or the HTTP C(status)).
  returned: failure
  type: list
  elements: dict
bytes_needed:
  description: On a failure for lack of space, the bytes still to download.
  returned: failure
  type: int
expected:
  description: On a checksum mismatch, the expected hash (C(sha256:HEX)).
  returned: failure
  type: str
actual:
  description: On a checksum mismatch, the hash of the bytes received.
  returned: failure
  type: str
status:
  description: On an HTTP error, the status code.
  returned: failure
  type: int
url:
  description: On an HTTP error or a checksum mismatch, the URL concerned.
  returned: failure
  type: str
path:
  description: On a local write error or checksum mismatch, the file concerned (relative to O(dest)).
  returned: failure
  type: str
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.llmops.inference.plugins.module_utils.model_fetch import (
    DEFAULTS,
    HAS_REQUESTS,
    REQUESTS_IMPORT_ERROR,
    FetchError,
    run,
)


def _apply_attributes(module, result):
    """owner/group/mode/SELinux from the common file arguments; mode goes to files only."""
    changed = False
    dest = result["dest"]
    dirs = {dest}
    dirs.update(result.get("created_dirs") or [])
    for item in result["files"]:
        if item["status"].startswith("would_"):
            continue
        path = "%s/%s" % (dest, item["path"])
        file_args = module.load_file_common_arguments(module.params, path=path)
        changed = module.set_fs_attributes_if_different(file_args, changed)
        parent = path.rsplit("/", 1)[0]
        while parent.startswith(dest + "/"):
            dirs.add(parent)
            parent = parent.rsplit("/", 1)[0]
    targets = sorted(d for d in dirs if os.path.isdir(d))
    if os.path.exists(result["manifest"]):
        targets.append(result["manifest"])
    for path in targets:
        file_args = module.load_file_common_arguments(module.params, path=path)
        file_args["mode"] = None
        changed = module.set_fs_attributes_if_different(file_args, changed)
    return changed


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            repo_id=dict(type="str"),
            repo_type=dict(type="str", choices=["model", "dataset", "space"], default=DEFAULTS["repo_type"]),
            revision=dict(type="str", default=DEFAULTS["revision"]),
            endpoint=dict(type="str", fallback=(env_fallback, ["HF_ENDPOINT"])),
            token=dict(type="str", no_log=True, fallback=(env_fallback, ["HF_TOKEN"])),
            allow_patterns=dict(type="list", elements="str"),
            ignore_patterns=dict(type="list", elements="str"),
            urls=dict(
                type="list",
                elements="dict",
                options=dict(
                    url=dict(type="str", required=True),
                    sha256=dict(type="str", required=True),
                    path=dict(type="str"),
                    size=dict(type="int"),
                ),
            ),
            checksums=dict(type="dict"),
            verify=dict(type="str", choices=["fast", "full"], default=DEFAULTS["verify"]),
            parallel=dict(type="int", default=DEFAULTS["parallel"]),
            connections=dict(type="int", default=DEFAULTS["connections"]),
            chunk_size=dict(type="int", default=DEFAULTS["chunk_size"]),
            retries=dict(type="int", default=DEFAULTS["retries"]),
            backoff=dict(type="float", default=DEFAULTS["backoff"]),
            timeout=dict(type="float", default=DEFAULTS["timeout"]),
            validate_certs=dict(type="bool", default=DEFAULTS["validate_certs"]),
            ca_path=dict(type="path"),
            prune=dict(type="bool", default=DEFAULTS["prune"]),
            progress_file=dict(type="path"),
            progress_id=dict(type="str"),
        ),
        mutually_exclusive=[("repo_id", "urls")],
        required_one_of=[("repo_id", "urls")],
        add_file_common_args=True,
        supports_check_mode=True,
    )
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"), exception=REQUESTS_IMPORT_ERROR)

    params = dict(module.params)
    try:
        result = run(params, check_mode=module.check_mode)
    except FetchError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    except OSError as exc:
        module.fail_json(msg="model_fetch failed on %s: %s" % (params["dest"], exc), exception=traceback.format_exc())

    for warning in result.pop("warnings", []):
        module.warn(warning)
    if _apply_attributes(module, result):
        result["changed"] = True
    result.pop("created_dirs", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
