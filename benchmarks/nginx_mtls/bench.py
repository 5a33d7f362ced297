#!/usr/bin/env python
"""Proxy overhead: streaming completions direct to the upstream vs through nginx_mtls.

Standard library only, so it runs on the proxy host itself (both paths then
share the same loopback and the same client cost, apart from TLS).

For each concurrency level, N worker threads each keep one persistent
connection (like an SDK's pool) and send streaming requests back to back.
Runs alternate direct/proxy/direct/proxy to cancel drift. Reported per
path: output tokens/s (SSE content events per wall second), TTFT (request
sent -> first content event) p50/p95, and the proxy/direct ratios.

  python3 bench.py --direct http://127.0.0.1:8001 --direct http://127.0.0.1:8002 \
      --proxy https://127.0.0.1:443 --ca ca.crt --cert alice.crt --key alice.key \
      --api-key-file alice.key.txt --model test-model --levels 1,8,32 --json out.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import statistics
import threading
import time
import urllib.parse


def percentile(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


class Target:
    def __init__(self, url, ctx=None, headers=None):
        self.url = urllib.parse.urlsplit(url)
        self.ctx = ctx
        self.headers = headers or {}

    def connect(self):
        port = self.url.port or (443 if self.url.scheme == "https" else 80)
        if self.url.scheme == "https":
            return http.client.HTTPSConnection(self.url.hostname, port, context=self.ctx, timeout=600)
        return http.client.HTTPConnection(self.url.hostname, port, timeout=600)


def one_stream(conn, body, headers):
    """Returns (ttft_seconds, content_events, seconds)."""
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body=body, headers=headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
    ttft, events, buf = None, 0, b""
    while True:
        piece = resp.read1(65536)
        if not piece:
            break
        buf += piece
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            if event.startswith(b"data: ") and event != b"data: [DONE]":
                if ttft is None:
                    ttft = time.perf_counter() - t0
                events += 1
    return ttft, events, time.perf_counter() - t0


def run(targets, streams, requests_per_stream, body, warmup=True):
    ttfts, tokens, errors = [], [0], []
    lock = threading.Lock()
    barrier = threading.Barrier(streams + 1)

    def worker(i):
        target = targets[i % len(targets)]
        headers = dict(target.headers, **{"Content-Type": "application/json"})
        conn = target.connect()
        try:
            if warmup:
                one_stream(conn, body, headers)  # handshake and first connection, not measured
            barrier.wait()
            for _dummy in range(requests_per_stream):
                ttft, events, _dummy = one_stream(conn, body, headers)
                with lock:
                    ttfts.append(ttft)
                    tokens[0] += events
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))
            barrier.abort()
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise RuntimeError(errors[:3])
    return {"tokens": tokens[0], "wall_s": wall, "tok_s": tokens[0] / wall, "ttft": ttfts}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--direct", action="append", required=True, help="upstream base URL (repeat for several)")
    p.add_argument("--proxy", required=True)
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--api-key-file", help="file holding the client API key (keeps it off argv)")
    p.add_argument("--upstream-key-file", help="file holding vLLM's own key for the direct path, if any")
    p.add_argument("--model", default="test-model")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--levels", default="1,8,32")
    p.add_argument("--requests", default="12,6,3", help="requests per stream at each level")
    p.add_argument("--rounds", type=int, default=2, help="direct/proxy alternations per level")
    p.add_argument("--extra-body", default="{}", help="JSON merged into the request body")
    p.add_argument("--json")
    args = p.parse_args()

    ctx = ssl.create_default_context(cafile=args.ca) if args.ca else ssl.create_default_context()
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    proxy_headers = {}
    if args.api_key_file:
        proxy_headers["Authorization"] = "Bearer " + open(args.api_key_file).read().strip()
    direct_headers = {}
    if args.upstream_key_file:
        direct_headers["Authorization"] = "Bearer " + open(args.upstream_key_file).read().strip()
    direct = [Target(u, headers=direct_headers) for u in args.direct]
    proxy = [Target(args.proxy, ctx, proxy_headers)]
    body = json.dumps(dict({"model": args.model, "prompt": "Count slowly:", "max_tokens": args.max_tokens,
                            "stream": True, "ignore_eos": True, "temperature": 0}, **json.loads(args.extra_body)))

    results = []
    for level, reqs in zip([int(x) for x in args.levels.split(",")], [int(x) for x in args.requests.split(",")]):
        agg = {"direct": {"tokens": 0, "wall_s": 0.0, "ttft": []}, "proxy": {"tokens": 0, "wall_s": 0.0, "ttft": []}}
        for _dummy in range(args.rounds):
            for name, targets in (("direct", direct), ("proxy", proxy)):
                r = run(targets, level, reqs, body)
                agg[name]["tokens"] += r["tokens"]
                agg[name]["wall_s"] += r["wall_s"]
                agg[name]["ttft"] += r["ttft"]
        row = {"streams": level}
        for name in ("direct", "proxy"):
            a = agg[name]
            row[name] = {"tok_s": a["tokens"] / a["wall_s"], "requests": len(a["ttft"]),
                         "ttft_p50_ms": 1000 * statistics.median(a["ttft"]),
                         "ttft_p95_ms": 1000 * percentile(a["ttft"], 0.95)}
        row["throughput_ratio"] = row["proxy"]["tok_s"] / row["direct"]["tok_s"]
        row["ttft_p50_added_ms"] = row["proxy"]["ttft_p50_ms"] - row["direct"]["ttft_p50_ms"]
        row["ttft_p95_added_ms"] = row["proxy"]["ttft_p95_ms"] - row["direct"]["ttft_p95_ms"]
        results.append(row)
        print(f"{level:>3} streams: direct {row['direct']['tok_s']:8.1f} tok/s  proxy {row['proxy']['tok_s']:8.1f} tok/s  "
              f"ratio {row['throughput_ratio']:.3f}  TTFT p50 +{row['ttft_p50_added_ms']:.2f} ms  "
              f"p95 +{row['ttft_p95_added_ms']:.2f} ms", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": args.model, "max_tokens": args.max_tokens, "results": results}, fh, indent=2)


if __name__ == "__main__":
    main()
