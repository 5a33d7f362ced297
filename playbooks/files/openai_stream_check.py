"""Stream one chat completion and report how its chunks arrived, as JSON.

Runs on the inference host itself with nothing but the standard library. The
API key comes from the environment (OPENAI_API_KEY), never argv.
"""

import argparse
import http.client
import json
import os
import sys
import time
import urllib.parse


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()

    url = urllib.parse.urlsplit(args.url)
    conn_cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(url.hostname, url.port, timeout=300)
    body = json.dumps({
        "model": args.model,
        "messages": [{"role": "user", "content": args.prompt}],
        "max_tokens": args.max_tokens,
        "temperature": 0,
        "stream": True,
    })
    headers = {"Content-Type": "application/json", "Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]}
    started = time.monotonic()
    conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
    response = conn.getresponse()
    arrivals, text, done = [], [], False
    # Read line by line as bytes arrive: each SSE event is timed when it lands.
    while True:
        line = response.fp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            done = True
            break
        chunk = json.loads(payload)
        delta = chunk["choices"][0]["delta"].get("content") if chunk.get("choices") else None
        if delta:
            arrivals.append(time.monotonic() - started)
            text.append(delta)
    print(json.dumps({
        "status": response.status,
        "content_type": response.getheader("Content-Type"),
        "chunks": len(arrivals),
        "first_chunk_s": round(arrivals[0], 4) if arrivals else None,
        "last_chunk_s": round(arrivals[-1], 4) if arrivals else None,
        "distinct_arrival_times": len({round(t, 3) for t in arrivals}),
        "done": done,
        "text": "".join(text),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
