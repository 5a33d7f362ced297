"""Generate benchmarks/serving_plan_table.md: serving_plan's numbers for well-known models.

    .venv/bin/python benchmarks/serving_plan_table.py            # print
    .venv/bin/python benchmarks/serving_plan_table.py --write    # rewrite benchmarks/serving_plan_table.md

No model files are needed: the configs below are copied from each model's
published config.json (Hugging Face), and weights are estimated from the
parameter count the config implies (see plugins/module_utils/model_config.py
for the bits per weight of each quantization and their sources).
"""

from __future__ import annotations

import os
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
_root = pathlib.Path(os.environ.get("LLMOPS_CACHE_DIR", REPO / ".cache")) / "collections"
_link = _root / "ansible_collections" / "llmops" / "inference"
if not _link.exists():
    _link.parent.mkdir(parents=True, exist_ok=True)
    _link.symlink_to(REPO)
sys.path.insert(0, str(_root))

from ansible_collections.llmops.inference.plugins.module_utils import serving_plan as sp  # noqa: E402

# Published config.json values (the keys the planner reads).
LLAMA3_8B = {  # meta-llama/Meta-Llama-3-8B-Instruct
    "model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 14336,
    "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}
LLAMA3_70B = {  # meta-llama/Meta-Llama-3-70B-Instruct
    "model_type": "llama", "num_hidden_layers": 80, "hidden_size": 8192, "intermediate_size": 28672,
    "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}
QWEN25_32B = {  # Qwen/Qwen2.5-32B-Instruct
    "model_type": "qwen2", "num_hidden_layers": 64, "hidden_size": 5120, "intermediate_size": 27648,
    "num_attention_heads": 40, "num_key_value_heads": 8, "vocab_size": 152064, "max_position_embeddings": 32768,
    "sliding_window": 131072, "use_sliding_window": False, "max_window_layers": 70,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}
MIXTRAL_8X7B = {  # mistralai/Mixtral-8x7B-Instruct-v0.1
    "model_type": "mixtral", "num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 14336,
    "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000, "max_position_embeddings": 32768,
    "num_local_experts": 8, "num_experts_per_tok": 2, "sliding_window": None,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}
LLAMA2_13B = {  # meta-llama/Llama-2-13b-chat-hf: the textbook "13B FP16 on a 24 GB card"
    "model_type": "llama", "num_hidden_layers": 40, "hidden_size": 5120, "intermediate_size": 13824,
    "num_attention_heads": 40, "num_key_value_heads": 40, "vocab_size": 32000, "max_position_embeddings": 4096,
    "tie_word_embeddings": False, "torch_dtype": "float16",
}

MODELS = [
    ("Llama-3-8B", LLAMA3_8B, "none"),
    ("Llama-3-8B", LLAMA3_8B, "awq"),
    ("Llama-3-8B", LLAMA3_8B, "gguf:Q4_K_M"),
    ("Llama-2-13B", LLAMA2_13B, "none"),
    ("Qwen2.5-32B", QWEN25_32B, "none"),
    ("Qwen2.5-32B", QWEN25_32B, "awq"),
    ("Mixtral-8x7B", MIXTRAL_8X7B, "none"),
    ("Mixtral-8x7B", MIXTRAL_8X7B, "awq"),
    ("Llama-3-70B", LLAMA3_70B, "awq"),
    ("Llama-3-70B", LLAMA3_70B, "gguf:Q4_K_M"),
]
# Total memory as NVML reports it (MiB): RTX 4090, RTX 6000 Ada / A6000, H100 80GB.
CARDS = [("24 GB", 24564), ("48 GB", 49140), ("80 GB", 81559)]
MAX_GPUS = 8
CONTEXT = 8192


def row(name, cfg, quant, card, mib):
    label = "BF16" if quant == "none" and cfg["torch_dtype"] == "bfloat16" else ("FP16" if quant == "none" else quant.replace("gguf:", "GGUF "))
    label = label.upper() if label == "awq" else label
    r = sp.plan(model_config=cfg, quantization=None if quant == "none" else quant, gpus=[mib] * MAX_GPUS,
                max_model_len=min(CONTEXT, cfg["max_position_embeddings"]))
    m = r["memory"]
    kib = r["kv_bytes_per_token"] * r["tensor_parallel_size"] / 1024.0  # whole model, all GPUs
    if r["fits"]:
        return "| %s | %s | %.1f | %.0f | %s | %d | %.1f | %.1f | %s | %.1fx | %d / %d |" % (
            name, label, r["model"]["weight_bytes"] / 2 ** 30, kib, card, r["tensor_parallel_size"], m["weights"] / 2 ** 30,
            m["kv_cache"] / 2 ** 30, "{:,}".format(r["kv_cache_tokens"]), r["max_concurrency"],
            r["vllm_args"]["max_num_seqs"], r["vllm_args"]["max_num_batched_tokens"])
    return "| %s | %s | %.1f | %.0f | %s | no fit | | | | | %s |" % (
        name, label, r["model"]["weight_bytes"] / 2 ** 30, kib, card, r["reason"])


def textbook():
    out = []
    r = sp.plan(model_config=LLAMA2_13B, gpus=[24564], max_model_len=4096)
    out.append("### 13B FP16 on one 24 GB card")
    out.append("")
    out.append("`serving_plan` with `max_model_len: 4096` on one RTX 4090 (24564 MiB):")
    out.append("")
    out.append("```")
    out.extend(r["explanation"])
    out.append("```")
    r = sp.plan(model_config=LLAMA3_70B, quantization="gguf:Q4_K_M", gpus=[49140] * 2, max_model_len=8192, tensor_parallel_size=2)
    r1 = sp.plan(model_config=LLAMA3_70B, quantization="gguf:Q4_K_M", gpus=[49140], max_model_len=8192)
    awq = sp.plan(model_config=LLAMA3_70B, quantization="awq", gpus=[49140], max_model_len=8192)
    kv8k = 8192 * r["kv_bytes_per_token"] * r["tensor_parallel_size"]
    out.append("")
    out.append("### \"A 70B Q4 model at 8K context needs about 38 GB\"")
    out.append("")
    out.append("- weights alone: GGUF Q4_K_M %.1f GiB (%.1f GB), AWQ %.1f GiB (%.1f GB); ~70.6e9 parameters x ~4.5-4.9 bits."
               % (r["model"]["weight_bytes"] / 2 ** 30, r["model"]["weight_bytes"] / 1e9,
                  awq["model"]["weight_bytes"] / 2 ** 30, awq["model"]["weight_bytes"] / 1e9))
    out.append("- KV cache of one 8,192-token request: 80 layers x 2 x 8 KV heads x 128 x 2 B = %d KiB/token -> %.2f GiB."
               % (r["kv_bytes_per_token"] * r["tensor_parallel_size"] // 1024, kv8k / 2 ** 30))
    m = awq["memory"]
    need = m["weights"] + m["activation"] + m["non_torch"] + m["cudagraph"] + kv8k
    out.append("- the plan's own figure for one 8K request, AWQ on one GPU: weights %.1f + activation peak %.1f + non-torch %.2f + "
               "CUDA graphs %.1f + KV %.1f = %.1f GiB (%.1f GB), and vLLM may only use gpu_memory_utilization (0.9) of the card, "
               "so the card needs >= %.1f GiB (%.1f GB); with GGUF Q4_K_M weights, %.1f GiB (%.1f GB)."
               % (m["weights"] / 2 ** 30, m["activation"] / 2 ** 30, m["non_torch"] / 2 ** 30, m["cudagraph"] / 2 ** 30, kv8k / 2 ** 30,
                  need / 2 ** 30, need / 1e9, need / 0.9 / 2 ** 30, need / 0.9 / 1e9,
                  (need - m["weights"] + r1["memory"]["weights"]) / 0.9 / 2 ** 30, (need - m["weights"] + r1["memory"]["weights"]) / 0.9 / 1e9))
    out.append("- one 48 GB card, Q4_K_M: %s" % ("fits" if r1["fits"] else "refused: " + r1["reason"]))
    out.append("- one 48 GB card, AWQ: %s" % ("fits, %s tokens of KV cache (%.1fx 8K requests)" % (
        "{:,}".format(awq["kv_cache_tokens"]), awq["max_concurrency"]) if awq["fits"] else "refused: " + awq["reason"]))
    out.append("- two 48 GB cards (TP=2), Q4_K_M: %s tokens of KV cache, %.1fx 8K requests."
               % ("{:,}".format(r["kv_cache_tokens"]), r["max_concurrency"]))
    return out


def main():
    lines = [
        "# serving_plan: well-known models on 24, 48 and 80 GB cards",
        "",
        "Generated by `benchmarks/serving_plan_table.py` (do not edit by hand). Method and sources: docs/serving_plan.md.",
        "max_model_len %d, gpu_memory_utilization 0.9, kv_cache_dtype auto, vLLM's default max_num_seqs and" % CONTEXT,
        "max_num_batched_tokens capped by capacity; the smallest tensor_parallel_size (of up to %d identical cards) that fits." % MAX_GPUS,
        "Weights are estimated from the parameter count of the published config (no files here).",
        "",
        "| model | weights | weights GiB | KV KiB/token | card | TP | weights GiB/GPU | KV cache GiB/GPU | KV tokens | 8K requests "
        "| max_num_seqs / batched tokens |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, cfg, quant in MODELS:
        for card, mib in CARDS:
            lines.append(row(name, cfg, quant, card, mib))
    lines.append("")
    lines.extend(textbook())
    text = "\n".join(lines) + "\n"
    if "--write" in sys.argv:
        (REPO / "benchmarks" / "serving_plan_table.md").write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
