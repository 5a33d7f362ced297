"""Pure logic of model_fetch: digests, hashing, patterns, paths, Hub metadata, manifest, plans."""

from __future__ import annotations

import hashlib
import json
import os
import types

import pytest

from ansible_collections.llmops.inference.plugins.module_utils import model_fetch as mf
from ansible_collections.llmops.inference.plugins.module_utils import model_fetch_transfer as transfer
from ansible_collections.llmops.inference.plugins.module_utils.model_fetch_progress import Progress


def test_git_blob_sha1_matches_git():
    # `printf 'hello\n' | git hash-object --stdin`
    assert mf.git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert mf.git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


def test_stream_hasher_equals_one_shot():
    data = os.urandom(100_000)
    h = mf.StreamHasher(git_size=len(data))
    for i in range(0, len(data), 7919):
        h.update(data[i:i + 7919])
    assert h.digests() == {"sha256": hashlib.sha256(data).hexdigest(), "git-sha1": mf.git_blob_sha1(data)}
    assert h.count == len(data)
    assert "git-sha1" not in mf.StreamHasher().digests()


def test_hash_file_whole_and_prefix(tmp_path):
    data = os.urandom(3 * 1024 + 5)
    f = tmp_path / "f"
    f.write_bytes(data)
    assert mf.hash_file(f, chunk_size=1000).digests()["sha256"] == hashlib.sha256(data).hexdigest()
    assert mf.hash_file(f, limit=2500, chunk_size=1000).sha256.hexdigest() == hashlib.sha256(data[:2500]).hexdigest()
    # continuing a hasher: the resume path hashes the partial file, then the network bytes
    h = mf.hash_file(f, limit=1234)
    h.update(data[1234:])
    assert h.sha256.hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("A" * 64, ("sha256", "a" * 64)),
        ("sha256:" + "b" * 64, ("sha256", "b" * 64)),
        ("SHA-256:" + "c" * 64, ("sha256", "c" * 64)),
        ("git-sha1:" + "d" * 40, ("git-sha1", "d" * 40)),
    ],
)
def test_parse_digest(value, expected):
    assert mf.parse_digest(value) == expected


@pytest.mark.parametrize("value", ["", "abc", "sha256:" + "a" * 63, "md5:" + "a" * 32, "g" * 64, "git-sha1:" + "a" * 64, None])
def test_parse_digest_rejects(value):
    with pytest.raises(mf.FetchError):
        mf.parse_digest(value)


PATHS = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "onnx/model.onnx",
         "onnx/sub/x.bin", "README.md", "original/consolidated.pth", "tokenizer.json"]


@pytest.mark.parametrize(
    ("allow", "ignore", "expected"),
    [
        (None, None, PATHS),
        (["*.json"], None, ["config.json", "tokenizer.json"]),
        ("*.safetensors", None, ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]),
        (None, ["onnx/", "original/*"], ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                         "README.md", "tokenizer.json"]),
        (["*.bin"], None, ["onnx/sub/x.bin"]),  # * crosses "/", as in huggingface_hub
        (["*.json", "*.md"], ["README*"], ["config.json", "tokenizer.json"]),
        ([], None, []),
    ],
)
def test_filter_paths(allow, ignore, expected):
    assert mf.filter_paths(PATHS, allow, ignore) == expected


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a\\b", "", ".llmops-staging/x",
                                  ".llmops-manifest.json", ".llmops-progress.json", "a/\0b"])
def test_safe_relpath_rejects(path):
    with pytest.raises(mf.PermanentError):
        mf.safe_relpath(path)


def test_safe_relpath_accepts():
    assert mf.safe_relpath("a/b.c") == "a/b.c"
    assert mf.safe_relpath(".gitattributes") == ".gitattributes"


def test_hub_entries_from_siblings_and_tree():
    siblings = [
        {"rfilename": "config.json", "size": 10, "blobId": "A" * 40},
        {"rfilename": "w.safetensors", "size": 999, "blobId": "b" * 40, "lfs": {"sha256": "C" * 64, "size": 999, "pointerSize": 130}},
        {"rfilename": "nometa.bin"},
    ]
    entries = mf.hub_entries_from_siblings(siblings)
    assert entries["config.json"] == (10, ("git-sha1", "a" * 40), None)
    assert entries["w.safetensors"] == (999, ("sha256", "c" * 64), "c" * 64)
    assert entries["nometa.bin"] is None
    tree = [
        {"type": "directory", "path": "sub", "oid": "e" * 40, "size": 0},
        {"type": "file", "path": "nometa.bin", "size": 5, "oid": "f" * 40, "lfs": {"oid": "1" * 64, "size": 5, "pointerSize": 1}},
        {"type": "file", "path": "small.txt", "size": 3, "oid": "2" * 40},
    ]
    assert mf.hub_entries_from_tree(tree) == {"nometa.bin": (5, ("sha256", "1" * 64), "1" * 64),
                                              "small.txt": (3, ("git-sha1", "2" * 40), None)}


