# Copyright: contributors to llmops.inference
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""vLLM's GPU memory accounting at start-up, as explicit rules per vLLM version.

What vLLM measures (read from vLLM's ``v1/worker/gpu_worker.py``
``determine_available_memory``, ``utils/mem_utils.py`` ``memory_profiling``,
``v1/worker/utils.py`` ``request_memory`` and ``gpu_model_runner.py``
``profile_run`` / ``_dummy_sampler_run``; vLLM 0.32 from the project's
wheelhouse, older versions from their public logs and pull requests)::

    requested  = ceil(cuda_total x gpu_memory_utilization)
    available  = requested - weights - activation_peak - non_torch
                 [- cuda_graph_estimate]          # vLLM >= 0.21 only

- ``cuda_total`` is CUDA's total (``cudaMemGetInfo``), which is NVML's total
  minus the driver-reserved memory (measured on an H100 80GB HBM3, driver 580:
  85,520,809,984 - 503,316,480 = 85,017,493,504 bytes exactly; NVML v2's
  ``reserved`` is exactly the gap). gpu_validate reports it as
  ``memory_reserved_mib``.
- ``activation_peak`` is torch's allocated-bytes peak during the profile run:
  one forward pass of ``max_num_batched_tokens`` tokens, then a dummy sampler
  pass over ``min(max_num_seqs, max_num_batched_tokens)`` rows of float32
  logits with top-k/top-p set. The two run one after another, so the peak is
  the larger of the two. With vLLM's default 1024 sequences the sampler
  dominates; how many logits-sized float32 buffers it holds depends on the
  top-k/top-p implementation, which changed between versions (SAMPLER_RULES).
- ``non_torch`` is the growth of memory outside torch's allocator since the
  worker's first snapshot (cuBLAS workspace, NCCL and custom all-reduce
  buffers with tensor parallelism); the CUDA context itself is in the snapshot
  and outside the budget.
- CUDA graph memory: vLLM captures graphs after the KV cache is allocated.
  Since 0.21 it first profiles the graphs and subtracts the estimate
  (``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS``, default on); before, the
  graphs came out of the (1 - gpu_memory_utilization) headroom.
- Pipeline parallelism: every stage sizes its own KV cache and the engine uses
  the smallest stage's block count.

