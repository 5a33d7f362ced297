"""Sizing math of serving_plan: KV layouts, capacity, TP choice, verdicts."""

from __future__ import annotations

import json
import struct

import pytest

from ansible_collections.llmops.inference.plugins.module_utils import model_config as mc
from ansible_collections.llmops.inference.plugins.module_utils import safetensors_header as st
from ansible_collections.llmops.inference.plugins.module_utils import serving_plan as sp

GiB = 1 << 30

SMOLLM2 = {
    "model_type": "llama", "num_hidden_layers": 30, "hidden_size": 576, "intermediate_size": 1536,
    "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152,
    "max_position_embeddings": 8192, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
}
LLAMA3_8B = {
    "model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 14336,
    "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}
LLAMA2_13B = {
    "model_type": "llama", "num_hidden_layers": 40, "hidden_size": 5120, "intermediate_size": 13824,
    "num_attention_heads": 40, "num_key_value_heads": 40, "vocab_size": 32000, "max_position_embeddings": 4096,
    "tie_word_embeddings": False, "torch_dtype": "float16",
}
DEEPSEEK_V2_LITE = {
    "model_type": "deepseek_v2", "num_hidden_layers": 27, "hidden_size": 2048, "intermediate_size": 10944,
    "moe_intermediate_size": 1408, "n_routed_experts": 64, "n_shared_experts": 2, "num_experts_per_tok": 6,
    "first_k_dense_replace": 1, "num_attention_heads": 16, "num_key_value_heads": 16, "kv_lora_rank": 512,
    "q_lora_rank": None, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "vocab_size": 102400,
    "max_position_embeddings": 163840, "torch_dtype": "bfloat16",
    "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096},
}


def shape(cfg, **kw):
    return sp.resolve_model(model_config=cfg, **kw)


# --- the engine's own figures -------------------------------------------------

def test_smollm2_cpu_matches_vllm_log():
    # DESIGN.md: vLLM-CPU logs 46,592 tokens with VLLM_CPU_KVCACHE_SPACE=1.
    r = sp.make_plan(shape(SMOLLM2, weight_bytes=269060000), device="cpu", cpu_kvcache_space=1)
    assert r["fits"]
    assert r["kv_bytes_per_token"] == 2 * 30 * 3 * 64 * 2
    assert r["kv_cache_tokens"] == 46592
    assert r["block_size"] == 128
    assert r["vllm_env"] == {"VLLM_CPU_KVCACHE_SPACE": "1"}
    assert "gpu_memory_utilization" not in r["vllm_args"]


def test_length_not_a_block_multiple_uses_vllms_float_formula():
    cfg = dict(SMOLLM2, num_hidden_layers=6, hidden_size=512, num_attention_heads=4, num_key_value_heads=2,
               head_dim=None, max_position_embeddings=4000, model_type="qwen2")
    r = sp.make_plan(shape(cfg, weight_bytes=10 ** 8), device="cpu", cpu_kvcache_space=1)
    # 2**30 // (6 layers x 128 tokens x 2 x 2 heads x 128 x 2 B) = 1365 blocks; 32 blocks per 4000-token request.
    assert r["kv_cache_blocks"] == 1365
    assert r["kv_cache_tokens"] == int(1365 / 32 * 4000) == 170625


# --- KV layouts ----------------------------------------------------------------

def test_gqa_heads_split_then_replicate_across_tp():
    s = shape(LLAMA3_8B)
    assert sp.kv_bytes_per_token_layer(s, 1, 2) == 2 * 8 * 128 * 2
    assert sp.kv_bytes_per_token_layer(s, 2, 2) == 2 * 4 * 128 * 2
    assert sp.kv_bytes_per_token_layer(s, 16, 2) == 2 * 1 * 128 * 2  # vLLM replicates when tp > kv heads


def test_deepseek_mla_latent_cache():
    s = shape(DEEPSEEK_V2_LITE, parameters=15.7e9)
    assert s["mla"]["kv_lora_rank"] == 512
    assert s["max_model_len"] == 4096 * 40  # yarn: original x factor
    # One latent of 512 + 64 per token and layer, replicated on every TP rank.
    assert sp.kv_bytes_per_token_layer(s, 1, 2) == 576 * 2
    assert sp.kv_bytes_per_token_layer(s, 8, 2) == 576 * 2
    r = sp.make_plan(s, device="cpu", cpu_kvcache_space=4, max_model_len=8192)
    assert r["block_size"] == 16  # CPU MLA kernel
    assert r["kv_bytes_per_token"] == 27 * 576 * 2


def test_kv_cache_dtype_fp8_halves_the_cache():
    s = shape(LLAMA3_8B)
    auto = sp.make_plan(s, gpu_memory="80GiB", max_model_len=8192, max_num_seqs=256)
    fp8 = sp.make_plan(s, gpu_memory="80GiB", max_model_len=8192, max_num_seqs=256, kv_cache_dtype="fp8")
    assert fp8["kv_bytes_per_token"] * 2 == auto["kv_bytes_per_token"]
    assert fp8["kv_cache_tokens"] == pytest.approx(2 * auto["kv_cache_tokens"], rel=0.001)
    assert fp8["vllm_args"]["kv_cache_dtype"] == "fp8"
    with pytest.raises(sp.PlanError):
        sp.make_plan(s, gpu_memory="80GiB", kv_cache_dtype="int3")


def test_sliding_window_layouts():
    mistral = shape({"model_type": "mistral", "num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 14336,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
                     "max_position_embeddings": 32768, "sliding_window": 4096})
    assert mistral["layer_types"] == ["sliding"] * 32
    r = sp.make_plan(mistral, gpu_memory="24GiB", max_model_len=32768)
    # A request holds window - 1 + max_num_batched_tokens tokens, not max_model_len.
    assert r["kv_capacity_exact"] is False
    assert r["max_concurrency"] > r["kv_cache_tokens"] / 32768 - 0.01
    gemma2 = mc.normalize_hf_config({"model_type": "gemma2", "num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4,
                                     "head_dim": 256, "sliding_window": 4096})
    assert gemma2["layer_types"] == ["sliding", "full", "sliding", "full"]
    gemma3 = mc.normalize_hf_config({"model_type": "gemma3", "text_config": {"model_type": "gemma3_text", "num_hidden_layers": 12,
                                     "hidden_size": 256, "num_attention_heads": 4, "sliding_window": 1024, "sliding_window_pattern": 6}})
    assert gemma3["layer_types"].count("full") == 2 and gemma3["layer_types"][5] == "full"
    assert sp.kv_groups(gemma3) == (2, 1, 5)
    qwen = mc.normalize_hf_config({"model_type": "qwen2", "num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4,
                                   "sliding_window": 4096, "use_sliding_window": False})
    assert qwen["layer_types"] == ["full"] * 4 and qwen["sliding_window"] is None
    explicit = mc.normalize_hf_config({"model_type": "x", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2,
                                       "sliding_window": 128, "layer_types": ["sliding_attention", "full_attention"]})
    assert explicit["layer_types"] == ["sliding", "full"]
    with pytest.raises(mc.ModelConfigError, match="linear_attention"):
        mc.normalize_hf_config({"model_type": "x", "num_hidden_layers": 1, "hidden_size": 64, "num_attention_heads": 2,
                                "layer_types": ["linear_attention"]})


# --- weights ---------------------------------------------------------------------

def test_parameter_counts_of_published_models():
    assert mc.count_parameters(shape(LLAMA3_8B))["total"] == pytest.approx(8.03e9, rel=0.002)
    assert mc.count_parameters(shape(LLAMA2_13B))["total"] == pytest.approx(13.02e9, rel=0.002)
    mixtral = dict(LLAMA3_8B, model_type="mixtral", vocab_size=32000, num_local_experts=8, num_experts_per_tok=2)
    assert mc.count_parameters(shape(mixtral))["total"] == pytest.approx(46.70e9, rel=0.002)


def test_quantized_weight_estimates():
    s = shape(LLAMA3_8B)
    bf16, _dummy = mc.estimate_weight_bytes(s, None)
    awq, why = mc.estimate_weight_bytes(s, "awq")
    fp8, _dummy = mc.estimate_weight_bytes(s, "fp8")
    q4km, _dummy = mc.estimate_weight_bytes(s, "gguf:Q4_K_M")
    assert bf16 == pytest.approx(16.06e9, rel=0.002)
    # AWQ checkpoints of Llama-3-8B-Instruct are ~5.7 GB (embeddings and lm_head stay 16-bit).
    assert 5.5e9 < awq < 6.0e9 and "awq" in why
    assert 9.0e9 < fp8 < 9.2e9
    # llama.cpp's Q4_K_M of Llama-3-8B is 4.92 GB.
    assert q4km == pytest.approx(4.92e9, rel=0.01)
    assert mc.normalize_quantization("Q4_K_M") == "gguf:Q4_K_M"
    assert mc.normalize_quantization("awq_marlin") == "awq"
    with pytest.raises(mc.ModelConfigError):
        mc.normalize_quantization("q9_z")


def test_quantization_from_config_json():
    assert mc.quantization_from_config({"quant_method": "awq", "bits": 4}) == "awq"
    assert mc.quantization_from_config({"quant_method": "bitsandbytes", "load_in_4bit": True}) == "bitsandbytes"
    assert mc.quantization_from_config({"quant_method": "compressed-tensors",
                                        "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float"}}}}) == "fp8"
    assert mc.quantization_from_config(None) is None


