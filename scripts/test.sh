#!/usr/bin/env bash
# The project's one test command (CI runs it through .ci/run).
#
#   scripts/test.sh                 every stage
#   scripts/test.sh lint unit       only the named stages
#
# It needs root (podman, apt); not root, it runs itself again through sudo.
# Stages: lint (ruff, ansible-lint production profile, antsibull-changelog
# lint, the collection tarball), sanity (ansible-test
# sanity), unit (pytest tests/unit), integration (pytest tests/integration:
# real nginx, HTTP servers and vLLM on loopback), molecule (every scenario
# under molecule/ against the Debian 12 lab image).
# It installs what it needs first (Debian packages, the pinned virtualenv,
# the lab image, the vLLM wheelhouse and the test model), all cached.
source "$(dirname "$0")/lib.sh"

ALL_STAGES=(lint sanity unit integration molecule)
stages=("$@")
[ "${#stages[@]}" -gt 0 ] || stages=("${ALL_STAGES[@]}")
for stage in "${stages[@]}"; do
  [[ " ${ALL_STAGES[*]} " == *" $stage "* ]] || die "unknown stage '$stage' (choose from: ${ALL_STAGES[*]})"
done

# Stages run as `if stage_X`, where bash ignores `set -e`: every step that
# can fail is chained with && or returns explicitly.
stage_lint() {
  ruff check "$REPO_ROOT" && (cd "$REPO_ROOT" && ansible-lint --profile production) \
    && (cd "$REPO_ROOT" && antsibull-changelog lint) && build_collection
}

# `ansible-galaxy collection build` must give a tarball that installs and
# whose modules' documentation renders.
build_collection() {
  local out tarball module
  out=$(mktemp -d)
  (cd "$REPO_ROOT" && ansible-galaxy collection build --force --output-path "$out" >/dev/null) || return 1
  tarball=$(ls "$out"/llmops-inference-*.tar.gz) || return 1
  ansible-galaxy collection install --force --no-deps -p "$out/installed" "$tarball" >/dev/null 2>&1 || return 1
  for module in "$REPO_ROOT"/plugins/modules/*.py; do
    module=$(basename "$module" .py)
    # ansible-doc exits 0 for an unknown module; its JSON is empty then.
    ANSIBLE_COLLECTIONS_PATH="$out/installed" ansible-doc --json "llmops.inference.$module" 2>/dev/null \
      | grep -q '"short_description"' || { echo "ansible-doc cannot render $module from the built tarball" >&2; return 1; }
  done
  echo "built and installed $(basename "$tarball") ($(du -h "$tarball" | cut -f1))"
  rm -rf "$out"
}

stage_sanity() {
  # ansible-test wants the collection at ansible_collections/NS/NAME, outside
  # any git work tree that ignores it; copy the tracked and new files there.
  local top root pip_version
  top=$(mktemp -d /tmp/llmops-sanity.XXXXXX)
  root="$top/ansible_collections/llmops/inference"
  mkdir -p "$root"
  (cd "$REPO_ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$root") || return 1
  # Its pip bootstrap script comes from a host only Ansible's CI reaches.
  pip_version=$(python -c 'import ansible_test._internal.python_requirements as r, inspect, re; print(re.search(r"pip=.([0-9.]+).", inspect.getsource(r)).group(1))')
  [ -n "$pip_version" ] || return 1
  mkdir -p ~/.ansible/test/cache
  cp "$REPO_ROOT/scripts/ansible_test_get_pip.py" ~/.ansible/test/cache/get_pip_"${pip_version//./_}".py || return 1
  (cd "$root" && ansible-test sanity --python "$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
     --requirements --color no)
  local rc=$?
  rm -rf "$top"
  return "$rc"
}

stage_unit() {
  (cd "$REPO_ROOT" && pytest tests/unit -q -p no:cacheprovider)
}

stage_integration() {
  (cd "$REPO_ROOT" && pytest tests/integration -q -p no:cacheprovider)
}

stage_molecule() {
  local scenario failures=0 scenarios=()
  # LLMOPS_MOLECULE_SCENARIOS="fleet nginx_mtls" runs only those.
  if [ -n "${LLMOPS_MOLECULE_SCENARIOS:-}" ]; then
    read -r -a scenarios <<<"$LLMOPS_MOLECULE_SCENARIOS"
  else
    for scenario in "$REPO_ROOT"/molecule/*/; do
      scenarios+=("$(basename "$scenario")")
    done
  fi
  for scenario in "${scenarios[@]}"; do
    log "molecule test -s $scenario"
    (cd "$REPO_ROOT" && molecule test -s "$scenario") || failures=$((failures + 1))
  done
  [ "$failures" -eq 0 ]
}

require_root "$@"
TEST_STARTED=$(date +%s)
mkdir -p "$CACHE_DIR"
log "preparing: Debian packages, virtualenv, lab image, wheelhouse, test model"
install_host_packages
install_venv
activate_venv
# The lab inventory compiles its model like production (torch.compile), which
# costs minutes per vLLM start on 2 cores; CI starts vLLM in several places
# and runs it eager (benchmarks/serving/results.md, "CI").
export LLMOPS_LAB_EAGER="${LLMOPS_LAB_EAGER:-1}"
# Tests fail rather than skip when what they need is missing (CI=true, see
# tests/conftest.py), so every stage gets its prerequisites here.
needs_lab_assets=false
needs_test_model=false
for stage in "${stages[@]}"; do
  case "$stage" in integration|molecule) needs_lab_assets=true ;; esac
  case "$stage" in unit|integration|molecule) needs_test_model=true ;; esac
done
if $needs_lab_assets; then
  build_lab_image
  prepare_wheelhouse
  build_lab_vllm_image
fi
if $needs_test_model; then
  prepare_test_model
fi

passed=()
failed=()
timings=()
for stage in "${stages[@]}"; do
  log "stage: $stage"
  started=$(date +%s)
  if ("stage_$stage"); then
    passed+=("$stage")
    result=passed
  else
    failed+=("$stage")
    result=FAILED
  fi
  seconds=$(( $(date +%s) - started ))
  timings+=("$stage ${seconds}s")
  log "stage $stage $result in $seconds s"
done

echo
[ "${#failed[@]}" -eq 0 ] || echo "failed stages: ${failed[*]}"
echo "stages: ${#passed[@]} passed, ${#failed[@]} failed in $(( $(date +%s) - TEST_STARTED )) s (${timings[*]})"
[ "${#failed[@]}" -eq 0 ]