Standard library only.
"""

from __future__ import annotations

import math
import re

GiB = 1 << 30
MiB = 1 << 20

DEFAULT_VLLM_VERSION = "0.32"
# Plain memory sizes (not gpu_validate facts) are read as NVML totals; the
# driver-reserved part is then estimated: 480 MiB on H100 80GB and L40S,
# 625 MiB on A100 40GB, 870 MiB on A100 80GB (NVML total minus the CUDA total
# that torch reports in its out-of-memory messages).
DEFAULT_RESERVED_BYTES = 512 * MiB

# (first vLLM version, top-k/top-p implementation of the dummy sampler run).
SAMPLER_RULES = (
    ((0, 0), "pytorch"),     # sort-based PyTorch path (FlashInfer >= 0.2.3 not yet supported, vllm#14815)
    ((0, 10), "flashinfer"),  # FlashInfer top-k/top-p kernel when installed (logs: "Using FlashInfer for top-p & top-k sampling")
    ((0, 11), "pytorch"),    # FlashInfer sampler off by default (vllm#26859); llm-d's 0.11.0 H100 logs
    ((0, 16), "triton"),     # Triton top-k/top-p kernel (vllm#33538), later FlashInfer again (vllm#40376)
    ((0, 25), "v2"),         # Model Runner V2 by default for dense models (vllm#44443, merged 2026-07-02)
)
# Model Runner V2 became the default for MoE models later (vllm#46646 / #53183).
V2_RUNNER_MOE_SINCE = (0, 29)
# Float32 (max_num_seqs x vocab) buffers alive at the sampler's peak, from
# logged activation peaks divided by one such buffer:
# - pytorch: llm-d's vLLM 0.11.0 H100 logs, 1024 sequences: Llama-3.1-8B
#   4.76 GiB / 0.489 = 9.73, Qwen3-0.6B 5.56 / 0.580 = 9.59, Qwen3-32B
#   5.64 / 0.580 = 9.73, gpt-oss-20b 7.38 / 0.767 = 9.62;
# - flashinfer: vLLM 0.10.1.1 A100 logs, 256 sequences (what remains after
#   non-torch memory): (0.53 - 0.13) / 0.145 = 2.7;
# - triton: vLLM 0.19 H100 TP2 log quoted in issue 13, torch peak 2.3 GiB /
#   (1024 x 152064 x 4 B = 0.580 GiB) = 3.97;
# - v2: Model Runner V2's dummy sampler run skips top-k/top-p and logprobs
#   (vllm/v1/worker/gpu/model_runner.py _dummy_sampler_run, 0.32): the
#   bfloat16 logits (0.5) and one float32 copy (1).
SAMPLER_COPIES = {"pytorch": 9.7, "flashinfer": 2.7, "triton": 4.0, "v2": 1.5}
SAMPLERS = tuple(sorted(SAMPLER_COPIES))

NON_TORCH_TP1 = int(0.13 * GiB)  # llm-d H100 logs (0.13-0.14 GiB, TP=1)
# With TP > 1: NCCL communicators and custom all-reduce buffers. vLLM 0.10.1.1
# A100 TP2 logs leave 0.24 GiB beside the activation; llm-d's 0.11.0 H100 TP2
# logs say 0.54-0.55 GiB.
NON_TORCH_TPN = (((0, 0), int(0.25 * GiB)), ((0, 11), int(0.55 * GiB)))
CUDAGRAPH_PROFILED_SINCE = (0, 21)
# vLLM's logged "Estimated CUDA graph memory" with the default capture sizes
# (FULL_AND_PIECEWISE, up to 512): 2.73 GiB for Qwen2.5-72B (80 layers, TP4),
# 0.94 GiB for a 1.19 GiB, 28-layer model: ~34 MiB per decoder layer.
CUDAGRAPH_BYTES_PER_LAYER = 34 * MiB
# Model Runner V2 captures whole-model graphs; one public log (Qwen3-32B TP2,
# vLLM ~0.27) leaves 0.24 GiB beside its sampler and non-torch terms.
CUDAGRAPH_BYTES_V2 = int(0.25 * GiB)


class MemoryModelError(ValueError):
    pass


def parse_version(value):
    """(major, minor) of a vLLM version string such as 0.10.1.1, v0.19.0, 0.32."""
    m = re.match(r"^\s*v?(\d+)\.(\d+)", str(value if value is not None else DEFAULT_VLLM_VERSION))
    if not m:
        raise MemoryModelError("vllm_version must look like 0.19 or 0.10.1.1, got %r" % (value,))
    return int(m.group(1)), int(m.group(2))


def _rule(rules, version):
    chosen = rules[0][1]
    for since, value in rules:
        if version >= since:
            chosen = value
    return chosen


def sampler_for(version, sampler=None, moe=False):
    """The top-k/top-p implementation vLLM's dummy sampler run uses (v2: Model Runner V2, which skips them)."""
    if sampler in (None, "auto"):
        v = parse_version(version)
        impl = _rule(SAMPLER_RULES, v)
        if impl == "v2" and moe and v < V2_RUNNER_MOE_SINCE:
            impl = "triton"
        return impl
    if sampler not in SAMPLER_COPIES:
        raise MemoryModelError("sampler must be auto or one of %s, got %r" % (", ".join(SAMPLERS), sampler))
    return sampler


def cuda_total(nvml_total, reserved=None):
    """CUDA-visible total from NVML's total and the driver-reserved memory (estimated when unknown)."""
    return int(nvml_total) - int(DEFAULT_RESERVED_BYTES if reserved is None else reserved)


def requested_bytes(cuda_total_bytes, utilization):
    """vLLM's budget: request_memory() = ceil(total x gpu_memory_utilization)."""
    return int(math.ceil(cuda_total_bytes * utilization))


def forward_bytes(shape, tp, tokens, act_bytes=2):
    """Peak live activations of one forward pass over ``tokens`` tokens on one GPU.

    Residual, normed input and attention output (3 x hidden), plus the gated
    MLP's 3 x intermediate / tp (experts_per_token x moe_intermediate for MoE,
    the fused-MoE intermediate caches) and the QKV projection / tp.
    """
    moe = shape.get("moe")
    inter = shape["intermediate_size"]
    if moe:
        inter = max(inter, moe["experts_per_token"] * moe["moe_intermediate_size"] + moe["shared_intermediate_size"])
    qkv = (shape["num_attention_heads"] + 2 * shape["num_kv_heads"]) * shape["head_dim"]
    per_token = 3 * shape["hidden_size"] + (3 * inter + qkv) // tp
    return tokens * per_token * act_bytes