def _write_st(path, tensors):
    header = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, (dtype, n) in tensors.items():
        size = n * st.DTYPE_BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": [n], "data_offsets": [off, off + size]}
        off += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * off)


def test_model_dir_with_shards_reads_headers_only(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(dict(SMOLLM2, torch_dtype="float32")))
    _write_st(tmp_path / "a.safetensors", {"x": ("F32", 1000), "q": ("I32", 10)})
    _write_st(tmp_path / "b.safetensors", {"y": ("BF16", 500)})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": 5040}, "weight_map": {"x": "a.safetensors", "q": "a.safetensors", "y": "b.safetensors"}}))
    s = mc.load_model(str(tmp_path))
    # float32 tensors are served in bfloat16 (half the bytes); int tensors unchanged.
    assert s["weight_bytes"] == 2000 + 40 + 1000
    assert "2 shards" in s["weight_source"]
    (tmp_path / "b.safetensors").unlink()
    s = mc.load_model(str(tmp_path))
    assert s["weight_bytes"] == 5040 and "total_size" in s["weight_source"]


def test_safetensors_errors(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(b"\x01\x00")
    with pytest.raises(st.SafetensorsError, match="too short"):
        st.read_header(str(p))
    p.write_bytes(struct.pack("<Q", 10) + b"{not json}")
    with pytest.raises(st.SafetensorsError, match="not JSON"):
        st.read_header(str(p))
    p.write_bytes(struct.pack("<Q", 1 << 40))
    with pytest.raises(st.SafetensorsError, match="implausible"):
        st.read_header(str(p))


# --- GPU plans ---------------------------------------------------------------------

def test_13b_fp16_on_24gb_is_refused_with_fixes():
    r = sp.plan(model_config=LLAMA2_13B, gpu_memory="24GiB", max_model_len=4096)
    assert r["fits"] is False
    assert "no memory left for the KV cache" in r["reason"]
    text = " | ".join(r["suggestions"])
    assert "tensor_parallel_size 2" in text
    assert "quantization fp8" in text
    assert r["vllm_args"] == {}
    assert any(line.startswith("verdict: does not fit") for line in r["explanation"])


def test_smallest_tp_that_fits_is_chosen():
    r = sp.plan(model_config=LLAMA2_13B, gpus=["24GiB"] * 4, max_model_len=4096)
    assert r["fits"] and r["tensor_parallel_size"] == 2
    assert r["vllm_args"]["tensor_parallel_size"] == 2
    assert r["memory"]["weights"] == pytest.approx(13.02e9, rel=0.01)  # 26 GB / 2


def test_gpu_facts_and_sizes():
    facts = [{"index": 0, "memory_total": 85899345920},
             {"index": 1, "memory_total_mib": 81559, "memory_reserved_mib": 480}]
    mems = sp.gpu_memory_list(facts)
    assert [m["total"] for m in mems] == [85899345920, 81559 * (1 << 20)]
    # gpu_validate's reserved memory is what CUDA does not see (measured on an H100: exactly the gap).
    assert mems[1]["cuda_total"] == 85017493504
    assert mems[0]["reserved"] is None and mems[0]["cuda_total"] == 85899345920 - 512 * (1 << 20)
    assert sp.parse_size("24GB") == 24 * 10 ** 9
    assert sp.parse_size("80GiB") == 80 * GiB
    assert sp.parse_size(81559) == 81559 * (1 << 20)  # nvidia-smi MiB
    assert sp.parse_size(16 * GiB) == 16 * GiB
    with pytest.raises(sp.PlanError):
        sp.parse_size("lots")
    with pytest.raises(sp.PlanError, match="memory_total_mib"):
        sp.gpu_memory_list([{"name": "H100", "memory_total_mib": None}])
    # The shape gpu_validate returns (plugins/module_utils/nvml.py): MiB, floored.
    h100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559, "memory_free_mib": 81080}
    r = sp.plan(model_config=LLAMA3_8B, gpus=[h100], max_model_len=8192)
    assert r["fits"] and r["gpu_memory"] == 81559 * (1 << 20)


