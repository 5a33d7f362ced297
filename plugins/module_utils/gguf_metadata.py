# Copyright: contributors to llmops.inference
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Read a GGUF file's header: metadata key/values and tensor infos, no tensor data.

Layout (GGUF v2/v3, little-endian; https://github.com/ggml-org/ggml/blob/master/docs/gguf.md):
``magic "GGUF" | u32 version | u64 tensor_count | u64 kv_count |
kv_count x (string key, u32 value_type, value) |
tensor_count x (string name, u32 n_dims, n_dims x u64 dim, u32 ggml_type, u64 offset)``,
strings being ``u64 length + UTF-8 bytes``. Large arrays (the tokenizer's
vocabulary) are skipped with seeks; only their length is kept.

Standard library only: the ``gguf`` package is not installed on targets.
"""

from __future__ import annotations


import struct

GGUF_MAGIC = b"GGUF"

# Metadata value types.
_SCALARS = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
    10: "<Q", 11: "<q", 12: "<d",
}
T_STRING = 8
T_ARRAY = 9

# ggml tensor types: name, elements per block, bytes per block
# (ggml/src/ggml.c type_traits; ggml-common.h block structs).
GGML_TYPES = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}

# general.file_type (llama_ftype) names, for the explanation.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
    22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE",
}

# Arrays longer than this keep only their length (vocabularies, merges).
MAX_KEPT_ARRAY = 1024
# Sanity bounds against corrupt or hostile files.
MAX_STRING = 1 << 24
MAX_COUNT = 1 << 32


class GGUFError(ValueError):
    pass


class _Reader:
    def __init__(self, f, name):
        self.f = f
        self.name = name

    def read(self, n):
        data = self.f.read(n)
        if len(data) != n:
            raise GGUFError("%s: truncated GGUF header" % self.name)
        return data

    def unpack(self, fmt):
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self, keep=True):
        n = self.unpack("<Q")
        if n > MAX_STRING:
            raise GGUFError("%s: implausible GGUF string length %d" % (self.name, n))
        if not keep:
            self.f.seek(n, 1)
            return None
        return self.read(n).decode("utf-8", "replace")

    def value(self, vtype):
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == T_STRING:
            return self.string()
        if vtype == T_ARRAY:
            itype = self.unpack("<I")
            count = self.unpack("<Q")
            if count > MAX_COUNT:
                raise GGUFError("%s: implausible GGUF array length %d" % (self.name, count))
            keep = count <= MAX_KEPT_ARRAY
            if itype in _SCALARS:
                size = struct.calcsize(_SCALARS[itype])
                if not keep:
                    self.f.seek(size * count, 1)
                    return GGUFArray(count)
                return [self.unpack(_SCALARS[itype]) for _dummy in range(count)]
            if itype == T_STRING:
                items = [self.string(keep) for _dummy in range(count)]
                return items if keep else GGUFArray(count)
            if itype == T_ARRAY:
                items = [self.value(T_ARRAY) for _dummy in range(count)]
                return items if keep else GGUFArray(count)
            raise GGUFError("%s: unknown GGUF array item type %d" % (self.name, itype))
        raise GGUFError("%s: unknown GGUF value type %d" % (self.name, vtype))


class GGUFArray:
    """Placeholder for a long array that was skipped: only its length is known."""

    def __init__(self, count):
        self.count = count

    def __len__(self):
        return self.count

    def __repr__(self):
        return "GGUFArray(count=%d)" % self.count


def tensor_nbytes(ggml_type, dims):
    """Bytes of one tensor of the given ggml type and shape."""
    try:
        _name, block, size = GGML_TYPES[ggml_type]
    except KeyError:
        raise GGUFError("unknown ggml tensor type %d" % ggml_type) from None
    n = 1
    for d in dims:
        n *= int(d)
    if n % block:
        raise GGUFError("tensor of %d elements is not a multiple of the %d-element block of ggml type %d" % (n, block, ggml_type))
    return n // block * size


def read_gguf(path):
    """Parse a GGUF header.

    Returns ``{"version", "metadata": {key: value}, "tensors": [{"name", "shape", "type", "bytes"}],
    "tensor_bytes", "bytes_by_type": {type name: bytes}}``.
    """
    with open(path, "rb") as f:
        r = _Reader(f, path)
        if r.read(4) != GGUF_MAGIC:
            raise GGUFError("%s: not a GGUF file (bad magic)" % path)
        version = r.unpack("<I")
        if version not in (2, 3):
            raise GGUFError("%s: GGUF version %d is not supported (2 and 3 are)" % (path, version))
        n_tensors = r.unpack("<Q")
        n_kv = r.unpack("<Q")
        if n_tensors > MAX_COUNT or n_kv > MAX_COUNT:
            raise GGUFError("%s: implausible GGUF counts" % path)
        metadata = {}
        for _dummy in range(n_kv):
            key = r.string()
            vtype = r.unpack("<I")
            metadata[key] = r.value(vtype)
        tensors = []
        by_type = {}
        for _dummy in range(n_tensors):
            name = r.string()
            n_dims = r.unpack("<I")
            if n_dims > 8:
                raise GGUFError("%s: tensor %s has %d dimensions" % (path, name, n_dims))
            dims = [r.unpack("<Q") for _dummy in range(n_dims)]
            ggml_type = r.unpack("<I")
            r.unpack("<Q")  # offset into the data section
            nbytes = tensor_nbytes(ggml_type, dims)
            tname = GGML_TYPES[ggml_type][0]
            by_type[tname] = by_type.get(tname, 0) + nbytes
            tensors.append({"name": name, "shape": dims, "type": tname, "bytes": nbytes})
    return {
        "version": version,
        "metadata": metadata,
        "tensors": tensors,
        "tensor_bytes": sum(t["bytes"] for t in tensors),
        "bytes_by_type": by_type,
    }
