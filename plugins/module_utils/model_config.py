# Copyright: contributors to llmops.inference
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Describe a model's shape for sizing: layers, attention heads, KV layout, weights.

Sources, best first:
- a Hugging Face model directory: ``config.json`` plus exact weight bytes from
  the safetensors headers (``safetensors_header``);
- a GGUF file: its metadata and tensor infos (``gguf_metadata``);
- a ``config.json``-shaped dict with ``weight_bytes`` or ``parameters`` and a
  quantization, for models that are not on this machine (the docs table).

The result is a plain dict (``ModelShape``), see ``normalize_hf_config``.
Standard library only.
"""

from __future__ import annotations


import json
import os

from ansible_collections.llmops.inference.plugins.module_utils.gguf_metadata import FILE_TYPES, GGUFArray, read_gguf
from ansible_collections.llmops.inference.plugins.module_utils.safetensors_header import FLOAT_DTYPES, checkpoint_weights

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float8": 1}
_DTYPE_ALIASES = {
    "float": "float32", "fp32": "float32", "f32": "float32",
    "half": "float16", "fp16": "float16", "f16": "float16",
    "bf16": "bfloat16",
}

# Effective bits per weight of quantized linear layers, for plans made from a
# parameter count (with files, the exact bytes are read instead).
# - awq/gptq: 4-bit weights + one fp16 scale and one packed 4-bit zero point
#   per group of 128 input channels: 4 + (16 + 4) / 128 = 4.16 bits.
# - fp8: 8 bits + per-channel/per-tensor scales (negligible).
# - bitsandbytes (nf4): 4 bits + one fp32 absmax per 64 weights = 4.5 bits
#   (double quantization lowers it to ~4.13; 4.5 is the conservative figure).
# - mxfp4 (gpt-oss): 4 bits + one 8-bit e8m0 scale per 32 = 4.25 bits.
# Embeddings, lm_head and norms stay in the model dtype for these methods.
LINEAR_QUANT_BITS = {
    "awq": 4 + 20.0 / 128,
    "gptq": 4 + 20.0 / 128,
    "fp8": 8.0,
    "bitsandbytes": 4.5,
    "bitsandbytes-8bit": 8.0 + 32.0 / 4096,
    "mxfp4": 4.25,
    "nvfp4": 4.5,
}
# GGUF quantizes every tensor (embeddings too) with a mix of block types.
# Average bits per weight over the whole model, from the file sizes that
# llama.cpp's tools/quantize lists for Llama-3-8B (8.03e9 parameters), e.g.
# Q4_K_M 4.58 GiB -> 4.58 * 2**30 * 8 / 8.03e9 = 4.90 bits.
GGUF_BITS = {
    "Q2_K": 3.17, "Q3_K_S": 3.66, "Q3_K_M": 4.00, "Q3_K_L": 4.30,
    "Q4_0": 4.68, "Q4_1": 5.12, "Q4_K_S": 4.67, "Q4_K_M": 4.90,
    "Q5_0": 5.57, "Q5_1": 6.02, "Q5_K_S": 5.57, "Q5_K_M": 5.70,
    "Q6_K": 6.57, "Q8_0": 8.50, "F16": 16.0, "BF16": 16.0,
}
QUANTIZATIONS = sorted(["none"] + list(LINEAR_QUANT_BITS) + ["gguf:" + k.lower() for k in GGUF_BITS])


class ModelConfigError(ValueError):
    pass


def _first(cfg, keys, default=None):
    for k in keys:
        v = cfg.get(k)
        if v is not None:
            return v
    return default


def normalize_dtype(value, default="bfloat16"):
    if value is None or value == "auto":
        return default
    v = str(value).lower().replace("torch.", "")
    v = _DTYPE_ALIASES.get(v, v)
    if v not in DTYPE_BYTES or v == "float8":
        raise ModelConfigError("unsupported model dtype %r (float32, float16, bfloat16)" % value)
    return v


def normalize_quantization(value):
    """Map user/config quantization names to a canonical key, or None for unquantized."""
    if value is None:
        return None
    v = str(value).strip().lower().replace("_", "-")
    if v in ("", "none", "auto", "false"):
        return None
    if v in ("awq", "awq-marlin"):
        return "awq"
    if v in ("gptq", "gptq-marlin"):
        return "gptq"
    if v in ("fp8", "fbgemm-fp8", "fp8-dynamic", "ptpc-fp8"):
        return "fp8"
    if v in ("bitsandbytes", "bnb", "bnb-4bit", "nf4", "bitsandbytes-4bit"):
        return "bitsandbytes"
    if v in ("bitsandbytes-8bit", "bnb-8bit", "int8"):
        return "bitsandbytes-8bit"
    if v in ("mxfp4", "nvfp4"):
        return v
    if v.startswith("gguf"):
        t = v[4:].lstrip(":- ").upper().replace("-", "_")
        if t not in GGUF_BITS:
            raise ModelConfigError("unknown GGUF type %r (known: %s)" % (value, ", ".join(sorted(GGUF_BITS))))
        return "gguf:" + t
    if v.upper().replace("-", "_") in GGUF_BITS:
        return "gguf:" + v.upper().replace("-", "_")
    raise ModelConfigError("unknown quantization %r (known: %s)" % (value, ", ".join(QUANTIZATIONS)))


def quantization_from_config(qc):
    """Canonical quantization key from a config.json ``quantization_config``."""
    if not isinstance(qc, dict):
        return None
    method = str(qc.get("quant_method") or "").lower()
    if method == "bitsandbytes":
        return "bitsandbytes-8bit" if qc.get("load_in_8bit") else "bitsandbytes"
    if method == "compressed-tensors":
        for group in (qc.get("config_groups") or {}).values():
            w = (group or {}).get("weights") or {}
            bits = w.get("num_bits")
            if bits == 8 and w.get("type") == "float":
                return "fp8"
            if bits == 4 and w.get("type") == "float":
                return "nvfp4"
            if bits == 4:
                return "gptq"
        return None
    if method == "modelopt":
        algo = str(qc.get("quant_algo") or "").upper()
        return "nvfp4" if "FP4" in algo else "fp8"
    if not method:
        return None
    try:
        return normalize_quantization(method)
    except ModelConfigError:
        return method  # an unknown method: reported, weights must come from files


def _derived_max_len(cfg):
    """Mirror vLLM's derived max_model_len: max_position_embeddings, scaled by rope scaling.

    vLLM (config/model.py _get_and_verify_max_len) multiplies by the rope
    scaling factor except for su/longrope/llama3 (whose max_position_embeddings
    already is the long length); yarn scales original_max_position_embeddings.
    """
    base = _first(cfg, ["max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "max_sequence_length"])
    rope = cfg.get("rope_scaling") or cfg.get("rope_parameters") or {}
    if base is None:
        return None
    base = int(base)
    if isinstance(rope, dict):
        rtype = rope.get("rope_type") or rope.get("type")
        factor = rope.get("factor")
        if factor and rtype not in ("su", "longrope", "llama3", "default", "mrope", None):
            if rtype == "yarn" and rope.get("original_max_position_embeddings"):
                base = int(rope["original_max_position_embeddings"])
            base = int(base * float(factor))
    return base


def _layer_types(cfg, model_type, num_layers):
    """Per-layer 'full' or 'sliding', and the window (None when all layers are full)."""
    window = cfg.get("sliding_window")
    explicit = cfg.get("layer_types")
    if isinstance(explicit, list) and explicit:
        out = []
        for t in explicit[:num_layers]:
            if t in ("full_attention", "attention", "global"):
                out.append("full")
            elif t in ("sliding_attention", "local", "sliding_window"):
                out.append("sliding")
            else:
                raise ModelConfigError("layer type %r is not supported by the planner (attention models only)" % t)
        if len(out) != num_layers:
            raise ModelConfigError("layer_types lists %d layers, num_hidden_layers is %d" % (len(out), num_layers))
        return out, (int(window) if window and "sliding" in out else None)
    if not window:
        return ["full"] * num_layers, None
    window = int(window)
    if model_type in ("qwen2", "qwen2_moe", "qwen3", "qwen3_moe"):
        # HF Qwen2: a layer slides only with use_sliding_window and idx >= max_window_layers.
        if not cfg.get("use_sliding_window"):
            return ["full"] * num_layers, None
        mwl = int(cfg.get("max_window_layers") or 0)
        types = ["sliding" if i >= mwl else "full" for i in range(num_layers)]
    elif model_type == "gemma2":
        types = ["sliding" if i % 2 == 0 else "full" for i in range(num_layers)]
    elif model_type in ("gemma3", "gemma3_text"):
        pattern = int(cfg.get("sliding_window_pattern") or 6)
        types = ["full" if (i + 1) % pattern == 0 else "sliding" for i in range(num_layers)]
    else:
        # Mistral v0.1, Phi-3 and Llama-family configs with a window: every layer.
        types = ["sliding"] * num_layers
    return types, (window if "sliding" in types else None)


def normalize_hf_config(cfg, source="config.json"):
    """Turn a config.json dict into a ModelShape dict.

    ModelShape keys: source, architecture, num_layers, hidden_size,
    intermediate_size, num_attention_heads, num_kv_heads, head_dim,
    vocab_size, tie_word_embeddings, max_model_len, mla (None or
    {kv_lora_rank, qk_rope_head_dim, ...}), layer_types, sliding_window, moe
    (None or {num_experts, experts_per_token, moe_intermediate_size,
    shared_intermediate_size, dense_layers}), dtype, quantization,
    attention_bias, weight_bytes (None here), weight_source, parameters.
    """
    if not isinstance(cfg, dict):
        raise ModelConfigError("model config must be a dict (the content of config.json)")
    top = cfg
    if isinstance(cfg.get("text_config"), dict) and "num_hidden_layers" not in cfg:
        merged = dict(cfg)
        merged.update(cfg["text_config"])
        cfg = merged
    model_type = str(cfg.get("model_type") or "unknown")
    num_layers = _first(cfg, ["num_hidden_layers", "n_layer", "num_layers", "n_layers"])
    hidden = _first(cfg, ["hidden_size", "n_embd", "d_model"])
    heads = _first(cfg, ["num_attention_heads", "n_head", "num_heads"])
    missing = [n for n, v in (("num_hidden_layers", num_layers), ("hidden_size", hidden), ("num_attention_heads", heads)) if v is None]
    if missing:
        raise ModelConfigError("%s: model config lacks %s" % (source, ", ".join(missing)))
    num_layers, hidden, heads = int(num_layers), int(hidden), int(heads)
    kv_heads = int(_first(cfg, ["num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num"], heads))
    head_dim = cfg.get("head_dim")
    head_dim = int(head_dim) if head_dim else hidden // heads
    mla = None
    if cfg.get("kv_lora_rank"):
        mla = {
            "kv_lora_rank": int(cfg["kv_lora_rank"]),
            "qk_rope_head_dim": int(cfg.get("qk_rope_head_dim") or 64),
            "qk_nope_head_dim": int(cfg.get("qk_nope_head_dim") or 128),
            "v_head_dim": int(cfg.get("v_head_dim") or 128),
            "q_lora_rank": int(cfg["q_lora_rank"]) if cfg.get("q_lora_rank") else None,
        }
    moe = None
    n_experts = _first(cfg, ["num_local_experts", "n_routed_experts", "num_experts"])
    if n_experts and int(n_experts) > 1:
        moe_inter = _first(cfg, ["moe_intermediate_size", "expert_intermediate_size"], cfg.get("intermediate_size"))
        shared = 0
        if cfg.get("n_shared_experts"):
            shared = int(cfg["n_shared_experts"]) * int(moe_inter)
        elif cfg.get("shared_expert_intermediate_size"):
            shared = int(cfg["shared_expert_intermediate_size"])
        moe = {
            "num_experts": int(n_experts),
            "experts_per_token": int(_first(cfg, ["num_experts_per_tok", "num_experts_per_token", "moe_topk"], 2)),
            "moe_intermediate_size": int(moe_inter),
            "shared_intermediate_size": shared,
            "dense_layers": int(cfg.get("first_k_dense_replace") or 0),
        }
    layer_types, window = _layer_types(cfg, model_type, num_layers)
    qc = top.get("quantization_config") or cfg.get("quantization_config")
    return {
        "source": source,
        "architecture": model_type,
        "num_layers": num_layers,
        "hidden_size": hidden,
        "intermediate_size": int(_first(cfg, ["intermediate_size", "n_inner", "ffn_dim"], 4 * hidden)),
        "num_attention_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim,
        "vocab_size": int(cfg.get("vocab_size") or 32000),
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", top.get("tie_word_embeddings", False))),
        "max_model_len": _derived_max_len(cfg),
        "mla": mla,
        "layer_types": layer_types,
        "sliding_window": window,
        "moe": moe,
        "dtype": normalize_dtype(_first(cfg, ["torch_dtype", "dtype"]), "bfloat16"),
        "quantization": quantization_from_config(qc),
        "attention_bias": bool(cfg.get("attention_bias") or model_type.startswith("qwen2")),
        "weight_bytes": None,
        "weight_source": None,
        "parameters": None,
    }


def count_parameters(shape):
    """Parameter count from the shape: ``{"total", "linear", "other"}``.

    ``linear`` are the transformer-block projection weights (what AWQ, GPTQ,
    FP8 and bitsandbytes quantize); ``other`` are embeddings, lm_head, norms,
    biases and MoE routers (kept in the model dtype).
    """
    h = shape["hidden_size"]
    heads, kv, hd = shape["num_attention_heads"], shape["num_kv_heads"], shape["head_dim"]
    mla = shape.get("mla")
    if mla:
        qk = mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"]
        if mla.get("q_lora_rank"):
            q = h * mla["q_lora_rank"] + mla["q_lora_rank"] * heads * qk
        else:
            q = h * heads * qk
        attn = q + h * (mla["kv_lora_rank"] + mla["qk_rope_head_dim"]) \
            + mla["kv_lora_rank"] * heads * (mla["qk_nope_head_dim"] + mla["v_head_dim"]) + heads * mla["v_head_dim"] * h
        attn_other = (mla.get("q_lora_rank") or 0) + mla["kv_lora_rank"]
    else:
        attn = h * heads * hd + 2 * h * kv * hd + heads * hd * h
        attn_other = (heads + 2 * kv) * hd if shape.get("attention_bias") else 0
    dense_mlp = 3 * h * shape["intermediate_size"]
    moe = shape.get("moe")
    linear = 0
    other = 0
    for i in range(shape["num_layers"]):
        linear += attn
        other += attn_other + 2 * h
        if moe and i >= moe["dense_layers"]:
            linear += moe["num_experts"] * 3 * h * moe["moe_intermediate_size"] + 3 * h * moe["shared_intermediate_size"]
            other += h * moe["num_experts"]
        else:
            linear += dense_mlp
    emb = shape["vocab_size"] * h
    other += emb + h + (0 if shape.get("tie_word_embeddings") else emb)
    return {"total": linear + other, "linear": linear, "other": other}


def estimate_weight_bytes(shape, quantization=None, dtype=None):
    """Weight bytes from the parameter count; returns (bytes, explanation)."""
    dtype = dtype or shape.get("dtype") or "bfloat16"
    if dtype == "float32":
        dtype = "bfloat16"
    dbytes = DTYPE_BYTES[dtype]
    params = count_parameters(shape)
    if shape.get("parameters"):
        # Scale the shape-derived split to the given total.
        scale = float(shape["parameters"]) / params["total"]
        params = {k: int(v * scale) for k, v in params.items()}
    q = quantization
    if q is None:
        b = params["total"] * dbytes
        return b, "%.2fB parameters x %d bytes (%s)" % (params["total"] / 1e9, dbytes, dtype)
    if q.startswith("gguf:"):
        bits = GGUF_BITS[q[5:]]
        b = int(params["total"] * bits / 8)
        return b, "%.2fB parameters x %.2f bits (GGUF %s average, llama.cpp quantize table)" % (params["total"] / 1e9, bits, q[5:])
    if q not in LINEAR_QUANT_BITS:
        raise ModelConfigError("cannot estimate weights for quantization %r without files; give weight_bytes" % q)
    bits = LINEAR_QUANT_BITS[q]
    b = int(params["linear"] * bits / 8) + params["other"] * dbytes
    return b, "%.2fB linear parameters x %.2f bits (%s) + %.2fB embedding/norm parameters x %d bytes" % (
        params["linear"] / 1e9, bits, q, params["other"] / 1e9, dbytes)


def load_model_dir(path):
    """ModelShape from a Hugging Face directory with exact safetensors weight bytes."""
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise ModelConfigError("%s has no config.json" % path)
    with open(cfg_path) as f:
        try:
            cfg = json.load(f)
        except ValueError as exc:
            raise ModelConfigError("%s is not valid JSON: %s" % (cfg_path, exc)) from exc
    shape = normalize_hf_config(cfg, source=cfg_path)
    weights = checkpoint_weights(path)
    if weights:
        nbytes = weights["bytes"]
        note = weights["source"]
        by_dtype = weights["by_dtype"]
        # vLLM loads unquantized float tensors in the serving dtype (auto: the
        # config dtype; float32 checkpoints are served in bfloat16).
        serve = shape["dtype"] if shape["dtype"] != "float32" else "bfloat16"
        f32, f64 = by_dtype.get("F32", 0), by_dtype.get("F64", 0)
        if (f32 or f64) and shape["quantization"] is None:
            size = DTYPE_BYTES[serve]
            nbytes = nbytes - f32 - f64 + f32 * size // 4 + f64 * size // 8
            note += "; F32/F64 tensors counted at %s size" % serve
        shape["weight_bytes"] = nbytes
        shape["weight_source"] = note
        shape["weight_dtypes"] = {k: v for k, v in by_dtype.items() if k in FLOAT_DTYPES or v}
    else:
        ggufs = sorted(n for n in os.listdir(path) if n.endswith(".gguf"))
        if len(ggufs) == 1:
            g = load_gguf(os.path.join(path, ggufs[0]))
            # config.json describes the architecture better; GGUF gives the bytes.
            shape["weight_bytes"] = g["weight_bytes"]
            shape["weight_source"] = g["weight_source"]
            shape["quantization"] = g["quantization"]
            shape["parameters"] = g["parameters"]
    return shape


def _gguf_get(md, arch, key, default=None):
    v = md.get("%s.%s" % (arch, key))
    return default if v is None else v


def _scalar(v, pick=max):
    if isinstance(v, list):
        return pick(v) if v else None
    return v


def load_gguf(path):
    """ModelShape from a GGUF file (header only)."""
    g = read_gguf(path)
    md = g["metadata"]
    arch = md.get("general.architecture")
    if not arch:
        raise ModelConfigError("%s: GGUF has no general.architecture" % path)
    n_layers = _gguf_get(md, arch, "block_count")
    hidden = _gguf_get(md, arch, "embedding_length")
    heads = _scalar(_gguf_get(md, arch, "attention.head_count"))
    if n_layers is None or hidden is None or not heads:
        raise ModelConfigError("%s: GGUF metadata lacks %s.block_count/embedding_length/attention.head_count" % (path, arch))
    kv_raw = _gguf_get(md, arch, "attention.head_count_kv", heads)
    # Some models (OpenELM) list kv heads per layer; size for the largest.
    kv = _scalar(kv_raw)
    head_dim = _gguf_get(md, arch, "attention.key_length") or hidden // heads
    vocab = _gguf_get(md, arch, "vocab_size")
    if vocab is None:
        toks = md.get("tokenizer.ggml.tokens")
        vocab = len(toks) if isinstance(toks, (list, GGUFArray)) else 32000
    cfg = {
        "model_type": {"gemma3": "gemma3", "gemma2": "gemma2", "qwen2": "qwen2", "qwen3": "qwen3", "deepseek2": "deepseek_v2"}.get(arch, arch),
        "num_hidden_layers": int(n_layers),
        "hidden_size": int(hidden),
        "num_attention_heads": int(heads),
        "num_key_value_heads": int(kv),
        "head_dim": int(head_dim),
        "intermediate_size": int(_scalar(_gguf_get(md, arch, "feed_forward_length", 4 * hidden))),
        "vocab_size": int(vocab),
        "max_position_embeddings": _gguf_get(md, arch, "context_length"),
        "tie_word_embeddings": not any(t["name"] == "output.weight" for t in g["tensors"]),
    }
    window = _gguf_get(md, arch, "attention.sliding_window")
    if window:
        cfg["sliding_window"] = int(window)
        if arch in ("qwen2", "qwen3"):
            cfg["use_sliding_window"] = True
    kv_lora = _gguf_get(md, arch, "attention.kv_lora_rank")
    if kv_lora:
        cfg["kv_lora_rank"] = int(kv_lora)
        cfg["qk_rope_head_dim"] = int(_gguf_get(md, arch, "rope.dimension_count", 64))
        cfg["q_lora_rank"] = _gguf_get(md, arch, "attention.q_lora_rank")
    experts = _gguf_get(md, arch, "expert_count")
    if experts:
        cfg["num_local_experts"] = int(experts)
        cfg["num_experts_per_tok"] = int(_gguf_get(md, arch, "expert_used_count", 2))
        cfg["moe_intermediate_size"] = int(_gguf_get(md, arch, "expert_feed_forward_length", cfg["intermediate_size"]))
    shape = normalize_hf_config(cfg, source=path)
    ftype = md.get("general.file_type")
    shape["quantization"] = "gguf:" + FILE_TYPES.get(ftype, "type%s" % ftype)
    shape["dtype"] = "bfloat16" if ftype == 32 else "float16"
    shape["weight_bytes"] = g["tensor_bytes"]
    shape["weight_source"] = "GGUF tensor infos (%d tensors; %s)" % (
        len(g["tensors"]), ", ".join("%s %.1f MiB" % (k, v / 2.0 ** 20) for k, v in sorted(g["bytes_by_type"].items())))
    n = 0
    for t in g["tensors"]:
        e = 1
        for d in t["shape"]:
            e *= d
        n += e
    shape["parameters"] = n
    return shape


def load_model(path):
    """ModelShape from a model directory or a .gguf file."""
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "config.json")):
            return load_model_dir(path)
        ggufs = sorted(n for n in os.listdir(path) if n.endswith(".gguf"))
        if len(ggufs) == 1:
            return load_gguf(os.path.join(path, ggufs[0]))
        raise ModelConfigError("%s has neither config.json nor exactly one .gguf file" % path)
    if os.path.isfile(path):
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic == b"GGUF":
            return load_gguf(path)
        if path.endswith(".json"):
            return load_model_dir(os.path.dirname(path) or ".")
        raise ModelConfigError("%s is not a GGUF file or a model directory" % path)
    raise ModelConfigError("model path %s does not exist" % path)
