#!/usr/bin/env python
# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE)
"""Summarize a bench_driver.py results file as a Markdown table.

Per concurrency and target: the median over rounds of output tokens/s, TTFT
p50/p95 and inter-token latency p50/p95, with the spread (min-max) of
tokens/s. Ratios: for every pair of targets, in the order given (the first
over the second, ...), per round (they ran back to back), then the median and
spread of those ratios.
"""

import itertools
import json
import statistics
import sys


def fmt_spread(values, digits=1):
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def per_round_ratios(runs, level, first, second):
    ratios = []
    for rnd in sorted({r["round"] for r in runs}):
        pair = {r["target"]: r for r in runs if r["concurrency"] == level and r["round"] == rnd}
        if first in pair and second in pair and pair[second]["output_throughput"]:
            ratios.append(pair[first]["output_throughput"] / pair[second]["output_throughput"])
    return ratios


def load(paths):
    """Runs and target names of one or more results files. Pooled files keep
    their rounds apart: a ratio only ever pairs runs of the same round."""
    runs, names = [], []
    for index, path in enumerate(paths):
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        for run in data["runs"]:
            runs.append(dict(run, round=(index, run["round"])))
        names += [t["name"] for t in data["options"]["target"] if t["name"] not in names]
    return runs, names


def summarize(paths):
    runs, names = load(paths)
    levels = sorted({r["concurrency"] for r in runs})
    lines = [
        "| streams | target | out tok/s (median, spread) | TTFT p50 ms | TTFT p95 ms | ITL p50 ms | ITL p95 ms | rounds |",
        "|---:|:--|---:|---:|---:|---:|---:|---:|",
    ]
    ratio_lines = [
        "| streams | tok/s ratio | median of per-round ratios | spread | rounds |",
        "|---:|:--|---:|---:|---:|",
    ]
    for level in levels:
        for name in names:
            rows = [r for r in runs if r["concurrency"] == level and r["target"] == name]
            if not rows:
                continue
            tps = [r["output_throughput"] for r in rows]
            med = {k: statistics.median(r[k] for r in rows)
                   for k in ("median_ttft_ms", "p95_ttft_ms", "median_itl_ms", "p95_itl_ms")}
            lines.append(
                f"| {level} | {name} | {statistics.median(tps):.1f} ({fmt_spread(tps)}) | "
                f"{med['median_ttft_ms']:.0f} | {med['p95_ttft_ms']:.0f} | "
                f"{med['median_itl_ms']:.1f} | {med['p95_itl_ms']:.1f} | {len(rows)} |"
            )
    for first, second in itertools.combinations(names, 2):
        for level in levels:
            ratios = per_round_ratios(runs, level, first, second)
            if ratios:
                ratio_lines.append(
                    f"| {level} | {first} / {second} | **{statistics.median(ratios):.3f}** | "
                    f"{fmt_spread(ratios, 3)} | {len(ratios)} |"
                )
    failed = sum(r.get("failed") or 0 for r in runs)
    return "\n".join(lines + [""] + ratio_lines + ["", f"failed requests: {failed}"])


if __name__ == "__main__":
    # summarize.py FILE...          one summary per file
    # summarize.py --pool FILE...   one summary of all rounds of all files
    if sys.argv[1:2] == ["--pool"]:
        print(f"### pooled: {', '.join(sys.argv[2:])}\n")
        print(summarize(sys.argv[2:]))
    else:
        for arg in sys.argv[1:]:
            print(f"### {arg}\n")
            print(summarize([arg]))
            print()