def sampler_bytes(shape, sampler, max_num_seqs, max_num_batched_tokens):
    rows = min(max_num_seqs, max_num_batched_tokens)
    return int(SAMPLER_COPIES[sampler] * rows * shape["vocab_size"] * 4)


def non_torch_bytes(version, tp_size, pp_size=1):
    if tp_size * pp_size <= 1:
        return NON_TORCH_TP1
    return _rule(NON_TORCH_TPN, parse_version(version))


def cudagraph_bytes(version, num_layers, enforce_eager, sampler="pytorch"):
    """CUDA graph memory vLLM subtracts from the KV budget (0 before 0.21 or with enforce_eager)."""
    if enforce_eager or parse_version(version) < CUDAGRAPH_PROFILED_SINCE:
        return 0
    if sampler == "v2":
        return CUDAGRAPH_BYTES_V2
    return CUDAGRAPH_BYTES_PER_LAYER * num_layers


def pp_stage_layers(num_layers, pp_size):
    """Decoder layers per pipeline stage: vLLM's get_pp_indices gives the remainder to the last stages."""
    base, rest = divmod(num_layers, pp_size)
    return [base + (1 if i >= pp_size - rest else 0) for i in range(pp_size)]


def stage_weight_bytes(shape, weight_bytes, tp, pp):
    """Weights per GPU of each pipeline stage: blocks split by layers, embedding on the first, lm_head on the last."""
    emb = shape["vocab_size"] * shape["hidden_size"] * 2 if pp > 1 else 0
    head = 0 if shape.get("tie_word_embeddings") else emb
    blocks = max(0, weight_bytes - emb - head)
    layers = pp_stage_layers(shape["num_layers"], pp)
    out = []
    for i, n in enumerate(layers):
        w = blocks * n // shape["num_layers"]
        if i == 0:
            w += emb
        if i == pp - 1:
            w += head if head else (emb if pp > 1 else 0)
        out.append(-(-w // tp))
    if pp == 1:
        out = [-(-weight_bytes // tp)]
    return out


def activation_bytes(shape, *, version, sampler, tp, max_num_seqs, max_num_batched_tokens, last_stage=True):
    """(peak bytes, explanation) of vLLM's profile run on one GPU."""
    impl = sampler_for(version, sampler, bool(shape.get("moe")))
    fwd = forward_bytes(shape, tp, max_num_batched_tokens)
    smp = sampler_bytes(shape, impl, max_num_seqs, max_num_batched_tokens) if last_stage else 0
    if smp >= fwd:
        note = "sampler: %.1f x %d rows x %d vocab x 4 B (%s top-k/top-p, vLLM %s)" % (
            SAMPLER_COPIES[impl], min(max_num_seqs, max_num_batched_tokens), shape["vocab_size"], impl,
            "%d.%d" % parse_version(version))
    else:
        note = "forward pass of %d tokens" % max_num_batched_tokens
    return max(fwd, smp), note


def gpu_budget(shape, weight_bytes, *, cuda_total_bytes, utilization, tp, pp, version, sampler,
               max_num_seqs, max_num_batched_tokens, enforce_eager, margin=0):
    """Per-stage memory terms on one GPU; the stage with the least KV memory decides (vLLM takes the minimum)."""
    requested = requested_bytes(cuda_total_bytes, utilization)
    layers = pp_stage_layers(shape["num_layers"], pp)
    weights = stage_weight_bytes(shape, weight_bytes, tp, pp)
    stages = []
    for i in range(pp):
        act, note = activation_bytes(shape, version=version, sampler=sampler, tp=tp, max_num_seqs=max_num_seqs,
                                     max_num_batched_tokens=max_num_batched_tokens, last_stage=i == pp - 1)
        nt = non_torch_bytes(version, tp, pp)
        cg = cudagraph_bytes(version, layers[i], enforce_eager, sampler_for(version, sampler, bool(shape.get("moe"))))
        stages.append({
            "stage": i, "layers": layers[i], "requested": requested, "weights": weights[i], "activation": act,
            "activation_note": note, "non_torch": nt, "cudagraph": cg, "margin": int(margin),
            "available": requested - weights[i] - act - nt - cg - int(margin),
        })
    return stages