def test_llama3_8b_on_h100_matches_published_vllm_budget():
    # llm-d's H100 log (vLLM 0.11.0, Llama-3.1-8B, util 0.9, 79.18 GiB seen by CUDA): weights 14.99,
    # activation 4.76, non-torch 0.13 -> 51.38 GiB of KV cache.
    h100 = {"memory_total_mib": 81559, "memory_reserved_mib": 480}
    r = sp.plan(model_config=dict(LLAMA3_8B, max_position_embeddings=131072), gpus=[h100], vllm_version="0.11.0",
                max_model_len=16000, max_num_seqs=1024, max_num_batched_tokens=8192)
    assert r["memory"]["kv_cache"] / GiB == pytest.approx(51.38, abs=0.3)
    assert r["memory"]["activation"] / GiB == pytest.approx(4.76, abs=0.1)
    assert r["memory"]["non_torch"] / GiB == pytest.approx(0.13, abs=0.01)
    assert r["memory"]["cudagraph"] == 0  # not subtracted before vLLM 0.21
    assert r["vllm_version"] == "0.11.0"


def test_version_rules_change_the_budget():
    h100 = {"memory_total_mib": 81559, "memory_reserved_mib": 480}
    kw = {"model_config": LLAMA3_8B, "gpus": [h100], "max_model_len": 8192, "max_num_seqs": 1024, "max_num_batched_tokens": 8192}
    old = sp.plan(vllm_version="0.11.0", **kw)["memory"]
    mid = sp.plan(vllm_version="0.19.0", **kw)["memory"]
    new = sp.plan(vllm_version="0.21.0", **kw)["memory"]
    eager = sp.plan(vllm_version="0.21.0", enforce_eager=True, **kw)["memory"]
    assert old["activation"] > mid["activation"]  # sort-based top-k/top-p vs the Triton kernel
    assert mid["cudagraph"] == 0 and new["cudagraph"] > 0 and eager["cudagraph"] == 0
    native = sp.plan(vllm_version="0.21.0", sampler="pytorch", **kw)["memory"]
    assert native["activation"] > new["activation"]
    margin = sp.plan(vllm_version="0.21.0", memory_margin="1GiB", **kw)["memory"]
    assert margin["kv_cache"] == new["kv_cache"] - GiB
    with pytest.raises(sp.PlanError, match="vllm_version"):
        sp.plan(vllm_version="latest", **kw)
    with pytest.raises(sp.PlanError, match="sampler"):
        sp.plan(sampler="magic", **kw)


