"""Bounded streaming load through an llmops gateway, counting what matters
for zero-downtime changes: requests, failures and truncated streams.

Each of --clients threads sends streaming chat completions one after the
other (a new TLS connection each, as a pool of short-lived clients would)
until --duration seconds have passed, --stop-file exists, or --max-requests
were sent. A request is
  ok         HTTP 200 and the stream ended with `data: [DONE]`;
  failed     no stream: a connection error or a status other than 200;
  truncated  a stream that started (200) but ended before `data: [DONE]`.
The summary (JSON) goes to stdout and --out.

  python fleet_load.py --url https://127.0.0.1:8643 --ca ca.crt --cert app.crt \
      --key app.key --api-key-file key --model smollm2-135m-instruct --clients 4 --duration 60
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import pathlib
import ssl
import threading
import time
import urllib.parse


def one_request(args: argparse.Namespace, tls: ssl.SSLContext, api_key: str) -> dict:
    url = urllib.parse.urlsplit(args.url)
    body = json.dumps({
        "model": args.model,
        "messages": [{"role": "user", "content": args.prompt}],
        "max_tokens": args.max_tokens,
        "temperature": 0,
        "stream": True,
    })
    started = time.monotonic()
    result = {"start": round(time.time(), 3), "status": 0, "chunks": 0, "done": False, "error": ""}
    conn = http.client.HTTPSConnection(url.hostname, url.port or 443, context=tls, timeout=args.timeout)
    try:
        conn.request("POST", "/v1/chat/completions", body=body, headers={
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "X-Model": args.model,
        })
        response = conn.getresponse()
        result["status"] = response.status
        result["request_id"] = response.getheader("X-Request-ID", "")
        if response.status != 200:
            result["error"] = response.read(300).decode(errors="replace")
            return result
        while True:
            line = response.readline()
            if not line:
                break
            line = line.strip()
            if line == b"data: [DONE]":
                result["done"] = True
                break
            if line.startswith(b"data: "):
                result["chunks"] += 1
    except (OSError, http.client.HTTPException) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
        result["seconds"] = round(time.monotonic() - started, 3)
    return result


def classify(result: dict) -> str:
    if result["status"] == 200 and result["done"]:
        return "ok"
    if result["status"] == 200:
        return "truncated"
    return "failed"


def run(args: argparse.Namespace) -> dict:
    tls = ssl.create_default_context(cafile=args.ca)
    tls.load_cert_chain(args.cert, args.key)
    api_key = pathlib.Path(args.api_key_file).read_text().strip()
    deadline = time.monotonic() + args.duration
    results: list[dict] = []
    lock = threading.Lock()
    sent = collections.Counter()

    def stop() -> bool:
        return (time.monotonic() >= deadline or (args.stop_file and os.path.exists(args.stop_file))
                or sent["n"] >= args.max_requests)

    def client() -> None:
        while True:
            with lock:
                if stop():
                    return
                sent["n"] += 1
            result = one_request(args, tls, api_key)
            with lock:
                results.append(result)

    began = time.monotonic()
    threads = [threading.Thread(target=client, daemon=True) for _client in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kinds = collections.Counter(classify(r) for r in results)
    return {
        "clients": args.clients,
        "seconds": round(time.monotonic() - began, 1),
        "requests": len(results),
        "ok": kinds["ok"],
        "failed": kinds["failed"],
        "truncated": kinds["truncated"],
        "statuses": dict(collections.Counter(str(r["status"]) for r in results)),
        "mean_request_s": round(sum(r["seconds"] for r in results) / max(len(results), 1), 3),
        "problems": [r for r in results if classify(r) != "ok"][:20],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--api-key-file", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompt", default="Count from one to twenty in words.")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (an upper bound)")
    parser.add_argument("--max-requests", type=int, default=5000, help="an upper bound on requests sent")
    parser.add_argument("--stop-file", default="", help="stop (after the requests in flight) once this file exists")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    summary = run(args)
    text = json.dumps(summary, indent=2)
    if args.out:
        pathlib.Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
