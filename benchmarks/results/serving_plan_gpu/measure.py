"""GPU memory facts serving_plan's model needs, measured without vLLM (torch + NVML only).

Run on the GPU host:  /opt/torch/.venv/bin/python measure.py > measure.json
Each step prints one JSON line; figures are bytes unless named _mib.
"""
import json
import os
import time

import pynvml

MiB = 1 << 20


def emit(step, **kw):
    kw["step"] = step
    print(json.dumps(kw), flush=True)


pynvml.nvmlInit()
h = pynvml.nvmlDeviceGetHandleByIndex(0)


def nvml():
    try:
        m = pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
        return {"nvml_total": m.total, "nvml_reserved": m.reserved, "nvml_used": m.used, "nvml_free": m.free}
    except Exception as exc:  # older bindings
        m = pynvml.nvmlDeviceGetMemoryInfo(h)
        return {"nvml_total": m.total, "nvml_used": m.used, "nvml_free": m.free, "v2_error": repr(exc)}


emit("nvml_before_cuda", name=pynvml.nvmlDeviceGetName(h), driver=pynvml.nvmlSystemGetDriverVersion(), **nvml())

import torch  # noqa: E402

emit("versions", torch=torch.__version__, cuda=torch.version.cuda, nccl=".".join(map(str, torch.cuda.nccl.version())))
t0 = time.time()
torch.cuda.init()
torch.cuda.set_device(0)
free, total = torch.cuda.mem_get_info()
n = nvml()
emit("after_cuda_context", cuda_free=free, cuda_total=total, torch_reserved=torch.cuda.memory_reserved(),
     gap_nvml_minus_cuda_total=n["nvml_total"] - total, init_s=round(time.time() - t0, 2), **n)
base_used = total - free


def snap(step, **extra):
    torch.cuda.synchronize()
    f, t = torch.cuda.mem_get_info()
    used = t - f
    res = torch.cuda.memory_reserved()
    emit(step, cuda_used=used, torch_reserved=res, torch_allocated=torch.cuda.memory_allocated(),
         torch_peak_allocated=torch.cuda.max_memory_allocated(), non_torch=used - res,
         non_torch_over_context=used - res - base_used, **extra, **nvml())


x = torch.empty(1, device="cuda")
snap("first_tensor")
a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
b = a @ a  # cuBLAS handle + workspace
snap("after_cublas_bf16_matmul")
c = torch.nn.functional.linear(a, a)  # cuBLASLt path
snap("after_cublaslt_linear")
del b, c

# NCCL with world size 1: its communicator and buffers are non-torch memory.
os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("MASTER_PORT", "29555")
try:
    import torch.distributed as dist
    dist.init_process_group("nccl", rank=0, world_size=1, device_id=torch.device("cuda:0"))
    t = torch.ones(1 << 20, device="cuda")
    dist.all_reduce(t)
    snap("after_nccl_world1_allreduce")
except Exception as exc:
    emit("nccl_error", error=repr(exc))

# The sampler's dummy pass in vLLM's profile_run works on float32 logits of
# max_num_seqs x vocab; measure torch's peak for the same shape through the
# ops a sampler uses (softmax, log_softmax, top-k/top-p sort, argmax).
for seqs, vocab in ((256, 152064), (1024, 152064), (1024, 128256)):
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated()
    logits = torch.randn(seqs, vocab, device="cuda", dtype=torch.bfloat16).float()
    probs = torch.softmax(logits, dim=-1)
    logp = torch.log_softmax(logits, dim=-1)
    srt, idx = torch.sort(logits, dim=-1, descending=True)
    cum = torch.cumsum(torch.softmax(srt, dim=-1), dim=-1)
    tok = torch.argmax(probs, dim=-1)
    peak = torch.cuda.max_memory_allocated() - start
    emit("sampler_like_peak", max_num_seqs=seqs, vocab=vocab, peak=peak,
         logits_fp32=seqs * vocab * 4, copies=round(peak / (seqs * vocab * 4.0), 2))
    del logits, probs, logp, srt, idx, cum, tok

# CUDA graph capture of a small MLP stack: graph memory pool size.
torch.cuda.empty_cache()
lin = [torch.nn.Linear(4096, 4096, device="cuda", dtype=torch.bfloat16) for _layer in range(8)]
inp = torch.randn(256, 4096, device="cuda", dtype=torch.bfloat16)
s = torch.cuda.Stream()
s.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(s):
    for _warmup in range(3):
        y = inp
        for m in lin:
            y = m(y)
torch.cuda.current_stream().wait_stream(s)
before = torch.cuda.mem_get_info()[0]
g = torch.cuda.CUDAGraph()
with torch.cuda.graph(g):
    y = inp
    for m in lin:
        y = m(y)
after = torch.cuda.mem_get_info()[0]
snap("after_cudagraph_capture_8_linear_256_tokens", graph_free_delta=before - after)
emit("done")
