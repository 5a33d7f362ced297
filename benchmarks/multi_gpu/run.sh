#!/usr/bin/env bash
# Real run on a multi-GPU host (run by the device tool from the repository root;
# $OUT comes back). Ansible travels as wheels in .whl-gpu17 (see docs/multi_gpu.md).
# Arguments: placement layouts (JSON lists of vllm_models entries). ITERS: timed
# all-reduces per size for both the module and the plain loop (default 20).
set -u
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # NVLink multicast stays off here
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl-gpu17/*.whl || exit 1
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
mkdir -p /tmp/coll/ansible_collections/llmops && ln -sfn "$PWD" /tmp/coll/ansible_collections/llmops/inference
export ANSIBLE_COLLECTIONS_PATH=/tmp/coll ANSIBLE_NOCOLOR=1 ANSIBLE_LOCAL_TEMP=/tmp/ans-local ANSIBLE_REMOTE_TEMP=/tmp/ans-remote
PY=$(which python3)
N=$(nvidia-smi -L | grep -c '^GPU ')
B=benchmarks/multi_gpu
{ date -u; echo "python: $PY"; $PY -V; $PY -c "import torch; print('torch', torch.__version__, 'nccl', torch.cuda.nccl.version(), 'gpus', torch.cuda.device_count())"
  $PY -c "import pynvml; print('pynvml', pynvml.__file__)"; ansible-playbook --version | head -1; uname -r; nproc; nvidia-smi -L
  env | grep -E '^(NCCL|TORCH_SYMM|NVSHMEM)_' | sort; } > $OUT/env.txt 2>&1
{ for c in "topo -m" "nvlink --status" "nvlink -p" "nvlink -R" "nvlink -c -i 0"; do echo "== nvidia-smi $c"; nvidia-smi $c 2>&1; done
  echo "== nvidia-smi -q (fabric, NUMA, bus)"; nvidia-smi -q | grep -iE -A4 '^GPU 0|fabric|numa|Bus Id' ; } > $OUT/nvidia-smi.txt 2>&1
A="-i localhost, -c local -e ansible_python_interpreter=$PY"
time ansible-playbook $A -e out_dir=$OUT -e gpu_total=$N -e fabric_python=$PY -e fabric_iterations=${ITERS:-20} -v $B/multi_gpu.yml > $OUT/playbook.log 2>&1; echo "rc=$?" >> $OUT/playbook.log
PLAIN_ITERS=${ITERS:-20} timeout 240 $PY -m torch.distributed.run --standalone --nproc-per-node=$N $B/plain_allreduce.py /tmp/plain.json > $OUT/plain_allreduce.txt 2>&1; echo "rc=$?" >> $OUT/plain_allreduce.txt
{ echo "== compare (gpu_fabric_test vs plain loop)"; $PY $B/compare.py $OUT/fabric_test.json /tmp/plain.json; echo "== plain loop JSON"; cat /tmp/plain.json; } >> $OUT/plain_allreduce.txt 2>&1
{ for layout in "$@"; do echo "==== layout: $layout"; ansible-playbook $A -e "{\"layout\": $layout}" $B/placement.yml 2>&1; echo "rc=$?"; done; } > $OUT/placement.log 2>&1
$PY -m pytest -q -p no:cacheprovider tests/unit/plugins/module_utils/test_gpu_fake_pynvml.py tests/unit/plugins/module_utils/test_nvml.py tests/unit/plugins/module_utils/test_nvml_topology.py tests/unit/plugins/module_utils/test_gpu_placement.py tests/unit/plugins/modules/test_gpu_validate.py > /tmp/pytest.txt 2>&1; echo "rc=$?" >> /tmp/pytest.txt
{ echo "== pytest (unit tests with the real pynvml on this host)"; cat /tmp/pytest.txt; } >> $OUT/env.txt
cat $OUT/plain_allreduce.txt; grep -E '"msg"|rc=' $OUT/playbook.log | head -20; grep -E 'CUDA_VISIBLE|vllm_models\[|rc=' $OUT/placement.log | head -40; tail -2 /tmp/pytest.txt; ls -la $OUT