def test_pipeline_parallel_sizes_from_the_smallest_stage():
    kw = {"model_config": dict(LLAMA3_8B, num_hidden_layers=31), "gpus": ["24GiB"] * 2, "max_model_len": 8192}
    r = sp.plan(pipeline_parallel_size=2, tensor_parallel_size=1, **kw)
    assert r["fits"] and r["pipeline_parallel_size"] == 2 and r["vllm_args"]["pipeline_parallel_size"] == 2
    # 31 layers: stages of 15 and 16; the 16-layer stage has fewer blocks and sets the capacity.
    assert r["kv_bytes_per_token"] == 16 * 2 * 8 * 128 * 2
    with pytest.raises(sp.PlanError, match="needs 4 GPUs"):
        sp.plan(pipeline_parallel_size=2, tensor_parallel_size=2, **kw)


def test_auto_len_lowered_when_model_max_does_not_fit():
    r = sp.plan(model_config=dict(LLAMA3_8B, max_position_embeddings=131072), gpu_memory="24GiB")
    assert r["fits"]
    assert 4096 <= r["max_model_len"] < 131072
    assert r["max_concurrency"] >= 1
    assert any("lowered" in line for line in r["explanation"])
    assert r["vllm_args"]["max_num_batched_tokens"] >= r["vllm_args"]["max_num_seqs"]


# --- max_num_seqs / max_num_batched_tokens (issue #14) ---------------------------------

LAB = {"model_config": SMOLLM2, "weight_bytes": 269060000, "device": "cpu", "cpu_kvcache_space": 1, "max_model_len": 2048}


