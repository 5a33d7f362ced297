#!/usr/bin/env bash
# Run bench.py inside the proxy's container (both paths on its loopback).
#
# Against the nginx_mtls molecule scenario (fake SSE upstream, after
# `molecule converge -s nginx_mtls`):
#   benchmarks/nginx_mtls/run.sh
# Against the lab with real vLLM (after the lead wires nginx_mtls into the lab):
#   CONTAINER=llmops-lab DIRECT="http://127.0.0.1:8000" MODEL=smollm2-135m-instruct \
#   PKI_DIR=~/.llmops/pki/nginx_mtls CLIENT=lab-client API_KEY_FILE=/path/to/key \
#   UPSTREAM_KEY_FILE=/path/to/vllm_api_key RAISE_LIMITS=0 benchmarks/nginx_mtls/run.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO/scripts/containers.conf}"
CONTAINER="${CONTAINER:-nginx-mtls-instance}"
DIRECT="${DIRECT:-http://127.0.0.1:8001 http://127.0.0.1:8002}"
PROXY="${PROXY:-https://127.0.0.1:443}"
MODEL="${MODEL:-test-model}"
CLIENT="${CLIENT:-alice}"
LEVELS="${LEVELS:-1,8,32}"
REQUESTS="${REQUESTS:-20,8,4}"
MAX_TOKENS="${MAX_TOKENS:-64}"
EXTRA_BODY="${EXTRA_BODY:-}"
[ -n "$EXTRA_BODY" ] || EXTRA_BODY='{"fake_token_delay": 0.02}'  # the fake upstream's pace: 50 tok/s per stream
OUT="${OUT:-$HERE/results-$(date -u +%Y%m%dT%H%M%SZ).json}"

if [ -z "${PKI_DIR:-}" ]; then
  PKI_DIR="$(ls -d /root/.ansible/tmp/molecule.*.nginx_mtls/pki 2>/dev/null | head -n1)"
fi
[ -d "$PKI_DIR" ] || { echo "PKI_DIR not found; set PKI_DIR" >&2; exit 1; }

if [ "${RAISE_LIMITS:-1}" = 1 ]; then
  # The scenario caps a key at 4 streams and 10 r/s (to test 429); the
  # benchmark measures the proxy, not its limits.
  inv="$(dirname "$PKI_DIR")/inventory"
  MOLECULE_EPHEMERAL_DIRECTORY="$(dirname "$PKI_DIR")" ANSIBLE_COLLECTIONS_PATH="$REPO/.cache/collections" \
    "$REPO/.venv/bin/ansible-playbook" -i "$inv" "$REPO/molecule/nginx_mtls/converge.yml" \
    -e nginx_mtls_max_streams_per_key=256 -e nginx_mtls_rate_per_key=1000r/s -e nginx_mtls_burst_per_key=1000 >/dev/null
fi

if [ -z "${API_KEY_FILE:-}" ]; then
  API_KEY_FILE="$(mktemp)"
  "$REPO/.venv/bin/python" -c "import yaml,sys; v=yaml.safe_load(open('$REPO/tests/integration/nginx_mtls/scenario_vars.yml')); print([c['api_key'] for c in v['nginx_mtls_clients'] if c['name']=='$CLIENT'][0])" >"$API_KEY_FILE"
  UPSTREAM_KEY_FILE="${UPSTREAM_KEY_FILE:-}"
fi

podman exec "$CONTAINER" mkdir -p /tmp/bench
podman cp "$HERE/bench.py" "$CONTAINER:/tmp/bench/bench.py"
podman cp "$PKI_DIR/clients/ca.crt" "$CONTAINER:/tmp/bench/ca.crt"
podman cp "$PKI_DIR/clients/$CLIENT.crt" "$CONTAINER:/tmp/bench/client.crt"
podman cp "$PKI_DIR/clients/$CLIENT.key" "$CONTAINER:/tmp/bench/client.key"
podman cp "$API_KEY_FILE" "$CONTAINER:/tmp/bench/api_key"
direct_args=()
for d in $DIRECT; do direct_args+=(--direct "$d"); done
upstream_args=()
if [ -n "${UPSTREAM_KEY_FILE:-}" ]; then
  podman cp "$UPSTREAM_KEY_FILE" "$CONTAINER:/tmp/bench/upstream_key"
  upstream_args=(--upstream-key-file /tmp/bench/upstream_key)
fi
podman exec "$CONTAINER" sh -c 'chmod 600 /tmp/bench/*key*'
podman exec "$CONTAINER" python3 /tmp/bench/bench.py "${direct_args[@]}" "${upstream_args[@]}" \
  --proxy "$PROXY" --ca /tmp/bench/ca.crt --cert /tmp/bench/client.crt --key /tmp/bench/client.key \
  --api-key-file /tmp/bench/api_key --model "$MODEL" --levels "$LEVELS" --requests "$REQUESTS" \
  --max-tokens "$MAX_TOKENS" --extra-body "$EXTRA_BODY" --json /tmp/bench/out.json
podman cp "$CONTAINER:/tmp/bench/out.json" "$OUT"
podman exec "$CONTAINER" rm -rf /tmp/bench
echo "results: $OUT"
