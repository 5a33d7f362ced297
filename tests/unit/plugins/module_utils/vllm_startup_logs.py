"""Public vLLM start-up logs on NVIDIA GPUs, and the model facts needed to plan them.

Each row: where the log is (``source``), what vLLM logged (``logged``: "Model
loading took" GiB per GPU, "Available KV cache memory" GiB, "GPU KV cache
size" tokens; None where the source does not show the line), the arguments in
effect (from the log's non-default args and vLLM's defaults it printed, e.g.
"Chunked prefill is enabled with max_num_batched_tokens=2048"), and the GPU's
CUDA-visible total (``cuda_total_gib``: what torch reports as "total
capacity" on that card; its source in ``gpu_note``).

Model facts are the keys of each model's public config.json
(https://huggingface.co/<model>/blob/main/config.json), text part for
vision-language models, whose ``parameters`` (total, vision tower included)
come from the model card.

``predict: False`` rows are kept for the token arithmetic only, with the
reason in ``skip_prediction``.
"""

from __future__ import annotations

QWEN2_7B = {  # https://huggingface.co/Qwen/Qwen2-7B-Instruct/blob/main/config.json
    "model_type": "qwen2", "num_hidden_layers": 28, "hidden_size": 3584, "intermediate_size": 18944,
    "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 32768,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_sliding_window": False, "sliding_window": 131072,
}
QWEN3_32B = {  # https://huggingface.co/Qwen/Qwen3-32B/blob/main/config.json
    "model_type": "qwen3", "num_hidden_layers": 64, "hidden_size": 5120, "intermediate_size": 25600,
    "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
    "max_position_embeddings": 40960, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}
QWEN3_14B = {  # https://huggingface.co/Qwen/Qwen3-14B/blob/main/config.json
    "model_type": "qwen3", "num_hidden_layers": 40, "hidden_size": 5120, "intermediate_size": 17408,
    "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
    "max_position_embeddings": 40960, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}
QWEN3_06B = {  # https://huggingface.co/Qwen/Qwen3-0.6B/blob/main/config.json
    "model_type": "qwen3", "num_hidden_layers": 28, "hidden_size": 1024, "intermediate_size": 3072,
    "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
    "max_position_embeddings": 40960, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
}
QWEN25_72B = {  # https://huggingface.co/Qwen/Qwen2.5-72B-Instruct/blob/main/config.json
    "model_type": "qwen2", "num_hidden_layers": 80, "hidden_size": 8192, "intermediate_size": 29568,
    "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 152064, "max_position_embeddings": 32768,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_sliding_window": False, "sliding_window": 131072,
}
LLAMA31_8B = {  # https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct/blob/main/config.json
    "model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 14336,
    "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}
LLAMA33_70B_FP8 = {  # https://huggingface.co/RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic/blob/main/config.json
    "model_type": "llama", "num_hidden_layers": 80, "hidden_size": 8192, "intermediate_size": 28672,
    "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "quantization_config": {"quant_method": "compressed-tensors",
                            "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "float"}}}},
}
MISTRAL_SMALL_32 = {  # https://huggingface.co/mistralai/Mistral-Small-3.2-24B-Instruct-2506 (text_config; 24.0B parameters)
    "model_type": "mistral", "num_hidden_layers": 40, "hidden_size": 5120, "intermediate_size": 32768,
    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 131072,
    "max_position_embeddings": 131072, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}
QWEN3_VL_30B_A3B = {  # https://huggingface.co/Qwen/Qwen3-VL-30B-A3B-Instruct/blob/main/config.json (text_config; 31.1B parameters)
    "model_type": "qwen3_moe", "num_hidden_layers": 48, "hidden_size": 2048, "intermediate_size": 6144,
    "moe_intermediate_size": 768, "num_experts": 128, "num_experts_per_tok": 8,
    "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "vocab_size": 151936,
    "max_position_embeddings": 262144, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}
QWEN3_235B_FP8 = {  # https://huggingface.co/Qwen/Qwen3-235B-A22B-FP8/blob/main/config.json
    "model_type": "qwen3_moe", "num_hidden_layers": 94, "hidden_size": 4096, "intermediate_size": 12288,
    "moe_intermediate_size": 1536, "num_experts": 128, "num_experts_per_tok": 8,
    "num_attention_heads": 64, "num_key_value_heads": 4, "head_dim": 128, "vocab_size": 151936,
    "max_position_embeddings": 40960, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]},
}