def test_hub_urls():
    assert mf.hub_file_url("https://h.example/", "o/r", "c" * 40, "sub dir/a b.json") == \
        "https://h.example/o/r/resolve/%s/sub%%20dir/a%%20b.json" % ("c" * 40)
    assert mf.hub_file_url("https://h", "o/r", "x", "f", repo_type="dataset") == "https://h/datasets/o/r/resolve/x/f"
    assert mf.hub_api_url("https://h", "o/r", "refs/pr/1") == "https://h/api/models/o/r/revision/refs%2Fpr%2F1"


def _spec(**kw):
    base = dict(path="w.bin", url="http://x/w.bin", size=5, expected=("sha256", "a" * 64), sha256="a" * 64)
    base.update(kw)
    return mf.FileSpec(**base)


def test_manifest_entry_matches():
    spec = _spec()
    st = types.SimpleNamespace(st_size=5, st_mtime_ns=123)
    entry = {"size": 5, "mtime_ns": 123, "sha256": "a" * 64, "expected": "sha256:" + "a" * 64}
    assert mf.manifest_entry_matches(entry, spec, st)
    assert not mf.manifest_entry_matches(dict(entry, mtime_ns=124), spec, st)
    assert not mf.manifest_entry_matches(dict(entry, size=6), spec, st)
    assert not mf.manifest_entry_matches(dict(entry, sha256="b" * 64), spec, st)  # a new revision changed the file
    assert not mf.manifest_entry_matches(None, spec, st)
    assert not mf.manifest_entry_matches(entry, spec, None)
    git_spec = _spec(expected=("git-sha1", "c" * 40), sha256=None)
    assert mf.manifest_entry_matches(dict(entry, git_sha1="c" * 40), git_spec, st)
    assert not mf.manifest_entry_matches(entry, git_spec, st)


def test_manifest_roundtrip_and_garbage(tmp_path):
    assert mf.load_manifest(str(tmp_path)) == {}
    (tmp_path / mf.MANIFEST_NAME).write_text("{not json")
    assert mf.load_manifest(str(tmp_path)) == {}
    (tmp_path / mf.MANIFEST_NAME).write_text(json.dumps({"format": 99, "files": {}}))
    assert mf.load_manifest(str(tmp_path)) == {}
    data = {"format": mf.MANIFEST_FORMAT, "files": {"a": {"size": 1}}, "complete": True}
    mf.write_json_atomic(mf.manifest_path(str(tmp_path)), data)
    assert mf.load_manifest(str(tmp_path)) == data
    assert [p.name for p in tmp_path.iterdir()] == [mf.MANIFEST_NAME]  # no temp file left


def test_staging_name_depends_on_path_and_content():
    a = mf.staging_name(_spec())
    assert a.endswith(".part") and "/" not in a
    assert a != mf.staging_name(_spec(path="other.bin"))
    assert a != mf.staging_name(_spec(expected=("sha256", "b" * 64)))


def test_url_plan_validation():
    plan = mf.url_plan([{"url": "https://h/x/model.gguf?sig=1", "sha256": "a" * 64}])
    assert plan.files[0].path == "model.gguf" and plan.files[0].size is None and not plan.files[0].auth
    with pytest.raises(mf.PermanentError, match="sha256 is required"):
        mf.url_plan([{"url": "https://h/x"}])
    with pytest.raises(mf.PermanentError, match="http"):
        mf.url_plan([{"url": "ftp://h/x", "sha256": "a" * 64}])
    with pytest.raises(mf.PermanentError, match="same path"):
        mf.url_plan([{"url": "https://h/a/x", "sha256": "a" * 64}, {"url": "https://h/b/x", "sha256": "a" * 64}])
    with pytest.raises(mf.PermanentError, match="unsafe"):
        mf.url_plan([{"url": "https://h/x", "sha256": "a" * 64, "path": "../x"}])


def test_pinned_checksums_override_and_unknown_paths():
    plan = mf.url_plan([{"url": "https://h/x", "sha256": "a" * 64}], checksums={"x": "sha256:" + "b" * 64})
    assert plan.files[0].expected == ("sha256", "b" * 64)
    with pytest.raises(mf.PermanentError, match="not selected"):
        mf.url_plan([{"url": "https://h/x", "sha256": "a" * 64}], checksums={"y": "b" * 64})


