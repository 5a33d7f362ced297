#!/usr/bin/env bash
# Real runs on the GPU host (Ubuntu 24.04, H100, driver managed by the image,
# no network, no systemd): nvidia_driver in verify mode through
# playbooks/gpu_stack.yml, pinned to the loaded branch (passes) and to
# another (reported as a mismatch), plus cuda_toolkit's driver check.
# Started from the repository root with .whl/ carried (docs/gpu_stack.md).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
mkdir -p /tmp/coll/ansible_collections/llmops && ln -sfn "$PWD" /tmp/coll/ansible_collections/llmops/inference
export ANSIBLE_COLLECTIONS_PATH=/tmp/coll ANSIBLE_NOCOLOR=1 ANSIBLE_DEPRECATION_WARNINGS=0 ANSIBLE_LOCAL_TEMP=/tmp/ans-local ANSIBLE_REMOTE_TEMP=/tmp/ans-remote
PY=$(which python3)
# Root already, local connection: no sudo needed (and none may exist).
A="-i localhost, -c local -e ansible_python_interpreter=$PY -e ansible_become=false -e llmops_target_hosts=all"
R=benchmarks/results/gpu_stack_h100
{ date -u; echo "python: $PY"; ansible-playbook --version | head -1; uname -r; grep -E '^(PRETTY_NAME|VERSION_ID)' /etc/os-release
  echo '== /proc/driver/nvidia/version'; cat /proc/driver/nvidia/version
  echo '== /sys/module/nvidia/version'; cat /sys/module/nvidia/version
  echo '== container markers, PID 1, virt'; ls -la /run/.containerenv /.dockerenv; cat /proc/1/comm; systemd-detect-virt
  echo '== nvidia-smi'; nvidia-smi --query-gpu=driver_version,name --format=csv,noheader
  echo '== driver packages (dpkg)'; dpkg -l 2>/dev/null | grep -Ei 'nvidia|cuda' | awk '{print $1, $2, $3}' | head -40
  echo '== apt holds'; apt-mark showhold
} > $OUT/env.txt 2>&1
touch /tmp/gpu-stack-marker; sleep 1
{ time ansible-playbook $A -v -e nvidia_driver_mode=verify -e nvidia_driver_branch=580 playbooks/gpu_stack.yml; } > $OUT/verify-580-pass.log 2>&1
echo "rc=$?" >> $OUT/verify-580-pass.log
{ time ansible-playbook $A -e nvidia_driver_mode=verify -e nvidia_driver_branch=570 playbooks/gpu_stack.yml; } > $OUT/verify-570-mismatch.log 2>&1
echo "rc=$?" >> $OUT/verify-570-mismatch.log
{ ansible-playbook $A -e nvidia_driver_mode=verify -e nvidia_driver_branch=580 -e nvidia_driver_version=580.95.05 playbooks/gpu_stack.yml
  echo "rc=$?"
  echo '== check mode, branch 580'; ansible-playbook $A --check --diff -e nvidia_driver_mode=verify playbooks/gpu_stack.yml; echo "rc=$?"
} > $OUT/verify-exact-and-check.log 2>&1
{ for v in 12.8 13.0; do ansible-playbook $A -e cuda_version=$v $R/cuda_driver_check.yml; echo "rc=$?"; done
  echo '== 13.0 with a table that wants 590 (mismatch message)'
  ansible-playbook $A -e cuda_version=13.0 -e '{"cuda_toolkit_min_driver_overrides": {"13.0": "590.44.01"}}' $R/cuda_driver_check.yml; echo "rc=$?"
} > $OUT/cuda-driver-check.log 2>&1
# Nothing under /etc, /usr, /var/lib/dpkg or /boot changed during the runs.
find /etc /usr /var/lib/dpkg /var/lib/apt /boot -xdev -newer /tmp/gpu-stack-marker 2>/dev/null > $OUT/changed-files.txt
echo "files changed under /etc /usr /var/lib/dpkg /var/lib/apt /boot: $(wc -l < $OUT/changed-files.txt)" >> $OUT/changed-files.txt
ls -la $OUT
