"""model_fetch against real loopback servers: nginx (Hub-shaped static tree, Range) and a fault-injecting server."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest
import requests

from ansible_collections.llmops.inference.plugins.module_utils import model_fetch as mf

from model_fetch_servers import TOKEN, FaultServer, NginxHub, blob, sha256

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = NginxHub(tmp_path_factory.mktemp("nginx"), gated_repos=["acme/gated"]).start()
    yield server
    server.stop()


@pytest.fixture
def fault():
    server = FaultServer().start()
    yield server
    server.stop()


def repo_files():
    return {
        "config.json": b'{"model_type": "llama", "hidden_size": 64}\n',
        "tokenizer.json": blob(20_000, "tok"),
        "model.safetensors": blob(3 * MiB + 123, "weights"),
        "extra/notes.md": b"# notes\n",
        "README.md": b"# a model\n",
        "onnx/model.onnx": blob(70_000, "onnx"),
    }


@pytest.fixture
def repo(hub):
    """A fresh repository name per test on the shared nginx."""
    name = "acme/m-%s" % uuid.uuid4().hex[:8]
    files = repo_files()
    commit = hub.add_repo(name, files)
    return {"repo_id": name, "files": files, "commit": commit}


def params(hub, repo, dest, **kw):
    p = {"repo_id": repo["repo_id"], "endpoint": hub.url, "dest": str(dest), "backoff": 0.01, "ignore_patterns": ["onnx/"]}
    p.update(kw)
    return p


def selected(repo):
    return {k: v for k, v in repo["files"].items() if not k.startswith("onnx/")}


def assert_tree(dest, files):
    for path, data in files.items():
        assert (dest / path).read_bytes() == data, path
    assert not (dest / mf.STAGING_DIR).exists()


def file_gets(entries):
    return [e for e in entries if e["method"] == "GET" and "/resolve/" in e["uri"]]


def test_fresh_download(hub, repo, tmp_path):
    dest = tmp_path / "model"
    mark = hub.mark()
    res = mf.run(params(hub, repo, dest))
    want = selected(repo)
    assert res["changed"] is True
    assert res["commit"] == repo["commit"]
    assert {f["path"]: f["status"] for f in res["files"]} == dict.fromkeys(want, "downloaded")
    assert res["bytes_transferred"] == sum(len(v) for v in want.values()) == res["bytes_total"]
    assert res["throughput"] > 0
    assert_tree(dest, want)
    assert not (dest / "onnx").exists()
    manifest = json.loads((dest / mf.MANIFEST_NAME).read_text())
    assert manifest["complete"] is True and manifest["source"]["commit"] == repo["commit"]
    assert manifest["files"]["model.safetensors"]["sha256"] == sha256(want["model.safetensors"])
    assert manifest["files"]["config.json"]["git_sha1"] == mf.git_blob_sha1(want["config.json"])
    # Files were fetched from the resolved commit, not the branch name.
    gets = file_gets(hub.since(mark))
    assert len(gets) == len(want) and all("/resolve/%s/" % repo["commit"] in e["uri"] for e in gets)


def test_rerun_reads_nothing(hub, repo, tmp_path, monkeypatch):
    dest = tmp_path / "model"
    mf.run(params(hub, repo, dest))
    before = {p: os.stat(dest / p).st_mtime_ns for p in selected(repo)}
    manifest_before = (dest / mf.MANIFEST_NAME).stat().st_mtime_ns

    def no_reads(*a, **k):
        raise AssertionError("file data was read on a re-run")

    monkeypatch.setattr(mf, "hash_file", no_reads)
    mark = hub.mark()
    res = mf.run(params(hub, repo, dest))
    assert res["changed"] is False
    assert res["bytes_transferred"] == 0 and res["bytes_to_fetch"] == 0
    assert {f["status"] for f in res["files"]} == {"present"}
    assert file_gets(hub.since(mark)) == []  # only the revision lookup
    assert (dest / mf.MANIFEST_NAME).stat().st_mtime_ns == manifest_before
    assert before == {p: os.stat(dest / p).st_mtime_ns for p in selected(repo)}

    # Pinned to the commit: no network at all.
    mark = hub.mark()
    res = mf.run(params(hub, repo, dest, revision=repo["commit"]))
    assert res["network_used"] is False and res["changed"] is False
    assert hub.since(mark) == []


def test_modified_file_is_reverified_and_replaced(hub, repo, tmp_path):
    dest = tmp_path / "model"
    mf.run(params(hub, repo, dest))
    target = dest / "model.safetensors"
    # Touched but intact: re-hashed (size/mtime differ from the manifest), kept.
    os.utime(target, ns=(1, 1))
    res = mf.run(params(hub, repo, dest))
    status = {f["path"]: f["status"] for f in res["files"]}
    assert status["model.safetensors"] == "verified" and res["bytes_transferred"] == 0
    # Corrupted in place: replaced with the right bytes.
    data = bytearray(target.read_bytes())
    data[1000] ^= 0xFF
    target.write_bytes(bytes(data))
    res = mf.run(params(hub, repo, dest))
    item = next(f for f in res["files"] if f["path"] == "model.safetensors")
    assert item["status"] == "downloaded" and item["replaced"] is True
    assert target.read_bytes() == repo["files"]["model.safetensors"]
    # Corrupted with size and mtime kept: fast mode trusts the manifest, verify=full catches it.
    st = target.stat()
    with open(target, "r+b") as f:
        f.seek(5)
        f.write(b"\x00\x01\x02")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert mf.run(params(hub, repo, dest))["changed"] is False
    res = mf.run(params(hub, repo, dest, verify="full"))
    item = next(f for f in res["files"] if f["path"] == "model.safetensors")
    assert item["status"] == "downloaded" and res["changed"] is True
    assert target.read_bytes() == repo["files"]["model.safetensors"]


def test_wrong_pinned_hash_fails_with_both_hashes(hub, repo, tmp_path):
    dest = tmp_path / "model"
    wrong = "ab" * 32
    actual = sha256(repo["files"]["model.safetensors"])
    with pytest.raises(mf.HashMismatch) as err:
        mf.run(params(hub, repo, dest, checksums={"model.safetensors": wrong}))
    assert wrong in err.value.msg and actual in err.value.msg
    assert err.value.details["expected"] == "sha256:" + wrong
    assert err.value.details["actual"] == "sha256:" + actual
    assert not (dest / "model.safetensors").exists()
    staging = dest / mf.STAGING_DIR
    assert not staging.exists() or not any(p.name.endswith(".part") and p.stat().st_size for p in staging.iterdir())
    # The other files are in place and recorded; the pinned one was tried twice.
    assert (dest / "config.json").read_bytes() == repo["files"]["config.json"]


def test_corrupt_download_is_retried(fault, tmp_path):
    data = blob(2 * MiB, "corrupt")
    fault.files["w.bin"] = data
    p = {"dest": str(tmp_path / "d"), "backoff": 0.01, "urls": [{"url": fault.url + "/corrupt-once/w.bin", "sha256": sha256(data)}]}
    res = mf.run(p)
    assert res["files"][0]["status"] == "downloaded" and res["files"][0]["attempts"] == 2
    assert (tmp_path / "d" / "w.bin").read_bytes() == data


def test_interrupted_transfer_resumes_next_run(fault, tmp_path):
    data = blob(3 * MiB, "resume")
    fault.files["w.bin"] = data
    fault.drop_after = 1 * MiB + 7
    dest = tmp_path / "d"
    p = {"dest": str(dest), "retries": 0, "backoff": 0.01,
         "urls": [{"url": fault.url + "/drop/w.bin", "sha256": sha256(data), "size": len(data)}]}
    with pytest.raises(mf.TransientError) as err:
        mf.run(p)
    assert "connection broken" in err.value.msg or "short read" in err.value.msg
    assert not (dest / "w.bin").exists()
    parts = list((dest / mf.STAGING_DIR).glob("*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size == fault.drop_after

    res = mf.run(p)
    item = res["files"][0]
    assert item["status"] == "resumed"
    assert item["bytes_transferred"] == len(data) - fault.drop_after == res["bytes_transferred"]
    assert fault.gets("w.bin")[-1]["range"] == "bytes=%d-" % fault.drop_after
    assert (dest / "w.bin").read_bytes() == data
    assert not (dest / mf.STAGING_DIR).exists()


def test_dropped_connection_resumes_within_run(fault, tmp_path):
    data = blob(3 * MiB, "retry")
    fault.files["w.bin"] = data
    fault.drop_after = 512 * 1024
    fault.default_drops = 2
    p = {"dest": str(tmp_path / "d"), "retries": 3, "backoff": 0.01,
         "urls": [{"url": fault.url + "/drop/w.bin", "sha256": sha256(data)}]}
    res = mf.run(p)
    assert res["files"][0]["status"] == "resumed"
    assert [g["range"] for g in fault.gets("w.bin")] == [None, "bytes=524288-", "bytes=1048576-"]
    assert res["bytes_transferred"] == len(data)  # every byte crossed the wire exactly once
    assert (tmp_path / "d" / "w.bin").read_bytes() == data


def test_server_ignoring_range_restarts_file(fault, tmp_path):
    data = blob(2 * MiB, "norange")
    fault.files["w.bin"] = data
    dest = tmp_path / "d"
    spec = mf.url_plan([{"url": fault.url + "/norange/w.bin", "sha256": sha256(data)}]).files[0]
    (dest / mf.STAGING_DIR).mkdir(parents=True)
    (dest / mf.STAGING_DIR / mf.staging_name(spec)).write_bytes(data[:700_000])
    res = mf.run({"dest": str(dest), "backoff": 0.01, "urls": [{"url": spec.url, "sha256": sha256(data)}]})
    item = res["files"][0]
    assert item["status"] == "downloaded" and item["restarted"] is True
    assert item["bytes_transferred"] == len(data)
    assert fault.gets("w.bin")[0]["range"] == "bytes=700000-" and fault.gets("w.bin")[0]["status"] == 200
    assert (dest / "w.bin").read_bytes() == data


def test_resume_against_nginx_range(hub, repo, tmp_path):
    """A partial file left by an earlier run is continued with a Range request that nginx honours."""
    dest = tmp_path / "model"
    plan = mf.hub_plan(requests.Session(), hub.url, repo["repo_id"], ignore_patterns=["onnx/"])
    spec = next(f for f in plan.files if f.path == "model.safetensors")
    (dest / mf.STAGING_DIR).mkdir(parents=True)
    (dest / mf.STAGING_DIR / mf.staging_name(spec)).write_bytes(repo["files"]["model.safetensors"][:MiB])
    mark = hub.mark()
    res = mf.run(params(hub, repo, dest))
    item = next(f for f in res["files"] if f["path"] == "model.safetensors")
    assert item["status"] == "resumed" and item["bytes_transferred"] == spec.size - MiB
    gets = [e for e in file_gets(hub.since(mark)) if e["uri"].endswith("model.safetensors")]
    assert gets[0]["range"] == "bytes=%d-" % MiB and gets[0]["status"] == 206
    assert_tree(dest, selected(repo))


def test_unauthorized_and_not_found(hub, fault, tmp_path):
    files = {"config.json": b"{}\n", "w.bin": blob(100_000, "gated")}
    hub.add_repo("acme/gated", files)
    p = {"repo_id": "acme/gated", "endpoint": hub.url, "dest": str(tmp_path / "g"), "backoff": 0.01}
    with pytest.raises(mf.PermanentError) as err:
        mf.run(p)
    assert "HTTP 401" in err.value.msg and "token" in err.value.msg
    assert "Access to this repository is restricted" in err.value.msg
    with pytest.raises(mf.PermanentError) as err:
        mf.run(dict(p, token="hf_wrong"))
    assert "HTTP 401" in err.value.msg and "check that the token is valid" in err.value.msg
    assert "hf_wrong" not in err.value.msg
    mark = hub.mark()
    res = mf.run(dict(p, token=TOKEN))
    assert res["changed"] is True and all(e["auth"] for e in hub.since(mark))

    with pytest.raises(mf.PermanentError) as err:
        mf.run({"repo_id": "acme/missing", "endpoint": hub.url, "dest": str(tmp_path / "m")})
    assert "HTTP 404" in err.value.msg and "acme/missing" in err.value.msg
    with pytest.raises(mf.PermanentError) as err:
        mf.run({"repo_id": "acme/x", "endpoint": fault.url + "/status/401", "dest": str(tmp_path / "x")})
    assert "HTTP 401" in err.value.msg and "Invalid username or password" in err.value.msg
    # A file URL that vanished: clear message, nothing left behind, no retries burnt on it.
    with pytest.raises(mf.PermanentError) as err:
        mf.run({"dest": str(tmp_path / "u"), "urls": [{"url": fault.url + "/status/404/w.bin", "sha256": "0" * 64, "size": 10}]})
    assert "HTTP 404" in err.value.msg and "/status/404/w.bin" in err.value.msg
    assert len([r for r in fault.requests if r["path"].endswith("/status/404/w.bin") and r["method"] == "GET"]) == 1
    assert not (tmp_path / "u" / "w.bin").exists()


def test_not_enough_space_fails_before_download(hub, tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip("mount -t tmpfs refused here: %s" % proc.stderr.strip())
    try:
        files = {"config.json": b"{}\n", "w.bin": blob(2 * MiB, "big")}
        hub.add_repo("acme/toobig", files)
        mark = hub.mark()
        with pytest.raises(mf.PermanentError) as err:
            mf.run({"repo_id": "acme/toobig", "endpoint": hub.url, "dest": str(mnt / "model")})
        assert "not enough free space" in err.value.msg
        assert err.value.details["bytes_needed"] == 2 * MiB + 3
        assert file_gets(hub.since(mark)) == []
        assert not (mnt / "model" / mf.STAGING_DIR).exists()
        assert not (mnt / "model" / "w.bin").exists()
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_check_mode_changes_nothing(hub, repo, fault, tmp_path):
    dest = tmp_path / "model"
    mark = hub.mark()
    res = mf.run(params(hub, repo, dest), check_mode=True)
    assert res["changed"] is True
    assert {f["status"] for f in res["files"]} == {"would_download"}
    assert res["bytes_to_fetch"] == sum(len(v) for v in selected(repo).values())
    assert res["bytes_free"] > 0
    assert not dest.exists() and file_gets(hub.since(mark)) == []

    # A partial file is reported as a resume of the remaining bytes; the partial is left alone.
    data = blob(2 * MiB, "check")
    fault.files["w.bin"] = data
    p = {"dest": str(tmp_path / "u"), "urls": [{"url": fault.url + "/ok/w.bin", "sha256": sha256(data)}]}
    spec = mf.url_plan(p["urls"]).files[0]
    part = tmp_path / "u" / mf.STAGING_DIR / mf.staging_name(spec)
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:MiB])
    res = mf.run(p, check_mode=True)
    assert res["files"][0]["status"] == "would_resume" and res["bytes_to_fetch"] == MiB
    assert part.stat().st_size == MiB and not (tmp_path / "u" / "w.bin").exists()
    assert fault.gets() == []  # only a HEAD for the size

    mf.run(params(hub, repo, dest))
    res = mf.run(params(hub, repo, dest), check_mode=True)
    assert res["changed"] is False and {f["status"] for f in res["files"]} == {"present"}


def test_prune_only_removes_owned_files(hub, repo, tmp_path):
    dest = tmp_path / "model"
    mf.run(params(hub, repo, dest, ignore_patterns=None))
    (dest / "onnx" / "mine.txt").write_text("operator notes")
    # Check mode tells what prune would remove, and nothing with prune=false (#15).
    narrower = params(hub, repo, dest, ignore_patterns=["onnx/", "*.md"])
    assert sorted(mf.run(narrower, check_mode=True)["pruned"]) == ["README.md", "extra/notes.md", "onnx/model.onnx"]
    res = mf.run(dict(narrower, prune=False), check_mode=True)
    assert res["pruned"] == [] and res["changed"] is True  # the manifest would stop listing them
    assert (dest / "README.md").exists()
    res = mf.run(params(hub, repo, dest, ignore_patterns=["onnx/", "*.md"]))
    assert sorted(res["pruned"]) == ["README.md", "extra/notes.md", "onnx/model.onnx"]
    assert not (dest / "README.md").exists() and not (dest / "extra").exists()
    assert (dest / "onnx" / "mine.txt").exists()
    manifest = json.loads((dest / mf.MANIFEST_NAME).read_text())
    assert sorted(manifest["files"]) == ["config.json", "model.safetensors", "tokenizer.json"]


def test_mirror_without_blob_metadata_uses_tree_api(hub, tmp_path):
    files = repo_files()
    commit = hub.add_repo("acme/plainmirror", files, blobs_metadata=False)
    mark = hub.mark()
    res = mf.run({"repo_id": "acme/plainmirror", "endpoint": hub.url, "dest": str(tmp_path / "d"),
                  "allow_patterns": ["*.json", "*.safetensors"]})
    assert res["commit"] == commit
    assert sorted(f["path"] for f in res["files"]) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert any("/tree/%s" % commit in e["uri"] for e in hub.since(mark))
    assert (tmp_path / "d" / "model.safetensors").read_bytes() == files["model.safetensors"]


def test_plain_url_with_head_size_and_subdir(hub, fault, tmp_path):
    data = blob(MiB + 5, "url")
    fault.files["x/model.gguf"] = data
    res = mf.run({"dest": str(tmp_path / "d"), "urls": [{"url": fault.url + "/ok/x/model.gguf", "sha256": "sha256:" + sha256(data),
                                                         "path": "gguf/model.gguf"}]})
    assert res["files"][0]["status"] == "downloaded" and res["bytes_total"] == len(data)
    assert [r["method"] for r in fault.requests] == ["HEAD", "GET"]
    assert (tmp_path / "d" / "gguf" / "model.gguf").read_bytes() == data
    res = mf.run({"dest": str(tmp_path / "d"), "urls": [{"url": fault.url + "/ok/x/model.gguf", "sha256": sha256(data),
                                                         "path": "gguf/model.gguf"}]})
    assert res["changed"] is False and len(fault.requests) == 2
