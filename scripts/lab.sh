#!/usr/bin/env bash
# The lab: local Debian 12 hosts (podman containers running systemd) that
# the collection configures exactly as it would GPU servers, with vLLM's CPU
# build and a real 135M-parameter instruct model.
#
#   sudo scripts/lab.sh up [--fleet]    install what is missing, start the lab,
#                                       run site.yml, ask the model a question
#   sudo scripts/lab.sh down [--fleet]  remove the lab hosts (caches stay in .cache/)
#   sudo scripts/lab.sh ask [--fleet] "QUESTION"
#
# Default: one host (llmops-lab) that is inference host, gateway and
# monitoring host at once (inventories/lab). --fleet: two inference hosts and
# a gateway (llmops-fleet-inf1, -inf2, -gw) on the podman network
# llmops-fleet, configured by the root site.yml with inventories/fleet_lab
# (inventories/example with the host names replaced, plus the lab overlay
# files zz_lab.yml); only the gateway's 443 is published, on
# 127.0.0.1:$LLMOPS_FLEET_PORT (8643).
source "$(dirname "$0")/lib.sh"

LAB_NAME="${LLMOPS_LAB_NAME:-llmops-lab}"
LAB_PORT="${LLMOPS_LAB_PORT:-8443}"
FLEET_PREFIX="${LLMOPS_FLEET_PREFIX:-llmops-fleet}"
FLEET_PORT="${LLMOPS_FLEET_PORT:-8643}"

fleet=false
args=()
for arg in "$@"; do
  if [ "$arg" = "--fleet" ]; then fleet=true; else args+=("$arg"); fi
done
set -- "${args[@]+"${args[@]}"}"

# start_host NAME [podman run options...]: a systemd container of the baked
# lab image (vLLM already installed), unless it is running.
start_host() {
  local name="$1"
  shift
  if [ "$(podman container inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" = "true" ]; then
    return 0
  fi
  podman rm -f "$name" >/dev/null 2>&1 || true
  local cgroup_opts
  mapfile -t cgroup_opts < <(lab_cgroup_opts)
  # vLLM's engine and API server exchange tensors through /dev/shm (160 MiB
  # and more); podman's default of 64 MiB is too small.
  podman run -d --name "$name" --hostname "$name" --systemd=always --shm-size=1g \
    --volume "$WHEELHOUSE:/srv/llmops/wheelhouse:ro" \
    --volume "$CACHE_DIR/models:/srv/llmops/models:ro" \
    "${cgroup_opts[@]+"${cgroup_opts[@]}"}" "$@" "$LAB_VLLM_IMAGE" >/dev/null
}

# systemd inside reports "degraded" for units that cannot run in a container;
# what matters is that it finished booting.
wait_booted() {
  local name
  for name in "$@"; do
    podman exec "$name" systemctl is-system-running --wait >/dev/null 2>&1 || true
  done
}

start_lab_host() {
  log "starting the lab host $LAB_NAME (its gateway published on 127.0.0.1:$LAB_PORT only)"
  start_host "$LAB_NAME" --publish "127.0.0.1:$LAB_PORT:443"
  wait_booted "$LAB_NAME"
}

# Two inference hosts and a gateway on a network of their own. NET_ADMIN lets
# the role load nftables rules in each container's own network namespace.
start_fleet() {
  podman network exists "$FLEET_PREFIX" || podman network create "$FLEET_PREFIX" >/dev/null
  log "starting the fleet lab on the podman network $FLEET_PREFIX (gateway published on 127.0.0.1:$FLEET_PORT only)"
  start_host "$FLEET_PREFIX-inf1" --network "$FLEET_PREFIX" --cap-add NET_ADMIN
  start_host "$FLEET_PREFIX-inf2" --network "$FLEET_PREFIX" --cap-add NET_ADMIN
  start_host "$FLEET_PREFIX-gw" --network "$FLEET_PREFIX" --cap-add NET_ADMIN --publish "127.0.0.1:$FLEET_PORT:443"
  wait_booted "$FLEET_PREFIX-inf1" "$FLEET_PREFIX-inf2" "$FLEET_PREFIX-gw"
}

if $fleet; then
  STATE="$CACHE_DIR/fleet-lab"
  PORT="$FLEET_PORT"
  CLIENT=app
  KEY_FILE="$STATE/gateway_api_key"
  INVENTORY=inventories/fleet_lab
else
  STATE="$CACHE_DIR/lab"
  PORT="$LAB_PORT"
  CLIENT=lab
  KEY_FILE="$STATE/proxy_api_key"
  INVENTORY=inventories/lab
fi
PKI="$STATE/pki/clients"

ask() {
  "$VENV/bin/python" "$REPO_ROOT/scripts/ask.py" \
    --base-url "https://127.0.0.1:$PORT/v1" \
    --api-key-file "$KEY_FILE" \
    --ca "$PKI/ca.crt" --cert "$PKI/$CLIENT.crt" --key "$PKI/$CLIENT.key" "$@"
}

cmd="${1:-}"
case "$cmd" in
  up)
    require_root "$@" $($fleet && echo --fleet)
    started=$(date +%s)
    mkdir -p "$STATE"
    install_host_packages
    install_venv
    activate_venv
    prepare_wheelhouse
    prepare_test_model
    build_lab_vllm_image
    if $fleet; then start_fleet; else start_lab_host; fi
    log "configuring the lab: ansible-playbook -i $INVENTORY site.yml"
    (cd "$REPO_ROOT" && LLMOPS_FLEET_STATE_DIR="$STATE" ansible-playbook -i "$INVENTORY" site.yml)
    log "lab ready in $(( $(date +%s) - started )) s"
    echo "Endpoint:  https://127.0.0.1:$PORT/v1   (model: smollm2-135m-instruct, through the mTLS gateway)"
    echo "Client:    certificate $PKI/$CLIENT.crt, key $PKI/$CLIENT.key, CA $PKI/ca.crt"
    echo "API key:   in $KEY_FILE (mode 0600)"
    echo "Question:  What is the capital of France?"
    printf 'Answer:    '
    ask --stream "What is the capital of France?"
    ;;
  ask)
    shift
    ask "$@"
    ;;
  down)
    require_root "$@" $($fleet && echo --fleet)
    if $fleet; then
      podman rm -f "$FLEET_PREFIX-gw" "$FLEET_PREFIX-inf1" "$FLEET_PREFIX-inf2" >/dev/null 2>&1 || true
      podman network rm "$FLEET_PREFIX" >/dev/null 2>&1 || true
      log "fleet lab removed; caches kept in $CACHE_DIR (delete it to start over)"
    else
      podman rm -f "$LAB_NAME" >/dev/null 2>&1 || true
      log "lab host $LAB_NAME removed; caches kept in $CACHE_DIR (delete it to start over)"
    fi
    ;;
  *)
    echo "usage: $0 up|down [--fleet] | ask [--fleet] QUESTION" >&2
    exit 2
    ;;
esac
