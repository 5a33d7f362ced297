# Copyright: contributors to llmops.inference
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""vLLM's KV cache arithmetic: bytes per token, block groups, capacity (``vllm/v1/core/kv_cache_utils.py``).

Standard library only.
"""

from __future__ import annotations

from ansible_collections.llmops.inference.plugins.module_utils.model_config import DTYPE_BYTES

GiB = 1 << 30
KV_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16", "float16")


class PlanError(ValueError):
    pass


def _cdiv(a, b):
    return -(-a // b)


def gib(n):
    return n / float(GiB)


def kv_cache_dtype_bytes(kv_cache_dtype, model_dtype):
    if kv_cache_dtype in (None, "auto"):
        return DTYPE_BYTES["bfloat16" if model_dtype == "float32" else model_dtype]
    if kv_cache_dtype.startswith("fp8"):
        return 1
    if kv_cache_dtype in ("bfloat16", "float16"):
        return 2
    raise PlanError("kv_cache_dtype must be one of %s, got %r" % (", ".join(KV_DTYPES), kv_cache_dtype))


def kv_bytes_per_token_layer(shape, tp, kv_bytes):
    """KV bytes of one token in one layer on one GPU (vLLM's AttentionSpec page / block_size).

    Standard attention: K and V, ``max(1, kv_heads // tp)`` heads of head_dim
    each (vLLM replicates KV heads when tp > kv_heads). MLA (DeepSeek): one
    compressed latent of kv_lora_rank + qk_rope_head_dim, replicated on every
    TP rank (MLAAttentionSpec).
    """
    mla = shape.get("mla")
    if mla:
        return (mla["kv_lora_rank"] + mla["qk_rope_head_dim"]) * kv_bytes
    return 2 * max(1, shape["num_kv_heads"] // tp) * shape["head_dim"] * kv_bytes


def kv_groups(shape):
    """vLLM's KV cache grouping: (group_size, full_groups, sliding_groups)."""
    types = shape["layer_types"]
    nf = types.count("full")
    ns = types.count("sliding")
    if shape.get("mla") or not ns:
        # One uniform full-attention group of all layers (sliding windows with
        # MLA are promoted to full attention: _promote_local_kv_cache_specs).
        return len(types), 1, 0
    if not nf:
        return len(types), 0, 1
    gsize = min(nf, ns)
    if max(nf, ns) < gsize * 1.5:
        gsize = max(nf, ns)
    return gsize, _cdiv(nf, gsize), _cdiv(ns, gsize)


def kv_capacity(shape, available, tp, kv_bytes, *, block_size, max_model_len, max_num_batched_tokens):
    """vLLM's block count, logged token capacity and concurrency for one GPU's KV budget."""
    per_layer = kv_bytes_per_token_layer(shape, tp, kv_bytes)
    page = per_layer * block_size
    gsize, nfull, nslide = kv_groups(shape)
    bytes_per_block = gsize * page
    num_blocks = max(0, int(available) // bytes_per_block)
    per_req = nfull * _cdiv(max_model_len, block_size)
    if nslide:
        window = shape["sliding_window"]
        per_req += nslide * (_cdiv(min(window - 1 + max_num_batched_tokens, max_model_len), block_size) + 1)
    concurrency = num_blocks / float(per_req)
    return {
        "num_blocks": num_blocks,
        "blocks_per_request": per_req,
        "bytes_per_block": bytes_per_block,
        "tokens": int(concurrency * max_model_len),
        "concurrency": concurrency,
        "kv_bytes_per_token": per_layer * len(shape["layer_types"]),
        "exact": nslide == 0,
    }


def largest_model_len(shape, available, tp, kv_bytes, *, block_size, max_num_batched_tokens, upper, min_concurrency=1.0):
    """Largest max_model_len whose concurrency >= min_concurrency (binary search, as vLLM's estimate)."""
    lo, hi = 0, int(upper)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        c = kv_capacity(shape, available, tp, kv_bytes, block_size=block_size, max_model_len=mid, max_num_batched_tokens=max_num_batched_tokens)
        if c["concurrency"] >= min_concurrency:
            lo = mid
        else:
            hi = mid - 1
    return lo


def valid_tp(shape, tp):
    """vLLM requires num_attention_heads % tp == 0 and kv heads to split or replicate evenly."""
    heads, kv = shape["num_attention_heads"], shape["num_kv_heads"]
    if heads % tp:
        return False
    if shape.get("mla"):
        return True
    return kv % tp == 0 if kv >= tp else tp % kv == 0


def round_len(n, block_size):
    if n >= 4096:
        return n // 1024 * 1024
    return max(0, n // block_size * block_size)
