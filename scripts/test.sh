#!/usr/bin/env bash
# The project's one test command (CI runs it through .ci/run).
#
#   sudo scripts/test.sh                 every stage
#   sudo scripts/test.sh lint unit       only the named stages
#
# Stages: lint (ruff, ansible-lint production profile), sanity (ansible-test
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

stage_lint() {
  ruff check "$REPO_ROOT"
  (cd "$REPO_ROOT" && ansible-lint --profile production)
}

stage_sanity() {
  # ansible-test wants the collection at ansible_collections/NS/NAME; copy the
  # tracked files there so untracked caches stay out of the test.
  local root="$CACHE_DIR/sanity/ansible_collections/llmops/inference"
  rm -rf "$root" && mkdir -p "$root"
  (cd "$REPO_ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$root" 2>/dev/null || true)
  (cd "$root" && ansible-test sanity --python "$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
     --requirements --color no)
}

stage_unit() {
  (cd "$REPO_ROOT" && pytest tests/unit -q -p no:cacheprovider)
}

stage_integration() {
  (cd "$REPO_ROOT" && pytest tests/integration -q -p no:cacheprovider)
}

stage_molecule() {
  local scenario
  for scenario in "$REPO_ROOT"/molecule/*/; do
    scenario=$(basename "$scenario")
    log "molecule test -s $scenario"
    (cd "$REPO_ROOT" && molecule test -s "$scenario")
  done
}

require_root "$@"
mkdir -p "$CACHE_DIR"
log "preparing: Debian packages, virtualenv, lab image, wheelhouse, test model"
install_host_packages
install_venv
activate_venv
needs_lab_assets=false
for stage in "${stages[@]}"; do
  case "$stage" in integration|molecule) needs_lab_assets=true ;; esac
done
if $needs_lab_assets; then
  build_lab_image
  prepare_wheelhouse
  prepare_test_model
fi

passed=()
failed=()
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
  log "stage $stage $result in $(( $(date +%s) - started )) s"
done

echo
[ "${#failed[@]}" -eq 0 ] || echo "failed stages: ${failed[*]}"
echo "stages: ${#passed[@]} passed, ${#failed[@]} failed"
[ "${#failed[@]}" -eq 0 ]