def test_hub_plan_offline_from_complete_manifest():
    commit = "1" * 40
    manifest = {
        "format": 1, "complete": True,
        "source": mf.hub_source_key("o/r", "model", commit, ["*.json"], None),
        "files": {"config.json": {"size": 3, "mtime_ns": 1, "expected": "git-sha1:" + "2" * 40, "git_sha1": "2" * 40}},
    }
    # session=None: any network use would raise
    plan = mf.hub_plan(None, "https://h", "o/r", revision=commit, allow_patterns=["*.json"], manifest=manifest)
    assert plan.network_used is False and plan.commit == commit
    assert plan.files[0].url == "https://h/o/r/resolve/%s/config.json" % commit
    # Different patterns or an incomplete manifest need the network.
    with pytest.raises(AttributeError):
        mf.hub_plan(None, "https://h", "o/r", revision=commit, allow_patterns=["*"], manifest=manifest)
    with pytest.raises(AttributeError):
        mf.hub_plan(None, "https://h", "o/r", revision=commit, allow_patterns=["*.json"], manifest=dict(manifest, complete=False))


def test_run_validates_sources(tmp_path):
    with pytest.raises(mf.PermanentError, match="exactly one source"):
        mf.run({"dest": str(tmp_path)})
    with pytest.raises(mf.PermanentError, match="exactly one source"):
        mf.run({"dest": str(tmp_path), "repo_id": "o/r", "urls": [{"url": "http://h/x", "sha256": "a" * 64}]})
    with pytest.raises(mf.PermanentError, match="not a Hub repository id"):
        mf.run({"dest": str(tmp_path), "repo_id": "../etc"})
    with pytest.raises(mf.FetchError, match="invalid checksum"):
        mf.run({"dest": str(tmp_path), "repo_id": "o/r", "checksums": {"a": "nope"}})


def test_human_bytes():
    assert mf.human_bytes(512) == "512 B"
    assert mf.human_bytes(3 * 1024 * 1024) == "3.0 MiB"
    assert mf.human_bytes(2 * 1024 ** 4) == "2.0 TiB"


class _FakeHttplibResponse:
    """Stands in for http.client.HTTPResponse: readinto() fills, then returns the rest, then 0."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def readinto(self, b):
        n = min(len(b), len(self.data) - self.pos)
        b[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


class _FakeRaw:
    def __init__(self, data, fast):
        if fast:
            self._fp = _FakeHttplibResponse(data)
        self.data = data
        self.pos = 0

    def read1(self, n, decode_content=True):
        chunk = self.data[self.pos:self.pos + min(n, 777)]
        self.pos += len(chunk)
        return chunk


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_pump_copies_and_hashes(tmp_path, fast, encoding):
    data = os.urandom(10_000)
    headers = {"Content-Encoding": encoding} if encoding else {}
    resp = types.SimpleNamespace(raw=_FakeRaw(data, fast), headers=headers)
    hasher = mf.StreamHasher(git_size=len(data))
    progress = Progress()
    with open(tmp_path / "out", "wb", buffering=0) as out:
        def drain(view):
            out.write(view)
            progress.add(len(view))
        mf.pump(resp, drain, buffer_size=1024, hasher=hasher)
    assert (tmp_path / "out").read_bytes() == data
    assert progress.bytes == len(data)
    assert hasher.digests() == {"sha256": hashlib.sha256(data).hexdigest(), "git-sha1": mf.git_blob_sha1(data)}


def test_pump_keeps_bytes_received_before_a_failure(tmp_path):
    data = os.urandom(5000)

    class Breaking(_FakeHttplibResponse):
        def readinto(self, b):
            if self.pos >= 3000:
                raise ConnectionResetError("peer reset")
            return super().readinto(b)

    raw = _FakeRaw(b"", True)
    raw._fp = Breaking(data)
    written = []
    with pytest.raises(ConnectionResetError):
        mf.pump(types.SimpleNamespace(raw=raw, headers={}), lambda v: written.append(bytes(v)), buffer_size=1000)
    assert b"".join(written) == data[:3000]


def test_pump_reports_write_errors_as_such():
    raw = _FakeRaw(b"", True)
    raw._fp = _FakeHttplibResponse(os.urandom(5000))

    def full(view):
        raise OSError(28, "No space left on device")

    with pytest.raises(transfer.WriteError) as err:
        mf.pump(types.SimpleNamespace(raw=raw, headers={}), full, buffer_size=1000)
    assert err.value.error.errno == 28


@pytest.mark.parametrize("threaded", [True, False])
def test_pipeline_order_and_end(threaded):
    src = [os.urandom(n) for n in (100, 7, 100, 55)]
    out = []

    def fill(view):
        if not src:
            return 0
        chunk = src.pop(0)
        view[:len(chunk)] = chunk
        return len(chunk)

    expected = b"".join(src)
    mf.pipeline(fill, lambda v: out.append(bytes(v)), buffer_size=128, buffers=2, threaded=threaded)
    assert b"".join(out) == expected


def test_defaults_are_read_by_options():
    opts = transfer.Options()
    for key in ("parallel", "connections", "chunk_size", "retries", "backoff", "timeout", "verify", "prune"):
        assert getattr(opts, key) == mf.DEFAULTS[key], key