def _notes(r):
    return [line for line in r["explanation"] if line.startswith(("note: max_num_seqs", "warning: max_num_seqs"))]


def test_max_num_seqs_stays_vllms_default_without_avg_seq_len():
    # The lab: 46,592 tokens of KV cache hold 22 requests of 2048 tokens. The old cap
    # (tokens // min(max_model_len, 2048), rounded to 8) gave 16; vLLM-CPU's default is 128.
    r = sp.plan(**LAB)
    assert r["fits"] and r["kv_cache_tokens"] == 46592
    assert r["vllm_args"]["max_num_seqs"] == 128
    assert r["vllm_args"]["max_num_batched_tokens"] == 2048
    notes = _notes(r)
    assert len(notes) == 1
    assert notes[0].startswith("note: max_num_seqs 128 is vLLM's default, not capped by the KV cache: it holds 22 sequences "
                               "of max_model_len 2048 tokens at once")
    assert "queues or preempts" in notes[0] and "avg_seq_len" in notes[0]
    assert not any(line.startswith("warning:") for line in r["explanation"])
    # GPUs: 256 below 70 GiB, 1024 from 70 GiB, however few full-length requests the cache holds.
    small = sp.plan(model_config=LLAMA3_8B, gpu_memory="24GiB", max_model_len=8192)
    assert small["max_concurrency"] == pytest.approx(5.58, abs=0.01)
    assert (small["vllm_args"]["max_num_seqs"], small["vllm_args"]["max_num_batched_tokens"]) == (256, 2048)
    assert "it holds 5 sequences of max_model_len 8192 tokens" in _notes(small)[0]
    big = sp.plan(model_config=LLAMA3_8B, gpu_memory="80GiB", max_model_len=8192)
    assert (big["vllm_args"]["max_num_seqs"], big["vllm_args"]["max_num_batched_tokens"]) == (1024, 8192)


def test_avg_seq_len_caps_max_num_seqs():
    # 46,592 // 512 = 91 -> 88 (a multiple of 8); // 2048 = 22 -> 16 (the old default cap).
    r = sp.plan(avg_seq_len=512, **LAB)
    assert r["vllm_args"]["max_num_seqs"] == 88
    assert _notes(r) == ["note: max_num_seqs 88: vLLM's default 128 capped at the 91 sequences of avg_seq_len 512 tokens "
                         "the KV cache holds"]
    assert sp.plan(avg_seq_len=2048, **LAB)["vllm_args"]["max_num_seqs"] == 16
    # Short requests: the cache holds more than the default, which stays.
    short = sp.plan(avg_seq_len=100, **LAB)
    assert short["vllm_args"]["max_num_seqs"] == 128 and _notes(short) == []
    # Under 16 the capped value is not rounded: 45,680 // 8192 = 5.
    gpu = sp.plan(model_config=LLAMA3_8B, gpu_memory="24GiB", max_model_len=8192, avg_seq_len=8192)
    assert gpu["fits"] and gpu["vllm_args"]["max_num_seqs"] == 5
    assert sp.plan(model_config=LLAMA3_8B, gpu_memory="24GiB", max_model_len=8192, avg_seq_len=1024)["vllm_args"][
        "max_num_seqs"] == 40


def test_explicit_max_num_seqs_is_kept_with_a_warning_past_the_cache():
    r = sp.plan(max_num_seqs=64, **LAB)
    assert r["vllm_args"]["max_num_seqs"] == 64
    assert _notes(r) == ["warning: max_num_seqs 64 exceeds the 22 sequences of 2048 tokens the KV cache holds; "
                         "expect preemption under load"]
    r = sp.plan(max_num_seqs=64, avg_seq_len=512, **LAB)
    assert r["vllm_args"]["max_num_seqs"] == 64 and _notes(r) == []  # 91 sequences of 512 tokens


def test_given_batched_tokens_below_the_default_lower_max_num_seqs():
    # vLLM refuses max_num_batched_tokens < max_num_seqs: the operator's budget wins over the default limit.
    r = sp.plan(max_num_batched_tokens=64, **LAB)
    assert (r["vllm_args"]["max_num_seqs"], r["vllm_args"]["max_num_batched_tokens"]) == (64, 64)
    assert _notes(r) == ["note: max_num_seqs 64, lowered from 128 to the given max_num_batched_tokens (vLLM requires "
                         "max_num_batched_tokens >= max_num_seqs)"]


