# Copyright: contributors to llmops.inference
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Exact weight bytes of a safetensors checkpoint, from its headers only.

A safetensors file is an 8-byte little-endian header length N, then N bytes of
JSON mapping each tensor name to ``{"dtype", "shape", "data_offsets"}``, then
the raw data. Only the header is read, so a 140 GB checkpoint costs a few
kilobytes of I/O. Sharded checkpoints list their shards in
``model.safetensors.index.json`` (``weight_map``; ``metadata.total_size`` is
the sum of the tensor bytes).

Standard library only: this runs on targets with a bare Python.
"""

from __future__ import annotations


import json
import os
import struct

# Bytes per element of each safetensors dtype (see the safetensors format spec).
DTYPE_BYTES = {
    "F64": 8, "I64": 8, "U64": 8,
    "F32": 4, "I32": 4, "U32": 4,
    "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
    "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I8": 1, "U8": 1, "BOOL": 1,
}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")
# A header larger than this is not a sane safetensors file (the format's own
# reference implementation caps it at 100 MB).
MAX_HEADER_BYTES = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    pass


def read_header(path):
    """Return the parsed JSON header of one .safetensors file."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise SafetensorsError("%s: too short for a safetensors file" % path)
        (length,) = struct.unpack("<Q", raw)
        if length == 0 or length > MAX_HEADER_BYTES:
            raise SafetensorsError("%s: implausible safetensors header length %d" % (path, length))
        data = f.read(length)
    if len(data) != length:
        raise SafetensorsError("%s: truncated safetensors header" % path)
    try:
        header = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise SafetensorsError("%s: header is not JSON: %s" % (path, exc)) from exc
    if not isinstance(header, dict):
        raise SafetensorsError("%s: header is not a JSON object" % path)
    return header


def summarize_header(header, name="<header>"):
    """Sum tensor bytes by dtype: ``{"tensors": n, "bytes": total, "by_dtype": {dtype: bytes}}``."""
    by_dtype = {}
    count = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            start, end = info["data_offsets"]
            dtype = info["dtype"]
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError("%s: tensor %r has no dtype/data_offsets" % (name, key)) from None
        nbytes = int(end) - int(start)
        if nbytes < 0:
            raise SafetensorsError("%s: tensor %r has negative size" % (name, key))
        by_dtype[dtype] = by_dtype.get(dtype, 0) + nbytes
        count += 1
    return {"tensors": count, "bytes": sum(by_dtype.values()), "by_dtype": by_dtype}


def _merge(total, part):
    total["tensors"] += part["tensors"]
    total["bytes"] += part["bytes"]
    for dtype, nbytes in part["by_dtype"].items():
        total["by_dtype"][dtype] = total["by_dtype"].get(dtype, 0) + nbytes


def checkpoint_weights(model_dir):
    """Weight bytes of the safetensors checkpoint in model_dir, or None if it has none.

    Returns ``{"tensors", "bytes", "by_dtype", "files", "source"}``. With an
    index whose shards are not all present (a partial download), falls back to
    the index's ``metadata.total_size`` (by_dtype is then empty).
    """
    index_path = os.path.join(model_dir, "model.safetensors.index.json")
    total = {"tensors": 0, "bytes": 0, "by_dtype": {}}
    if os.path.isfile(index_path):
        with open(index_path) as f:
            index = json.load(f)
        shards = sorted(set((index.get("weight_map") or {}).values()))
        paths = [os.path.join(model_dir, s) for s in shards]
        if shards and all(os.path.isfile(p) for p in paths):
            for p in paths:
                _merge(total, summarize_header(read_header(p), p))
            total["files"] = shards
            total["source"] = "safetensors headers (%d shards listed in model.safetensors.index.json)" % len(shards)
            return total
        size = (index.get("metadata") or {}).get("total_size")
        if size:
            total["bytes"] = int(size)
            total["files"] = shards
            total["source"] = "model.safetensors.index.json metadata.total_size (shards not all present)"
            return total
    files = sorted(n for n in os.listdir(model_dir) if n.endswith(".safetensors"))
    if not files:
        return None
    for n in files:
        p = os.path.join(model_dir, n)
        _merge(total, summarize_header(read_header(p), p))
    total["files"] = files
    total["source"] = "safetensors headers (%s)" % ", ".join(files)
    return total