DENNISLEE = "https://github.com/dennislee22/vLLM-benchmarking/blob/main/log/"
LLMD = "https://github.com/llm-d/llm-d-benchmark/blob/main/config_explorer/empirical-vllm-memory-results.md"
A100_80 = (79.15, "A100 80GB: torch 'total capacity of 79.15 GiB' (NVML 81920 MiB)")
A100_40 = (39.39, "A100 40GB: torch 'total capacity of 39.39 GiB'")
H100_80 = (79.18, "H100 80GB HBM3: measured here, cudaMemGetInfo 85,017,493,504 B (NVML 81559 MiB - 480 MiB reserved); "
                  "llm-d logs '78.57/79.18 GiB'")
H100_NVL = (93.12, "H100 NVL: NVML 95830 MiB - 480 MiB reserved (estimate; reserved as on H100 80GB)")
L40S = (44.52, "L40S: torch 'total capacity of 44.52 GiB'")
RTX_PRO_6000 = (95.0, "96 GB Blackwell card: the source states a 40.47 GiB budget at gpu_memory_utilization 0.426")

ROWS = [
    {
        "id": "qwen2-7b-a100-tp1-u0.25", "model": "Qwen/Qwen2-7B-Instruct", "config": QWEN2_7B, "kind": "dense",
        "source": DENNISLEE + "vllm-7B-1gpuA10080GB-0.25GRAM.log", "vllm_version": "0.10.1.1", "gpu": A100_80,
        "tp": 1, "pp": 1, "util": 0.25, "max_model_len": 16384, "kv_cache_dtype": "auto", "block_size": 16,
        "max_num_seqs": 256, "max_num_batched_tokens": 2048, "sampler": "flashinfer",
        "logged": {"weights_gib": 14.2488, "available_gib": 5.01, "tokens": 93872},
    },
    {
        "id": "qwen2-7b-a100-tp1-u0.5", "model": "Qwen/Qwen2-7B-Instruct", "config": QWEN2_7B, "kind": "dense",
        "source": DENNISLEE + "vllm-7B-1gpuA10080GB-0.5GRAM.log", "vllm_version": "0.10.1.1", "gpu": A100_80,
        "tp": 1, "pp": 1, "util": 0.5, "max_model_len": 16384, "kv_cache_dtype": "auto", "block_size": 16,
        "max_num_seqs": 256, "max_num_batched_tokens": 2048, "sampler": "flashinfer",
        "logged": {"weights_gib": 14.2488, "available_gib": 24.83, "tokens": 464848},
    },
    {
        "id": "qwen2-7b-a100-tp2-u0.5", "model": "Qwen/Qwen2-7B-Instruct", "config": QWEN2_7B, "kind": "dense",
        "source": DENNISLEE + "vllm-7B-2gpuA10080GB-0.5GRAM-same-node.log", "vllm_version": "0.10.1.1", "gpu": A100_80,
        "tp": 2, "pp": 1, "util": 0.5, "max_model_len": 16384, "kv_cache_dtype": "auto", "block_size": 16,
        "max_num_seqs": 256, "max_num_batched_tokens": 2048, "sampler": "flashinfer",
        "logged": {"weights_gib": 7.1217, "available_gib": 31.83, "tokens": 1192160},
    },
    {
        "id": "qwen2-7b-a100-40g-tp2-2nodes", "model": "Qwen/Qwen2-7B-Instruct", "config": QWEN2_7B, "kind": "dense",
        "source": DENNISLEE + "vllm-7B-2gpuA10040GB-0.5GRAM-diff-nodes.log", "vllm_version": "0.10.1.1", "gpu": A100_40,
        "tp": 2, "pp": 1, "util": 0.5, "max_model_len": 16384, "kv_cache_dtype": "auto", "block_size": 16,
        "max_num_seqs": 256, "max_num_batched_tokens": 2048,
        # The log: "FlashInfer is not available. Falling back to the PyTorch-native implementation".
        "sampler": "pytorch",
        "logged": {"weights_gib": 7.1217, "available_gib": 11.03, "tokens": 412944},
    },
    {
        "id": "mistral-small-3.2-24b-h100-u0.95", "model": "mistralai/Mistral-Small-3.2-24B-Instruct-2506",
        "config": MISTRAL_SMALL_32, "parameters": 24.0e9, "kind": "dense, vision-language",
        "source": LLMD + " (section 10)", "vllm_version": "0.11.0", "gpu": H100_80,
        "tp": 1, "pp": 1, "util": 0.95, "max_model_len": 16000, "kv_cache_dtype": "auto", "block_size": 128,
        "max_num_seqs": 1024, "max_num_batched_tokens": 8192,
        "logged": {"weights_gib": 44.76, "available_gib": 28.20, "tokens": 184832},
        "known_miss": ("vision-language model whose logged activation peak (2.12 GiB) is less than half of what vLLM 0.11's "
                       "sampler takes for text models with the same vocabulary size; not modelled"),
    },
    {
        "id": "qwen3-vl-30b-a3b-h100nvl", "model": "Qwen/Qwen3-VL-30B-A3B-Instruct", "config": QWEN3_VL_30B_A3B,
        "parameters": 31.07e9, "kind": "MoE, vision-language",
        "source": "https://github.com/search?q=%22Available+KV+cache+memory%3A+19.40+GiB%22&type=code "
                  "(a vLLM 0.13.0 log in a public repository: 'Model loading took 58.2299 GiB', H100 NVL)",
        "vllm_version": "0.13.0", "gpu": H100_NVL,
        "tp": 1, "pp": 1, "util": 0.9, "max_model_len": 8192, "kv_cache_dtype": "auto", "block_size": 16,
        "max_num_seqs": 1024, "max_num_batched_tokens": 8192,
        "logged": {"weights_gib": 58.2299, "available_gib": 19.40, "tokens": 211936},
    },
    {
        "id": "qwen2.5-72b-l40s-tp4", "model": "Qwen/Qwen2.5-72B-Instruct", "config": QWEN25_72B, "kind": "dense",
        "source": "https://github.com/gnosia93/eks-agentic-ai (lesson: vLLM 0.19.0 on g6e.12xlarge, 4 x L40S)",
        "vllm_version": "0.19.0", "gpu": L40S,
        "tp": 4, "pp": 1, "util": 0.9, "max_model_len": 8192, "kv_cache_dtype": "auto", "block_size": 16,
        "max_num_seqs": 256, "max_num_batched_tokens": 2048,
        "logged": {"weights_gib": 33.98, "available_gib": 5.11, "tokens": 67024},
    },
    {
        "id": "qwen2.5-72b-h100-tp2-u0.95", "model": "Qwen/Qwen2.5-72B-Instruct", "config": QWEN25_72B, "kind": "dense",
        "source": "issue 13 of this project (a public vLLM 0.19 log: 19,920 tokens, 2.43x at 8192, torch peak 2.3 GiB)",
        "vllm_version": "0.19", "gpu": H100_80,
        "tp": 2, "pp": 1, "util": 0.95, "max_model_len": 8192, "kv_cache_dtype": "auto", "block_size": 16,
        "max_num_seqs": 1024, "max_num_batched_tokens": 8192,
        "logged": {"weights_gib": None, "available_gib": None, "tokens": 19920},
        "known_miss": ("only the issue's summary of the log is available (no 'Available KV cache memory' or 'Model loading "
                       "took' line, exact 0.19.x release unknown): 2.2 GiB of the budget are unexplained"),
    },
    {
        "id": "qwen3-32b-tp2-blackwell96", "model": "Qwen/Qwen3-32B", "config": QWEN3_32B, "kind": "dense",
        "source": "https://github.com/search?q=%22GPU+KV+cache+size%3A+67%2C296+tokens%22&type=code "
                  "(tensor vs pipeline parallel article; vllm/vllm-openai:latest, V2 model runner, line numbers of 0.27)",
        "vllm_version": "0.27", "gpu": RTX_PRO_6000,
        "tp": 2, "pp": 1, "util": 0.426, "max_model_len": 32768, "kv_cache_dtype": "auto", "block_size": 16,
        "max_num_seqs": 1024, "max_num_batched_tokens": 8192,
        "logged": {"weights_gib": 30.59, "available_gib": 8.22, "tokens": 67296},
    },
    {
        "id": "qwen3-32b-pp2-blackwell96", "model": "Qwen/Qwen3-32B", "config": QWEN3_32B, "kind": "dense",
        "source": "same article as qwen3-32b-tp2-blackwell96 (--pipeline-parallel-size 2)",
        "vllm_version": "0.27", "gpu": RTX_PRO_6000,
        "tp": 1, "pp": 2, "util": 0.426, "max_model_len": 32768, "kv_cache_dtype": "auto", "block_size": 16,
        "max_num_seqs": 1024, "max_num_batched_tokens": 8192,
        "logged": {"weights_gib": 30.52, "available_gib": 6.92, "tokens": 56640},
        "known_miss": ("pipeline stage 0 logged 0.67 GiB more overhead than its forward pass, non-torch memory and CUDA "
                       "graphs explain (the source attributes it to buffers for activations in flight between stages)"),
    },
    {
        "id": "qwen3-235b-a22b-fp8-h100-tp4", "model": "Qwen/Qwen3-235B-A22B-FP8", "config": QWEN3_235B_FP8,
        "kind": "MoE, FP8", "source": "https://github.com/vllm-project/vllm/issues/21348",
        "vllm_version": "0.10.0", "gpu": H100_80,
        "tp": 4, "pp": 1, "util": 0.9, "max_model_len": 40960, "kv_cache_dtype": "auto", "block_size": 16,
        "max_num_seqs": 1024, "max_num_batched_tokens": 8192,
        "logged": {"weights_gib": None, "available_gib": 8.11, "tokens": 178880},
        "predict": False,
        "skip_prediction": "started with an LMCache KV connector (kv_both), which holds GPU buffers of its own; "
                           "the log shows no weights line",
    },
    {
        "id": "qwen3-14b-lmcache", "model": "Qwen/Qwen3-14B", "config": QWEN3_14B, "kind": "dense",
        "source": "https://github.com/LMCache/LMCache/issues/1739",
        "vllm_version": "0.10.2", "gpu": None,
        "tp": 1, "pp": 1, "util": None, "max_model_len": 32768, "kv_cache_dtype": "auto", "block_size": 16,
        "logged": {"weights_gib": None, "available_gib": 6.51, "tokens": 42656},
        "predict": False, "skip_prediction": "the issue does not name the GPU or gpu_memory_utilization",
    },
]