def test_tiny_kv_cache_keeps_default_seqs_and_valid_batched_tokens():
    # 320 layers x 64 KV heads x 128 x 2 x 2 B = 10 MiB per token: 1 GiB holds 6 blocks of 16 = 96 tokens.
    tiny = {"model_type": "llama", "num_hidden_layers": 320, "hidden_size": 8192, "intermediate_size": 1024,
            "num_attention_heads": 64, "num_key_value_heads": 64, "vocab_size": 32000, "max_position_embeddings": 64,
            "torch_dtype": "bfloat16"}
    r = sp.plan(model_config=tiny, weight_bytes=10 ** 9, device="cpu", cpu_kvcache_space=1, block_size=16)
    assert r["fits"] and r["kv_cache_tokens"] == 96 and r["max_concurrency"] == 1.5
    args = r["vllm_args"]
    assert args["max_num_seqs"] == 128
    # Capped at the KV capacity (96), then raised to max_num_seqs, which vLLM requires; >= max_model_len too.
    assert args["max_num_batched_tokens"] == 128 >= args["max_model_len"]
    assert "it holds 1 sequence of max_model_len 64 tokens" in _notes(r)[0]
    # An 18 GiB GPU leaves 1,456 tokens of KV cache at vLLM's default 256 / 2048: the default 256 stays, the token
    # budget drops to those 1,456 (chunked prefill), and the smaller activation peak it buys frees more cache.
    g = sp.plan(model_config=LLAMA3_8B, gpu_memory="18GiB", max_model_len=512)
    assert g["fits"] and g["max_concurrency"] >= 1
    assert (g["vllm_args"]["max_num_seqs"], g["vllm_args"]["max_num_batched_tokens"]) == (256, 1456)
    assert g["kv_cache_tokens"] == 1872


def test_explicit_len_too_long_fails_with_largest_len():
    r = sp.plan(model_config=dict(LLAMA3_8B, max_position_embeddings=131072), gpu_memory="24GiB", max_model_len=131072)
    assert not r["fits"]
    assert "KV cache" in r["reason"]
    assert any(s.startswith("max_model_len ") for s in r["suggestions"])


def test_cpu_too_small_cache():
    # 128 KiB per token: 1 GiB holds exactly 8192 tokens, not 16384.
    r = sp.plan(model_config=dict(LLAMA3_8B, max_position_embeddings=131072), device="cpu", cpu_kvcache_space=1, max_model_len=16384)
    assert not r["fits"]
    assert "VLLM_CPU_KVCACHE_SPACE" in r["reason"]
    assert any("cpu_kvcache_space" in s for s in r["suggestions"])


def test_on_the_fly_fp8_is_returned_as_vllm_arg():
    r = sp.plan(model_config=LLAMA2_13B, quantization="fp8", gpu_memory="24GiB", max_model_len=4096)
    assert r["fits"]
    assert r["vllm_args"]["quantization"] == "fp8"


def test_invalid_inputs():
    with pytest.raises(sp.PlanError, match="model_path"):
        sp.plan(gpu_memory="24GiB")
    with pytest.raises(sp.PlanError, match="cpu_kvcache_space"):
        sp.plan(model_config=SMOLLM2, device="cpu")
    with pytest.raises(sp.PlanError, match="attention heads"):
        sp.plan(model_config=SMOLLM2, gpus=["24GiB"] * 2, tensor_parallel_size=2)
    with pytest.raises(sp.PlanError, match="needs 4 GPUs"):
        sp.plan(model_config=LLAMA3_8B, gpus=["24GiB"] * 2, tensor_parallel_size=4)
    with pytest.raises(sp.PlanError, match="gpu_count 3"):
        sp.plan(model_config=LLAMA3_8B, gpus=["24GiB"] * 2, gpu_count=3)
    with pytest.raises(sp.PlanError, match="device must be cuda or cpu"):
        sp.plan(model_config=LLAMA3_8B, gpu_memory="24GiB", device="tpu")
    assert sp.plan(model_config=LLAMA3_8B, gpu_memory="24GiB", device="gpu")["device"] == "cuda"  # the old name
    with pytest.raises(sp.PlanError, match="gpu_memory_utilization"):
        sp.plan(model_config=LLAMA3_8B, gpu_memory="24GiB", gpu_memory_utilization=1.5)
    with pytest.raises(mc.ModelConfigError, match="lacks"):
        mc.normalize_hf_config({"model_type": "llama"})
