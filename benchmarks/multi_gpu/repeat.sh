#!/usr/bin/env bash
# Second look on a multi-GPU host (run by the device tool from the repository root):
# gpu_validate's fabric facts next to `nvidia-smi -q`'s Fabric section, and
# ROUNDS alternating runs of gpu_fabric_test and the plain torchrun loop, to see
# how much each moves between runs at each size.
set -u
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # NVLink multicast stays off here
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl-gpu17/*.whl || exit 1
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
mkdir -p /tmp/coll/ansible_collections/llmops && ln -sfn "$PWD" /tmp/coll/ansible_collections/llmops/inference
export ANSIBLE_COLLECTIONS_PATH=/tmp/coll ANSIBLE_NOCOLOR=1 ANSIBLE_LOCAL_TEMP=/tmp/ans-local ANSIBLE_REMOTE_TEMP=/tmp/ans-remote
PY=$(which python3)
N=$(nvidia-smi -L | grep -c '^GPU ')
B=benchmarks/multi_gpu
A="-i localhost, -c local -e ansible_python_interpreter=$PY"
{ nvidia-smi -L; nvidia-smi -q | grep -E -A3 '^GPU |^    Fabric$'; } > $OUT/nvidia-smi-fabric.txt 2>&1
ANSIBLE_CALLBACK_RESULT_FORMAT=json ansible localhost $A -m llmops.inference.gpu_validate -a 'require_fabric_manager=true enforce=false' > $OUT/gpu_validate_fabric.json 2>&1
for round in $(seq 1 ${ROUNDS:-3}); do
  ANSIBLE_CALLBACK_RESULT_FORMAT=json ansible localhost $A -m llmops.inference.gpu_fabric_test -a "python=$PY iterations=${ITERS:-50}" > /tmp/module.out 2>&1
  sed -n '/=> {/,$p' /tmp/module.out | sed '1s/^.*=> {/{/' > /tmp/module-$round.json
  PLAIN_ITERS=${ITERS:-50} timeout 240 $PY -m torch.distributed.run --standalone --nproc-per-node=$N $B/plain_allreduce.py /tmp/plain-$round.json > /tmp/plain.out 2>&1
  { echo "== round $round (module first, then plain; $N GPUs, ${ITERS:-50} iterations)"; $PY $B/compare.py /tmp/module-$round.json /tmp/plain-$round.json; } >> $OUT/repeat.txt 2>&1 || { tail -20 /tmp/module.out /tmp/plain.out >> $OUT/repeat.txt; }
done
{ echo "== spread between rounds, busbw GB/s per size"; $PY - <<'PY'
import glob, json
for kind in ("module", "plain"):
    runs = [json.load(open(p)) for p in sorted(glob.glob("/tmp/%s-*.json" % kind))]
    for size in [row["size_bytes"] for row in runs[0]["results"]]:
        values = [next(r["busbw_gbps"] for r in run["results"] if r["size_bytes"] == size) for run in runs]
        print("%-6s %11d  %s  spread %.1f%%" % (kind, size, " ".join("%7.2f" % v for v in values), 100 * (max(values) - min(values)) / min(values)))
PY
} >> $OUT/repeat.txt 2>&1
cat $OUT/repeat.txt; grep -E 'fabric_(state|status)"|"msg"' $OUT/gpu_validate_fabric.json | head -12; grep -A3 'Fabric$' $OUT/nvidia-smi-fabric.txt | head -8
