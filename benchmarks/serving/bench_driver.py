#!/usr/bin/env python
# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE)
"""Alternate vLLM's own load generator (`vllm bench serve`) over several targets.

Runs inside the lab host with the instance's virtualenv (it imports
vllm.benchmarks.serve once, then calls it for every target, concurrency and
round, so the client's start-up is paid once). Targets are given as
NAME=URL[,KEYFILE], e.g. managed=http://127.0.0.1:8000,/etc/vllm/key. For an
https URL the client certificate, key and CA given with --cert/--key/--ca are
presented (the gateway's mTLS): vLLM's client has no option for that, so the
aiohttp connector it creates gets an SSL context with them.

Order: for each round, for each concurrency, every target in turn (A/B/A/B),
so drift from other load on the machine falls on all targets alike.
Writes one JSON file with every run's metrics.
"""

import argparse
import json
import os
import ssl
import sys
import time

import aiohttp
from vllm.benchmarks import serve
from vllm.utils.argparse_utils import FlexibleArgumentParser


def parse_target(text):
    name, rest = (text.split("=", 1) + [""])[:2]
    url, keyfile = (rest.split(",", 1) + [""])[:2]
    if not name or not url:
        raise argparse.ArgumentTypeError(f"target {text!r}: want NAME=URL[,KEYFILE]")
    return {"name": name, "url": url.rstrip("/"), "keyfile": keyfile or None}


def install_client_cert(ca, cert, key):
    """Make every aiohttp connector vLLM's client opens present the client certificate."""
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    original = aiohttp.TCPConnector.__init__

    def init(self, *args, **kwargs):
        if kwargs.get("ssl") is True:
            kwargs["ssl"] = context
        original(self, *args, **kwargs)

    aiohttp.TCPConnector.__init__ = init


KEEP = (
    "completed", "failed", "duration", "total_output_tokens", "output_throughput",
    "request_throughput", "mean_ttft_ms", "median_ttft_ms", "p95_ttft_ms",
    "mean_tpot_ms", "median_tpot_ms", "p95_tpot_ms", "mean_itl_ms", "median_itl_ms", "p95_itl_ms",
)


def run_one(parser, opts, target, concurrency):
    if target["keyfile"]:
        with open(target["keyfile"], encoding="utf-8") as handle:
            os.environ["OPENAI_API_KEY"] = handle.read().strip()
    else:
        os.environ.pop("OPENAI_API_KEY", None)
    argv = [
        "--backend", "openai", "--base-url", target["url"], "--endpoint", "/v1/completions",
        "--model", opts.model, "--tokenizer", opts.tokenizer,
        "--dataset-name", "random", "--random-input-len", str(opts.input_len),
        "--random-output-len", str(opts.output_len), "--random-range-ratio", "0",
        "--ignore-eos", "--num-prompts", str(opts.prompts[concurrency]),
        "--max-concurrency", str(concurrency), "--request-rate", "inf",
        "--num-warmups", str(min(concurrency, 2)), "--seed", str(opts.seed),
        "--percentile-metrics", "ttft,tpot,itl", "--metric-percentiles", "50,95",
        "--disable-tqdm", "--ready-check-timeout-sec", "0",
    ]
    args = parser.parse_args(argv)
    started = time.time()
    result = serve.main(args)
    row = {k: result.get(k) for k in KEEP}
    row.update(target=target["name"], concurrency=concurrency, started=started)
    return row


def main():
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--target", action="append", type=parse_target, required=True)
    cli.add_argument("--model", required=True, help="served model name")
    cli.add_argument("--tokenizer", required=True, help="model directory (its tokenizer)")
    cli.add_argument("--levels", default="1,8,32")
    cli.add_argument("--rounds", type=int, default=2)
    cli.add_argument("--prompts", default="8,32,64", help="requests per level, in the order of --levels")
    cli.add_argument("--input-len", type=int, default=128)
    cli.add_argument("--output-len", type=int, default=64)
    cli.add_argument("--seed", type=int, default=0)
    cli.add_argument("--ca")
    cli.add_argument("--cert")
    cli.add_argument("--key")
    cli.add_argument("--json", required=True)
    opts = cli.parse_args()

    if opts.cert:
        install_client_cert(opts.ca, opts.cert, opts.key)
    parser = FlexibleArgumentParser()
    serve.add_cli_args(parser)
    levels = [int(x) for x in opts.levels.split(",")]
    opts.prompts = dict(zip(levels, (int(x) for x in opts.prompts.split(","))))
    rows = []
    for rnd in range(opts.rounds):
        for concurrency in levels:
            # Alternate which target goes first, so neither always follows the other.
            order = opts.target if rnd % 2 == 0 else list(reversed(opts.target))
            for target in order:
                row = run_one(parser, opts, target, concurrency)
                row["round"] = rnd
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
                with open(opts.json, "w", encoding="utf-8") as handle:
                    json.dump({"options": {k: v for k, v in vars(opts).items() if k not in ("key",)},
                               "load_before": os.getloadavg(), "runs": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
