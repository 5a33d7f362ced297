#!/usr/bin/env bash
# Real run of gpu_validate and the preflight role on the GPU host (see docs/gpu_validate.md).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
mkdir -p /tmp/coll/ansible_collections/llmops && ln -sfn "$PWD" /tmp/coll/ansible_collections/llmops/inference
export ANSIBLE_COLLECTIONS_PATH=/tmp/coll ANSIBLE_NOCOLOR=1 ANSIBLE_DEPRECATION_WARNINGS=0 ANSIBLE_LOCAL_TEMP=/tmp/ans-local ANSIBLE_REMOTE_TEMP=/tmp/ans-remote
PY=$(which python3)
{ date -u; echo "python: $PY"; $PY -V; $PY -c "import pynvml; print('pynvml', pynvml.__file__)"; $PY -m pip show nvidia-ml-py 2>/dev/null | head -2
  ansible-playbook --version | head -1; uname -r; grep -E '^(PRETTY_NAME|VERSION_ID)' /etc/os-release; ls /sys/firmware/efi 2>&1 | head -1; which mokutil; } > $OUT/env.txt 2>&1
{ echo '== nvidia-smi --query-gpu (csv)'
  nvidia-smi --query-gpu=index,name,uuid,pci.bus_id,driver_version,memory.total,memory.free,memory.used,compute_cap,persistence_mode,mig.mode.current,ecc.mode.current,ecc.errors.uncorrected.volatile.total,temperature.gpu,power.draw,power.limit,pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max --format=csv
  echo '== one field at a time'
  for f in retired_pages.pending remapped_rows.pending remapped_rows.failure remapped_rows.correctable remapped_rows.uncorrectable clocks_event_reasons.active clocks_throttle_reasons.active fan.speed pcie.link.gen.gpumax temperature.gpu.tlimit enforced.power.limit compute_mode; do
    printf '%s: %s\n' "$f" "$(nvidia-smi --query-gpu=$f --format=csv,noheader 2>&1 | head -1)"; done
  echo '== nvidia-smi --query-compute-apps'; nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv
  echo '== nvidia-smi'; nvidia-smi
  echo '== nvidia-smi -q -d TEMPERATURE,ROW_REMAPPER,PERFORMANCE,POWER,ECC,PAGE_RETIREMENT'; nvidia-smi -q -d TEMPERATURE,ROW_REMAPPER,PERFORMANCE,POWER,ECC,PAGE_RETIREMENT
} > $OUT/nvidia-smi.txt 2>&1
A="-i localhost, -c local -e ansible_python_interpreter=$PY"
ANSIBLE_CALLBACK_RESULT_FORMAT=json ansible localhost $A -m llmops.inference.gpu_validate \
  -a 'min_driver_version=550 min_cuda_driver_version=12.8 min_gpu_count=1 min_memory_mib=80000 min_compute_capability=9.0 mig_mode=disabled fail_on_uncorrected_ecc_errors=true fail_on_pending_row_remap=true min_temperature_margin_c=10 fail_on_foreign_processes=true' > $OUT/gpu_validate.json 2>&1
echo "rc=$?" >> $OUT/gpu_validate.json
ANSIBLE_CALLBACK_RESULT_FORMAT=json ansible localhost $A -m llmops.inference.gpu_validate \
  -a 'min_memory_mib=200000 min_driver_version=999 require_persistence_mode=true min_temperature_margin_c=80' > $OUT/gpu_validate_fail.json 2>&1
echo "rc=$?" >> $OUT/gpu_validate_fail.json
time ansible-playbook $A -e llmops_target_hosts=all -v playbooks/preflight.yml > $OUT/preflight-pass.log 2>&1; echo "rc=$?" >> $OUT/preflight-pass.log
ansible-playbook $A -e llmops_target_hosts=all --check playbooks/preflight.yml -e preflight_gpu_min_memory_mib=200000 -e preflight_gpu_min_driver_version=999.1 -e preflight_min_memory_mb=999999 > $OUT/preflight-fail-check.log 2>&1; echo "rc=$?" >> $OUT/preflight-fail-check.log
python3 -m pytest -q -p no:cacheprovider tests/unit/plugins/module_utils/test_gpu_fake_pynvml.py tests/unit/plugins/module_utils/test_nvml.py tests/unit/plugins/modules/test_gpu_validate.py > $OUT/pytest.txt 2>&1; echo "rc=$?" >> $OUT/pytest.txt
ls -la $OUT
