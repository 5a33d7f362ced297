#!/usr/bin/env bash
# The lab: a local Debian 12 host (a podman container running systemd) that
# the collection configures exactly as it would a GPU server, with vLLM's CPU
# build and a real 135M-parameter instruct model.
#
#   sudo scripts/lab.sh up      install what is missing, start the lab host,
#                               run playbooks/site.yml, ask the model a question
#   sudo scripts/lab.sh down    remove the lab host (caches stay in .cache/)
#   sudo scripts/lab.sh ask "QUESTION"
source "$(dirname "$0")/lib.sh"

LAB_NAME="${LLMOPS_LAB_NAME:-llmops-lab}"
LAB_PORT="${LLMOPS_LAB_PORT:-8443}"

start_lab_host() {
  if [ "$(podman container inspect -f '{{.State.Running}}' "$LAB_NAME" 2>/dev/null)" = "true" ]; then
    return 0
  fi
  podman rm -f "$LAB_NAME" >/dev/null 2>&1 || true
  log "starting the lab host $LAB_NAME (its proxy published on 127.0.0.1:$LAB_PORT only)"
  # vLLM's engine and API server exchange tensors through /dev/shm (160 MiB
  # and more); podman's default of 64 MiB is too small.
  podman run -d --name "$LAB_NAME" --hostname "$LAB_NAME" --systemd=always --shm-size=1g \
    --publish "127.0.0.1:$LAB_PORT:443" \
    --volume "$WHEELHOUSE:/srv/llmops/wheelhouse:ro" \
    --volume "$CACHE_DIR/models:/srv/llmops/models:ro" \
    "$LAB_IMAGE" >/dev/null
  # systemd inside reports "degraded" for units that cannot run in a
  # container; what matters is that it finished booting.
  podman exec "$LAB_NAME" systemctl is-system-running --wait >/dev/null 2>&1 || true
}

PKI="$CACHE_DIR/lab/pki/clients"

ask() {
  "$VENV/bin/python" "$REPO_ROOT/scripts/ask.py" \
    --base-url "https://127.0.0.1:$LAB_PORT/v1" \
    --api-key-file "$CACHE_DIR/lab/proxy_api_key" \
    --ca "$PKI/ca.crt" --cert "$PKI/lab.crt" --key "$PKI/lab.key" "$@"
}

cmd="${1:-}"
case "$cmd" in
  up)
    require_root "$@"
    started=$(date +%s)
    mkdir -p "$CACHE_DIR/lab"
    install_host_packages
    install_venv
    activate_venv
    build_lab_image
    prepare_wheelhouse
    prepare_test_model
    start_lab_host
    log "configuring the lab host: ansible-playbook -i inventories/lab playbooks/site.yml"
    (cd "$REPO_ROOT" && ansible-playbook -i inventories/lab playbooks/site.yml)
    log "lab ready in $(( $(date +%s) - started )) s"
    echo "Endpoint:  https://127.0.0.1:$LAB_PORT/v1   (model: smollm2-135m-instruct, through the mTLS proxy)"
    echo "Client:    certificate $PKI/lab.crt, key $PKI/lab.key, CA $PKI/ca.crt"
    echo "API key:   in $CACHE_DIR/lab/proxy_api_key (mode 0600)"
    echo "Question:  What is the capital of France?"
    printf 'Answer:    '
    ask --stream "What is the capital of France?"
    ;;
  ask)
    shift
    ask "$@"
    ;;
  down)
    require_root "$@"
    podman rm -f "$LAB_NAME" >/dev/null 2>&1 || true
    log "lab host $LAB_NAME removed; caches kept in $CACHE_DIR (delete it to start over)"
    ;;
  *)
    echo "usage: $0 up|down|ask QUESTION" >&2
    exit 2
    ;;
esac
