"""Compare gpu_fabric_test's bus bandwidth with the plain loop's, size by size: python compare.py FABRIC.json PLAIN.json."""

import json
import sys


def main():
    with open(sys.argv[1]) as handle:
        fabric = json.load(handle)
    with open(sys.argv[2]) as handle:
        plain = json.load(handle)
    plain_by_size = {row["size_bytes"]: row for row in plain["results"]}
    print("%12s %16s %16s %8s %s" % ("size_bytes", "module busbw", "plain busbw", "diff", "within 10%"))
    worst = 0.0
    for row in fabric["results"]:
        other = plain_by_size.get(row["size_bytes"])
        if not other:
            continue
        diff = (row["busbw_gbps"] - other["busbw_gbps"]) / other["busbw_gbps"]
        worst = max(worst, abs(diff))
        verdict = "yes" if abs(diff) <= 0.10 else "NO"
        print("%12d %11.2f GB/s %11.2f GB/s %+7.1f%% %s" % (row["size_bytes"], row["busbw_gbps"], other["busbw_gbps"], 100 * diff, verdict))
    print("largest difference: %.1f%%" % (100 * worst))


if __name__ == "__main__":
    main()