# llm-d's H100 runs (vLLM 0.11.0, --block-size=128, --enable-prefix-caching, default
# 8192 / 1024 batch limits): the summary gives the logged available KV memory, not
# the token line, so the token figure to compare with is the arithmetic one.
for _id, _cfg, _tp, _w, _avail, _kind in (
        ("llama-3.1-8b-h100", LLAMA31_8B, 1, 14.99, 51.38, "dense"),
        ("qwen3-0.6b-h100", QWEN3_06B, 1, 1.12, 64.45, "dense, tied embeddings"),
        ("qwen3-32b-h100-tp1", QWEN3_32B, 1, 61.03, 4.45, "dense"),
        ("qwen3-32b-h100-tp2", QWEN3_32B, 2, 30.59, 34.49, "dense"),
        ("llama-3.3-70b-fp8-h100-tp2", LLAMA33_70B_FP8, 2, 33.88, 32.0, "dense, FP8 weights")):
    ROWS.append({
        "id": _id, "model": _id, "config": _cfg, "kind": _kind, "source": LLMD, "vllm_version": "0.11.0",
        "gpu": H100_80, "tp": _tp, "pp": 1, "util": 0.9, "max_model_len": 16000, "kv_cache_dtype": "auto",
        "block_size": 128, "max_num_seqs": 1024, "max_num_batched_tokens": 8192,
        "logged": {"weights_gib": _w, "available_gib": _avail, "tokens": None},
    })
