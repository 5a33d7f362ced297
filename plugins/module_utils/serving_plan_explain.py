# Copyright: contributors to llmops.inference
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""serving_plan's readable explanation, and what would fit when a plan does not.

Standard library only.
"""

from __future__ import annotations

from ansible_collections.llmops.inference.plugins.module_utils.model_config import ModelConfigError, estimate_weight_bytes
from ansible_collections.llmops.inference.plugins.module_utils.serving_plan_kv import (
    gib,
    kv_cache_dtype_bytes,
    largest_model_len,
    round_len,
    valid_tp,
)

GiB = 1 << 30
CUDA_CONTEXT_BYTES = 552402944  # measured on an H100 80GB HBM3 (benchmarks/results/serving_plan_gpu/)


def fmt_num(x):
    return ("%d" % x) if float(x).is_integer() else ("%.2f" % x)


def _kv_line(shape, tp, kvb):
    if shape.get("mla"):
        return "MLA latent (kv_lora_rank %d + qk_rope_head_dim %d) x %d B" % (
            shape["mla"]["kv_lora_rank"], shape["mla"]["qk_rope_head_dim"], kvb)
    return "2 (K,V) x %d KV heads%s x head_dim %d x %d B" % (
        max(1, shape["num_kv_heads"] // tp), " per GPU" if tp > 1 else "", shape["head_dim"], kvb)


def _gpu_lines(hw, r, opts):
    util = opts["gpu_memory_utilization"]
    lines = ["GPU: %d x %.2f GiB (NVML), %.2f GiB driver-reserved -> %.2f GiB seen by CUDA; budget per GPU = %.2f GiB x "
             "gpu_memory_utilization %.2f = %.2f GiB (vLLM's request_memory)"
             % (hw["count"], gib(hw["memory"]), gib(hw["reserved"]), gib(hw["cuda_total"]), gib(hw["cuda_total"]), util,
                gib(r["requested"]))]
    stage = "" if r.get("stage") is None else ", pipeline stage %d of %d (the smallest KV cache decides)" % (
        r["stage"], opts["pp"])
    lines.append("per GPU at TP=%d%s: weights %.2f GiB, activation peak %.2f GiB (%s), non-torch %.2f GiB, CUDA graphs %.2f GiB "
                 "(subtracted by vLLM >= 0.21), margin %.2f GiB -> KV cache %.2f GiB (rules of vLLM %s)"
                 % (r["tensor_parallel_size"], stage, gib(r["weights"]), gib(r["activation"]), r["activation_note"],
                    gib(r["non_torch"]), gib(r["cudagraph"]), gib(r["margin"]), gib(r["kv_available_raw"]), opts["vllm_version"]))
    if hw["cuda_total"] - CUDA_CONTEXT_BYTES < r["requested"]:
        lines.append("warning: gpu_memory_utilization %.2f asks for more than the %.2f GiB free after the CUDA context; "
                     "vLLM will refuse to start" % (util, gib(hw["cuda_total"] - CUDA_CONTEXT_BYTES)))
    return lines


def explain(shape, hw, r, opts, out, *, lines, auto_len_note):
    """The plan in readable lines, each figure with its source."""
    m, cap = shape, r["capacity"]
    kvb = kv_cache_dtype_bytes(opts["kv_cache_dtype"], shape["dtype"])
    text = ["model: %s, %d layers, %d attention / %d KV heads, head_dim %d, dtype %s%s, max length %s" % (
        m["architecture"], m["num_layers"], m["num_attention_heads"], m["num_kv_heads"], m["head_dim"], m["dtype"],
        (", quantization " + m["quantization"]) if m.get("quantization") else "", m.get("max_model_len")),
        "weights: %.2f GiB total (%s)" % (gib(m["weight_bytes"]), m["weight_source"])]
    text.extend(lines)
    text.append("KV cache per token: %d B%s = %d layers x %s (kv_cache_dtype %s)" % (
        cap["kv_bytes_per_token"], " per GPU" if hw["device"] == "cuda" else "", len(r["kv_shape"]["layer_types"]),
        _kv_line(m, r["tensor_parallel_size"], kvb), opts["kv_cache_dtype"]))
    if m.get("sliding_window"):
        text.append("sliding window %d on %d of %d layers (vLLM keeps window - 1 + max_num_batched_tokens tokens per request "
                    "in those layers)" % (m["sliding_window"], m["layer_types"].count("sliding"), m["num_layers"]))
    if hw["device"] == "cpu":
        text.append("CPU: KV cache = VLLM_CPU_KVCACHE_SPACE %d GiB (vllm/platforms/cpu.py); the %.2f GiB of weights live in RAM "
                    "beside it" % (hw["kv_cache_space"] // GiB, gib(m["weight_bytes"])))
    else:
        text.extend(_gpu_lines(hw, r, opts))
    if r["kv_available_raw"] > 0:
        text.append("KV capacity: %d blocks of %d tokens = %s tokens (vLLM logs 'KV cache size: %s tokens'%s); max concurrency "
                    "at %d tokens: %.2fx" % (cap["num_blocks"], opts["block_size"], "{:,}".format(cap["tokens"]),
                                             "{:,}".format(cap["tokens"]), "" if cap["exact"] else
                                             ", estimate for sliding-window grouping", r["max_model_len"], cap["concurrency"]))
    else:
        text.append("KV capacity: none (vLLM stops with 'No available memory for the cache blocks')")
    if auto_len_note:
        text.append(auto_len_note)
    if out["fits"]:
        text.append("verdict: fits; vLLM arguments: %s" % ", ".join("%s=%s" % kv for kv in sorted(out["vllm_args"].items())))
    else:
        text.append("verdict: does not fit: " + out["reason"])
        text.extend("fix: " + s for s in out["suggestions"])
    return text


def _cpu_diagnosis(shape, hw, candidates, target, opts, *, evaluate):
    kvb = kv_cache_dtype_bytes(opts["kv_cache_dtype"], shape["dtype"])
    r = evaluate(shape, hw, candidates[0], target, opts)
    need = r["capacity"]["bytes_per_block"] * r["capacity"]["blocks_per_request"] * opts["min_concurrency"]
    reason = ("%s request(s) of %d tokens need %.2f GiB of KV cache; VLLM_CPU_KVCACHE_SPACE gives %d GiB"
              % (fmt_num(opts["min_concurrency"]), target, gib(need), hw["kv_cache_space"] // GiB))
    best = largest_model_len(shape, hw["kv_cache_space"], 1, kvb, block_size=opts["block_size"],
                             max_num_batched_tokens=opts["max_num_batched_tokens"], upper=target,
                             min_concurrency=opts["min_concurrency"])
    return reason, ["max_model_len %d fits" % round_len(best, opts["block_size"]),
                    "cpu_kvcache_space %d GiB fits max_model_len %d" % (int(-(-need // GiB)), target)]


def _gpu_reason(shape, last, target, opts, hw):
    kvb = kv_cache_dtype_bytes(opts["kv_cache_dtype"], shape["dtype"])
    if last["kv_available_raw"] <= 0:
        left = last["requested"] - last["activation"] - last["non_torch"] - last["cudagraph"] - last["margin"]
        return ("weights need %.2f GiB per GPU at TP=%d but only %.2f GiB of the %.2f GiB budget (%.2f GiB x %.2f) remain after "
                "activation %.2f GiB and overheads %.2f GiB: no memory left for the KV cache"
                % (gib(last["weights"]), last["tensor_parallel_size"], gib(left), gib(last["requested"]), gib(hw["cuda_total"]),
                   opts["gpu_memory_utilization"], gib(last["activation"]),
                   gib(last["non_torch"] + last["cudagraph"] + last["margin"]))), []
    need = last["capacity"]["bytes_per_block"] * last["capacity"]["blocks_per_request"] * opts["min_concurrency"]
    reason = ("%s request(s) of max_model_len %d need %.2f GiB of KV cache per GPU; %.2f GiB remain at TP=%d after %.2f GiB of "
              "weights" % (fmt_num(opts["min_concurrency"]), target, gib(need), gib(last["kv_cache"]),
                           last["tensor_parallel_size"], gib(last["weights"])))
    best = largest_model_len(last["kv_shape"], last["kv_cache"], last["tensor_parallel_size"], kvb, block_size=opts["block_size"],
                             max_num_batched_tokens=opts["max_num_batched_tokens"], upper=target,
                             min_concurrency=opts["min_concurrency"])
    fixes = ["max_model_len %d fits at TP=%d" % (round_len(best, opts["block_size"]) or best, last["tensor_parallel_size"])] \
        if best > 0 else []
    return reason, fixes


def _smaller_footprints(shape, hw, candidates, target, opts, *, evaluate):
    """Quantized weights (fp8 on the fly, then AWQ), then an fp8 KV cache."""
    out = []
    current = shape.get("quantization")
    for q in ("fp8", "awq"):
        if current in (q, "awq", "gptq", "bitsandbytes", "mxfp4", "nvfp4") or str(current).startswith("gguf"):
            continue
        qshape = dict(shape)
        try:
            qshape["weight_bytes"], _dummy = estimate_weight_bytes(shape, q)
        except ModelConfigError:
            continue
        tp = next((t for t in candidates if evaluate(qshape, hw, t, target, opts)["fits"]), None)
        if tp:
            how = "vLLM quantizes on the fly: --quantization fp8" if q == "fp8" else "needs an AWQ checkpoint of this model"
            out.append("quantization %s (weights %.2f GiB) fits at TP=%d; %s" % (q, gib(qshape["weight_bytes"]), tp, how))
            break
    if opts["kv_cache_dtype"] == "auto" and kv_cache_dtype_bytes("auto", shape["dtype"]) > 1:
        o2 = dict(opts, kv_cache_dtype="fp8")
        tp = next((t for t in candidates if evaluate(shape, hw, t, target, o2)["fits"]), None)
        if tp:
            out.append("kv_cache_dtype fp8 (half the KV bytes per token) fits at TP=%d" % tp)
    return out


def diagnose(shape, hw, candidates, target, opts, *, evaluate):
    """Reason for a refusal and what would fit instead."""
    if hw["device"] == "cpu":
        return _cpu_diagnosis(shape, hw, candidates, target, opts, evaluate=evaluate)
    last = evaluate(shape, hw, candidates[-1], target, opts)
    reason, suggestions = _gpu_reason(shape, last, target, opts, hw)
    hypothetical = dict(hw, count=64)
    for tp in (2, 4, 8, 16, 32, 64):
        if tp <= candidates[-1] or not valid_tp(shape, tp):
            continue
        if evaluate(shape, hypothetical, tp, target, opts)["fits"]:
            suggestions.append("tensor_parallel_size %d (%d GPUs of %.0f GiB) fits max_model_len %d"
                               % (tp, tp, gib(hw["memory"]), target))
            break
    suggestions.extend(_smaller_footprints(shape, hw, candidates, target, opts, evaluate=evaluate))
    if not suggestions:
        suggestions.append("no layout of these GPUs fits this model; use larger GPUs")
    return reason, suggestions
