#!/usr/bin/python
# Copyright: contributors to llmops.inference
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations


DOCUMENTATION = r"""
---
module: serving_plan
short_description: Size a model to its GPUs and choose vLLM's memory arguments
description:
  - Reads a model's shape (C(config.json) and safetensors headers, or a GGUF header) or takes it as parameters,
    and computes per-GPU weight bytes, KV cache bytes per token, KV cache capacity in tokens under
    O(gpu_memory_utilization), the maximum concurrency at O(max_model_len) and the smallest tensor-parallel size that fits.
  - Returns ready vLLM arguments (keys are vLLM CLI flags with underscores) and a readable explanation,
    or refuses with the reason and what would fit (a shorter O(max_model_len), more GPUs, a quantization).
  - On GPUs the memory model follows vLLM's own start-up accounting as rules per O(vllm_version)
    (the top-k/top-p implementation of the profiled sampler, non-torch memory, whether CUDA graph memory is
    subtracted, pipeline stages); docs/serving_plan.md lists every rule, its source and its error against public logs.
  - Read-only; never changes the host.
version_added: 0.1.0
author:
  - llmops.inference maintainers (@llmops)
options:
  model_path:
    description:
      - A Hugging Face model directory (with C(config.json); weight bytes come from the safetensors headers or
        C(model.safetensors.index.json)) or a C(.gguf) file, on the managed host.
      - Mutually exclusive with O(model_config).
    type: path
  model_config:
    description:
      - The content of a model's C(config.json), for a model that is not on the host. Combine with
        O(weight_bytes), or O(parameters) and O(quantization).
    type: dict
  weight_bytes:
    description:
      - Total weight bytes (an integer or a size such as V(16GB), V(14.96GiB)). Overrides what the files say.
    type: str
  parameters:
    description:
      - Parameter count (for example V(8.03e9)), used with O(quantization) when the weights are estimated.
        Without it the count is derived from O(model_config).
    type: float
  quantization:
    description:
      - V(auto) uses the checkpoint's own (C(quantization_config) or the GGUF file type).
      - V(fp8) and V(bitsandbytes) on an unquantized checkpoint are quantized by vLLM at load time and returned in
        RV(vllm_args); V(awq), V(gptq) and V(gguf:q4_k_m)-style GGUF types are what-ifs that need such a checkpoint.
    type: str
    default: auto
  dtype:
    description:
      - Serving dtype of weights and activations. V(auto) follows the checkpoint (float32 checkpoints are served in bfloat16).
    type: str
    choices: [auto, bfloat16, float16, float32]
    default: auto
  device:
    description:
      - V(cuda) sizes against NVIDIA GPU memory (the collection's name, as in the vllm role's C(vllm_device)).
        V(cpu) mirrors vLLM-CPU, whose KV cache is exactly O(cpu_kvcache_space) GiB.
      - V(gpu) is the old name of V(cuda); it still works, with a deprecation warning, and will be removed in 2.0.0.
    type: str
    choices: [cuda, cpu, gpu]
    default: cuda
  gpus:
    description:
      - The GPUs to size for, usually C(ansible_facts.nvidia.gpus) from M(llmops.inference.gpu_validate)
        (each item's C(memory_total_mib) and C(memory_reserved_mib); C(memory_total_bytes) or C(memory_total) also work), or a
        plain list of memory sizes (V(80GiB), V(81559MiB), bytes, or a bare number under 2097152 read as MiB as C(nvidia-smi)
        shows it).
      - Totals are NVML's; CUDA, and so vLLM, sees the total minus the driver-reserved memory. Without
        C(memory_reserved_mib) 512 MiB are assumed reserved.
      - The smallest GPU sets the per-GPU budget (vLLM gives every tensor-parallel rank the same KV cache).
    type: list
    elements: raw
  gpu_count:
    description:
      - Use this many GPUs, the first ones of O(gpus), or this many identical O(gpu_memory) GPUs. It is the most the plan
        may spread the model over (O(tensor_parallel_size) x O(pipeline_parallel_size)), not a count the host must match.
      - Defaults to all of O(gpus), or 1. More than O(gpus) lists is an error.
    type: int
  gpu_memory:
    description:
      - Memory of each GPU when O(gpus) is not given (V(24GiB), V(80GB), V(81559MiB), or bytes), as C(nvidia-smi) reports it.
    type: str
  cpu_kvcache_space:
    description:
      - With O(device=cpu), GiB of KV cache (vLLM-CPU's C(VLLM_CPU_KVCACHE_SPACE)).
    type: int
  max_model_len:
    description:
      - Context length to serve. Unset, the model's own length, lowered to the largest that fits when it does not.
        Set, the plan refuses when it does not fit.
    type: int
  tensor_parallel_size:
    description:
      - Fixed tensor-parallel size. Unset, the smallest valid size (1, 2, 4, 8, ... up to the usable GPUs) that fits.
    type: int
  pipeline_parallel_size:
    description:
      - Pipeline-parallel stages. Each stage holds its share of the layers; vLLM sizes the KV cache from the stage with the
        fewest blocks, and so does the plan.
    type: int
    default: 1
  gpu_memory_utilization:
    description:
      - Fraction of each GPU's CUDA-visible memory vLLM may use (weights, activations, KV cache).
    type: float
    default: 0.9
  max_num_seqs:
    description:
      - Maximum concurrent sequences. Unset, vLLM's default (128 on CPU, 256 on GPUs under 70 GiB, 1024 from 70 GiB),
        not capped by the KV cache, since vLLM's scheduler admits requests only while KV blocks are free and queues
        or preempts beyond that; the explanation says how many O(max_model_len) requests the KV cache holds at once.
        With O(avg_seq_len) set, capped at what the KV cache holds at that length.
      - Set, it is kept, with a warning when it exceeds the sequences of O(avg_seq_len) (unset, min(max_model_len, 2048))
        tokens the KV cache holds.
    type: int
  max_num_batched_tokens:
    description:
      - Tokens per scheduler step (prefill chunk). Unset, vLLM's default (8192 on GPUs of 70 GiB or more,
        2048 otherwise and on CPU), capped by the KV capacity.
    type: int
  kv_cache_dtype:
    description:
      - KV cache dtype. V(auto) is the model dtype; V(fp8) halves KV bytes per token.
    type: str
    choices: [auto, fp8, fp8_e4m3, fp8_e5m2]
    default: auto
  block_size:
    description:
      - KV cache block size in tokens. Unset, vLLM's default (16 on GPU, 128 on CPU, 16 for MLA on CPU).
    type: int
  min_concurrency:
    description:
      - Number of full-length (O(max_model_len)) requests the KV cache must hold for the plan to fit.
    type: float
    default: 1.0
  avg_seq_len:
    description:
      - Typical prompt plus output tokens of a request. Set, and O(max_num_seqs) unset, the plan caps O(max_num_seqs) at
        vLLM's default or the KV cache tokens divided by this, whichever is smaller (rounded down to a multiple of 8 from
        16). Unset, O(max_num_seqs) stays vLLM's default.
      - Also the length the warning for a given O(max_num_seqs) counts in; unset, min(max_model_len, 2048) there.
    type: int
  enforce_eager:
    description:
      - Plan for vLLM's C(--enforce-eager) (no CUDA graph memory).
    type: bool
    default: false
  vllm_version:
    description:
      - The vLLM version that will run the model (V(0.19), V(0.10.1.1)); its start-up accounting differs between versions
        (the profiled sampler's memory, non-torch memory, CUDA graph memory subtracted from V(0.21) on).
      - Defaults to V(0.32), the version the vllm role installs.
    type: str
  sampler:
    description:
      - The top-k/top-p implementation of the profiled dummy sampler run. V(auto) follows O(vllm_version).
        V(pytorch) when vLLM logs "Falling back to the PyTorch-native implementation of top-p & top-k sampling",
        V(flashinfer) when it logs "Using FlashInfer for top-p & top-k sampling".
    type: str
    choices: [auto, pytorch, flashinfer, triton, v2]
    default: auto
  memory_margin:
    description:
      - Extra memory per GPU to keep out of the KV cache (a size such as V(1GiB)), beyond what vLLM itself subtracts.
        Unset, none; the plan predicts what vLLM will allocate, and the vllm role checks the prediction against the engine log.
    type: str
  enforce:
    description:
      - Fail the task when the model does not fit. With V(false), return RV(fits=false) and the reason.
      - O(fail_on_unfit) is the old name; it will be removed in 2.0.0.
    type: bool
    default: true
    aliases: [fail_on_unfit]
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Weight bytes are exact when read from safetensors or GGUF headers. The KV cache token figure is vLLM's own arithmetic
    (checked equal to vLLM-CPU 0.32's logged capacity). On GPUs the available memory is predicted from rules per vLLM version;
    docs/serving_plan.md gives the error of each rule against public start-up logs.
seealso:
  - module: llmops.inference.gpu_validate
    description: Reads the GPUs (total and driver-reserved memory) that this module sizes against.
  - module: llmops.inference.model_fetch
    description: Fetches the model whose files this module reads.
  - name: vLLM engine arguments
    description: The arguments RV(vllm_args) fills.
    link: https://docs.vllm.ai/en/latest/configuration/engine_args.html
"""

