"""A small stand-in for vLLM's OpenAI server: the shapes, SSE streaming, /health, /metrics.

Standard library only (it runs on the target's python3). Used by the
nginx_mtls molecule scenario and benchmark where a real engine would cost
minutes per run. Streaming: one `data:` event per token, with
--token-delay seconds between tokens, chunked like vLLM.

    python3 fake_vllm.py --port 8001 --model test-model [--token-delay 0.01]
"""

from __future__ import annotations

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Like uvicorn (vLLM's server): no Nagle delay on small SSE writes.
    disable_nagle_algorithm = True
    server_version = "fake-vllm"
    model = "test-model"
    token_delay = 0.01

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Fake-Saw-Authorization", self.headers.get("Authorization", "<none>"))
        self.send_header("X-Fake-Port", str(self.server.server_address[1]))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        if self.path == "/health":
            self._send(200, b"", "text/plain")
        elif self.path == "/v1/models":
            self._send(200, json.dumps({"object": "list", "data": [{"id": self.model, "object": "model"}]}).encode())
        elif self.path == "/metrics":
            self._send(200, b"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0\n", "text/plain")
        else:
            self._send(404, b'{"error":{"message":"not found","type":"NotFoundError","code":404}}')

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            self._send(400, b'{"error":{"message":"bad json","type":"BadRequestError","code":400}}')
            return
        if self.path not in ("/v1/chat/completions", "/v1/completions"):
            self._send(404, b'{"error":{"message":"not found","type":"NotFoundError","code":404}}')
            return
        chat = self.path.endswith("chat/completions")
        n = int(req.get("max_tokens") or 16)
        delay = float(req.get("fake_token_delay", self.token_delay))
        words = [f"tok{i} " for i in range(n)]
        created = int(time.time())
        if not req.get("stream"):
            time.sleep(delay * n)
            text = "".join(words)
            choice = (
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
                if chat
                else {"index": 0, "text": text, "finish_reason": "length"}
            )
            body = {
                "id": "cmpl-fake",
                "object": "chat.completion" if chat else "text_completion",
                "created": created,
                "model": req.get("model", self.model),
                "choices": [choice],
                "usage": {"prompt_tokens": 1, "completion_tokens": n, "total_tokens": n + 1},
            }
            self._send(200, json.dumps(body).encode())
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Fake-Saw-Authorization", self.headers.get("Authorization", "<none>"))
        self.end_headers()

        def chunk(data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        for i, word in enumerate(words):
            if i:
                time.sleep(delay)
            delta = {"index": 0, "delta": {"content": word}, "finish_reason": None} if chat else {"index": 0, "text": word, "finish_reason": None}
            event = {
                "id": "cmpl-fake",
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": created,
                "model": req.get("model", self.model),
                "choices": [delta],
            }
            chunk(b"data: " + json.dumps(event).encode() + b"\n\n")
        chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--model", default="test-model")
    parser.add_argument("--token-delay", type=float, default=0.01)
    args = parser.parse_args()
    Handler.model = args.model
    Handler.token_delay = args.token_delay
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.request_queue_size = 256
    server.serve_forever()


if __name__ == "__main__":
    main()
