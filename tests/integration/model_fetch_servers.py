"""Real loopback HTTP servers for the model_fetch tests and benchmark.

* ``NginxHub``: the Debian nginx binary, run as a non-daemon on a free
  127.0.0.1 port with a private prefix, serving a Hugging Face Hub-shaped
  tree of static files: ``/api/models/{repo}/revision/{rev}`` (JSON, with
  ``?blobs=true`` metadata), ``/api/models/{repo}/tree/{commit}`` and
  ``/{repo}/resolve/{commit}/{path}`` (static files, HTTP Range by nginx).
* ``FaultServer``: a small threaded Python server for what nginx will not
  do on purpose: ignore Range, drop the connection after N bytes, serve
  corrupt bytes once, answer 401/404 like the Hub.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TOKEN = "hf_test_s3cret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited early with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on 127.0.0.1:%d" % port)


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def fake_commit(repo_id, salt=""):
    return hashlib.sha1(("commit:%s:%s" % (repo_id, salt)).encode()).hexdigest()


def sibling(path, data=None, *, lfs=None, size=None):
    """A Hub ``siblings`` entry (``blobs=true`` shape). LFS files carry sha256 and size in ``lfs``."""
    if lfs is None:
        lfs = size is not None or (data is not None and len(data) >= 64 * 1024)
    if size is None:
        size = len(data)
    if lfs:
        sha = hashlib.sha256(data).hexdigest() if data is not None else None
        pointer = ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (sha, size)).encode()
        return {"rfilename": path, "size": size, "blobId": git_blob_sha1(pointer),
                "lfs": {"sha256": sha, "size": size, "pointerSize": len(pointer)}}
    return {"rfilename": path, "size": size, "blobId": git_blob_sha1(data)}


class NginxHub:
    """nginx serving a Hub-shaped static tree under ``root/www``."""

    def __init__(self, root, *, gated_repos=(), sendfile=True, limit_rate=None):
        self.root = Path(root)
        self.www = self.root / "www"
        self.www.mkdir(parents=True, exist_ok=True)
        self.port = None
        self.proc = None
        self.gated_repos = list(gated_repos)
        self.sendfile = sendfile
        self.limit_rate = limit_rate  # nginx limit_rate per connection (for example "50m"), None: uncapped
        self.access_log = self.root / "access.log"

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    # -- content ---------------------------------------------------------
    def add_repo(self, repo_id, files, *, revisions=("main",), commit=None, blobs_metadata=True, lfs_paths=None,
                 repo_type="model", link_files=None):
        """Publish ``files`` ({path: bytes}) as ``repo_id``.

        ``link_files`` ({path: (existing file, sha256)}) hard-links big files instead of copying them.
        """
        commit = commit or fake_commit(repo_id, str(sorted(files)))
        prefix = {"model": "", "dataset": "datasets/"}[repo_type]
        base = self.www / (prefix + repo_id) / "resolve" / commit
        siblings, tree = [], []
        lfs_paths = set(lfs_paths or ())
        for path, data in sorted(files.items()):
            target = base / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            sib = sibling(path, data, lfs=True if path in lfs_paths else None)
            siblings.append(sib)
            tree.append(self._tree_entry(sib))
        for path, (src, sha) in sorted((link_files or {}).items()):
            target = base / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                target.unlink()
            os.link(src, target)
            size = os.path.getsize(src)
            pointer = ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (sha, size)).encode()
            sib = {"rfilename": path, "size": size, "blobId": git_blob_sha1(pointer),
                   "lfs": {"sha256": sha, "size": size, "pointerSize": len(pointer)}}
            siblings.append(sib)
            tree.append(self._tree_entry(sib))
        api = self.www / "api" / (repo_type + "s") / repo_id
        info = {"_id": "x", "id": repo_id, "modelId": repo_id, "sha": commit, "private": False, "siblings":
                siblings if blobs_metadata else [{"rfilename": s["rfilename"]} for s in siblings]}
        for rev in set(revisions) | {commit}:
            out = api / "revision" / rev
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(info))
        treefile = api / "tree" / commit
        treefile.parent.mkdir(parents=True, exist_ok=True)
        treefile.write_text(json.dumps(tree))
        return commit

    @staticmethod
    def _tree_entry(sib):
        entry = {"type": "file", "path": sib["rfilename"], "size": sib["size"], "oid": sib["blobId"]}
        if "lfs" in sib:
            entry["lfs"] = {"oid": sib["lfs"]["sha256"], "size": sib["lfs"]["size"], "pointerSize": sib["lfs"]["pointerSize"]}
        return entry

    # -- process ---------------------------------------------------------
    def _config(self):
        gated = ""
        for repo in self.gated_repos:
            for loc in ("/api/models/%s/" % repo, "/%s/resolve/" % repo):
                gated += """
        location ^~ %s {
            if ($http_authorization != "Bearer %s") {
                add_header X-Error-Code GatedRepo always;
                add_header X-Error-Message "Access to this repository is restricted" always;
                return 401;
            }
            default_type application/json;
        }""" % (loc, TOKEN)
        return """
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format mf '$request_method $uri "$http_range" $status $body_bytes_sent "$http_authorization_set"';
    map $http_authorization $http_authorization_set {{ default "yes"; "" "no"; }}
    access_log {root}/access.log mf;
    client_body_temp_path {root}/tmp_body;
    proxy_temp_path {root}/tmp_proxy;
    fastcgi_temp_path {root}/tmp_fcgi;
    uwsgi_temp_path {root}/tmp_uwsgi;
    scgi_temp_path {root}/tmp_scgi;
    default_type application/octet-stream;
    sendfile {sendfile};
    {limit_rate}
    tcp_nopush on;
    keepalive_requests 10000;
    server {{
        listen 127.0.0.1:{port};
        root {www};
        etag on;
        location /api/ {{
            default_type application/json;
        }}
        {gated}
        location ~ "^/.+/resolve/(?<commit>[0-9a-f]{{40}})/" {{
            add_header X-Repo-Commit $commit;
        }}
    }}
}}
""".format(root=self.root, port=self.port, www=self.www, gated=gated, sendfile="on" if self.sendfile else "off",
           limit_rate="limit_rate %s;" % self.limit_rate if self.limit_rate else "")

    def start(self):
        self.port = free_port()
        conf = self.root / "nginx.conf"
        conf.write_text(self._config())
        self.proc = subprocess.Popen([NGINX, "-p", str(self.root), "-e", str(self.root / "error.log"), "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_port(self.port, proc=self.proc)
        except RuntimeError:
            err = self.proc.stderr.read().decode() if self.proc.poll() is not None else ""
            self.stop()
            log = self.root / "error.log"
            raise RuntimeError("nginx did not start: %s %s" % (err, log.read_text() if log.exists() else "")) from None
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_lines(self):
        """Access log entries as dicts (nginx writes them when each request ends)."""
        if not self.access_log.exists():
            return []
        out = []
        for line in self.access_log.read_text().splitlines():
            m = re.match(r'^(\S+) (\S+) "([^"]*)" (\d+) (\d+) "(\w+)"$', line)
            if m:
                out.append({"method": m.group(1), "uri": m.group(2), "range": m.group(3), "status": int(m.group(4)),
                            "bytes": int(m.group(5)), "auth": m.group(6) == "yes"})
        return out

    def mark(self):
        """Number of log lines so far: pass to ``since`` to see the requests of one run."""
        return len(self.log_lines())

    def since(self, mark):
        return self.log_lines()[mark:]


class FaultServer:
    """Threaded HTTP server serving ``files`` ({name: bytes}) under fault-injecting prefixes.

    ``/ok/NAME``: honours Range (``bytes=N-`` and ``bytes=N-M``). ``/norange/NAME``: answers 200 with the whole
    file to any Range. ``/drop/NAME``: the first ``drops`` GETs send ``drop_after`` bytes (of the range asked
    for), then close the connection.
    ``/corrupt-once/NAME``: the first GET has one byte flipped. ``/status/CODE/...``: answers CODE.
    """

    def __init__(self, files=None, *, drop_after=1024, drops=1):
        self.files = dict(files or {})
        self.drop_after = drop_after
        self.drops_left = {}
        self.default_drops = drops
        self.corrupt_served = set()
        self.requests = []
        self.lock = threading.Lock()
        self.httpd = None
        self.thread = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.httpd.server_address[1]

    def start(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._serve(head=True)

            def do_GET(self):
                self._serve(head=False)

            def _record(self, status, sent):
                with server.lock:
                    self.rec.update(status=status, bytes=sent)

            def _serve(self, head):
                # Recorded on arrival (in order), completed when answered.
                self.rec = {"method": self.command, "path": self.path, "range": self.headers.get("Range"), "status": None, "bytes": 0}
                with server.lock:
                    server.requests.append(self.rec)
                parts = self.path.split("?", 1)[0].strip("/").split("/")
                mode = parts[0]
                if mode == "status":
                    code = int(parts[1])
                    body = json.dumps({"error": "Repository Not Found" if code in (401, 404) else "error"}).encode()
                    self.send_response(code)
                    if code == 401:
                        self.send_header("X-Error-Code", "RepoNotFound")
                        self.send_header("X-Error-Message", "Invalid username or password.")
                    elif code == 404:
                        self.send_header("X-Error-Code", "EntryNotFound")
                        self.send_header("X-Error-Message", "Entry not found")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if not head:
                        self.wfile.write(body)
                    self._record(code, 0 if head else len(body))
                    return
                name = "/".join(parts[1:])
                data = server.files.get(name)
                if data is None:
                    self.send_error(404)
                    self._record(404, 0)
                    return
                start, end = 0, len(data)
                rng = self.headers.get("Range")
                if rng and mode != "norange":
                    m = re.match(r"bytes=(\d+)-(\d*)$", rng)
                    start = int(m.group(1)) if m else 0
                    if m and m.group(2):
                        end = min(len(data), int(m.group(2)) + 1)
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", "bytes */%d" % len(data))
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        self._record(416, 0)
                        return
                body = data[start:end]
                if mode == "corrupt-once" and not head:
                    with server.lock:
                        first = name not in server.corrupt_served
                        server.corrupt_served.add(name)
                    if first:
                        body = bytes([body[0] ^ 0xFF]) + body[1:]
                status = 206 if rng and mode != "norange" else 200
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "none" if mode == "norange" else "bytes")
                if status == 206:
                    self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, len(data)))
                self.end_headers()
                if head:
                    self._record(status, 0)
                    return
                if mode == "drop" and not head:
                    with server.lock:
                        left = server.drops_left.setdefault(name, server.default_drops)
                        if left > 0:
                            server.drops_left[name] = left - 1
                    if left > 0:
                        part = body[: server.drop_after]
                        self.wfile.write(part)
                        self.wfile.flush()
                        self._record(status, len(part))
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                self._record(status, 0)
                self.wfile.write(body)
                self._record(status, len(body))

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def gets(self, name=None):
        return [r for r in self.requests if r["method"] == "GET" and (name is None or r["path"].endswith("/" + name))]


def blob(n, seed):
    """Deterministic incompressible bytes."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(b"%s:%d" % (seed.encode(), counter)).digest() * 64
        counter += 1
    return bytes(out[:n])


def sha256(data):
    return hashlib.sha256(data).hexdigest()