EXAMPLES = r"""
- name: Plan the model on the host's GPUs (facts from gpu_validate)
  llmops.inference.serving_plan:
    model_path: /srv/models/Meta-Llama-3-8B-Instruct
    gpus: "{{ ansible_facts.nvidia.gpus }}"
    max_model_len: 8192
    vllm_version: "0.19"
  register: plan

- name: Pass the chosen arguments to vLLM
  ansible.builtin.debug:
    msg: "{{ plan.vllm_args }}"

- name: What does a 70B AWQ model need on 48 GB cards?
  llmops.inference.serving_plan:
    model_config: "{{ lookup('ansible.builtin.file', 'llama3-70b-config.json') | from_json }}"
    parameters: 70.55e9
    quantization: awq
    gpu_memory: 48GiB
    gpu_count: 2
    enforce: false
  register: what_if

- name: Size vLLM-CPU's KV cache
  llmops.inference.serving_plan:
    model_path: /srv/models/smollm2-135m-instruct
    device: cpu
    cpu_kvcache_space: 1
"""

RETURN = r"""
fits:
  description: Whether the model fits with the returned arguments.
  returned: always
  type: bool
reason:
  description: Why it does not fit (null when it fits).
  returned: always
  type: str
suggestions:
  description: What would fit instead (a max_model_len, a tensor_parallel_size, a quantization, an fp8 KV cache).
  returned: always
  type: list
  elements: str
vllm_args:
  description: vLLM arguments, keys named as its CLI flags with underscores (max_model_len, tensor_parallel_size,
    gpu_memory_utilization, max_num_seqs, max_num_batched_tokens, kv_cache_dtype, and pipeline_parallel_size, quantization,
    block_size, enforce_eager when they apply). Empty when it does not fit.
  returned: always
  type: dict
  sample: {"max_model_len": 8192, "tensor_parallel_size": 1, "gpu_memory_utilization": 0.9, "max_num_seqs": 256,
           "max_num_batched_tokens": 2048, "kv_cache_dtype": "auto"}
vllm_env:
  description: Environment for vLLM (C(VLLM_CPU_KVCACHE_SPACE) with O(device=cpu)).
  returned: always
  type: dict
kv_cache_tokens:
  description: KV cache capacity in tokens, as vLLM logs it (C(GPU KV cache size, N tokens)).
  returned: always
  type: int
kv_cache_blocks:
  description: KV cache blocks per GPU (of the smallest pipeline stage).
  returned: always
  type: int
block_size:
  description: KV cache block size in tokens the plan used.
  returned: always
  type: int
kv_bytes_per_token:
  description: KV cache bytes per token per GPU, all layers of the (smallest) pipeline stage.
  returned: always
  type: int
kv_capacity_exact:
  description: Whether RV(kv_cache_tokens) is vLLM's exact arithmetic (false for sliding-window grouping, an estimate).
  returned: always
  type: bool
max_concurrency:
  description: Requests of max_model_len tokens the KV cache holds at once.
  returned: always
  type: float
tensor_parallel_size:
  description: Chosen (or given) tensor-parallel size.
  returned: always
  type: int
pipeline_parallel_size:
  description: The pipeline-parallel size the plan used.
  returned: always
  type: int
max_model_len:
  description: Chosen (or given) context length.
  returned: always
  type: int
gpu_count:
  description: GPUs the plan could use (1 on CPU).
  returned: always
  type: int
gpu_memory:
  description: NVML total memory of the smallest GPU in bytes (null on CPU).
  returned: always
  type: int
vllm_version:
  description: The vLLM version whose accounting rules the plan used (null on CPU).
  returned: always
  type: str
memory:
  description: Bytes per GPU, total (NVML), reserved (driver), cuda_total, requested (cuda_total x utilization), weights,
    activation, non_torch, cudagraph, margin, kv_cache.
  returned: always
  type: dict
model:
  description: The model shape the plan used (architecture, layers, heads, head_dim, dtype, quantization, weight bytes and their source).
  returned: always
  type: dict
explanation:
  description: The plan in readable lines, each figure with its source.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.inference.plugins.module_utils.serving_plan import PlanError, plan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            model_path=dict(type="path"),
            model_config=dict(type="dict"),
            weight_bytes=dict(type="str"),
            parameters=dict(type="float"),
            quantization=dict(type="str", default="auto"),
            dtype=dict(type="str", default="auto", choices=["auto", "bfloat16", "float16", "float32"]),
            device=dict(type="str", default="cuda", choices=["cuda", "cpu", "gpu"]),
            gpus=dict(type="list", elements="raw"),
            gpu_count=dict(type="int"),
            gpu_memory=dict(type="str"),
            cpu_kvcache_space=dict(type="int"),
            max_model_len=dict(type="int"),
            tensor_parallel_size=dict(type="int"),
            pipeline_parallel_size=dict(type="int", default=1),
            gpu_memory_utilization=dict(type="float", default=0.9),
            max_num_seqs=dict(type="int"),
            max_num_batched_tokens=dict(type="int", no_log=False),
            kv_cache_dtype=dict(type="str", default="auto", choices=["auto", "fp8", "fp8_e4m3", "fp8_e5m2"]),
            block_size=dict(type="int"),
            min_concurrency=dict(type="float", default=1.0),
            avg_seq_len=dict(type="int"),
            enforce_eager=dict(type="bool", default=False),
            vllm_version=dict(type="str"),
            sampler=dict(type="str", default="auto", choices=["auto", "pytorch", "flashinfer", "triton", "v2"]),
            memory_margin=dict(type="str"),
            enforce=dict(type="bool", default=True, aliases=["fail_on_unfit"],
                         deprecated_aliases=[dict(name="fail_on_unfit", version="2.0.0", collection_name="llmops.inference")]),
        ),
        mutually_exclusive=[("model_path", "model_config")],
        required_one_of=[("model_path", "model_config")],
        required_if=[("device", "cpu", ("cpu_kvcache_space",))],
        supports_check_mode=True,
    )
    p = module.params
    if p["device"] == "gpu":
        module.deprecate("serving_plan: device=gpu is the old name of device=cuda; use cuda",
                         version="2.0.0", collection_name="llmops.inference")
    keys = ("gpus", "gpu_count", "gpu_memory", "device", "cpu_kvcache_space", "max_model_len", "tensor_parallel_size",
            "pipeline_parallel_size", "gpu_memory_utilization", "max_num_seqs", "max_num_batched_tokens", "kv_cache_dtype",
            "block_size", "min_concurrency", "avg_seq_len", "enforce_eager", "vllm_version", "sampler", "memory_margin")
    try:
        result = plan(model_path=p["model_path"], model_config=p["model_config"], weight_bytes=p["weight_bytes"],
                      parameters=p["parameters"], quantization=p["quantization"], dtype=p["dtype"],
                      **{k: p[k] for k in keys})
    except (PlanError, ValueError, OSError) as exc:
        module.fail_json(msg="serving_plan: %s" % exc)
    result.pop("device", None)
    if not result["fits"] and p["enforce"]:
        module.fail_json(msg="serving_plan: the model does not fit: %s. What would fit: %s"
                         % (result["reason"], "; ".join(result["suggestions"])), changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
