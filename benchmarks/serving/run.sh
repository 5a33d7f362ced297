#!/usr/bin/env bash
# Serving benchmark on the lab host (README.md here explains the method).
#
#   benchmarks/serving/run.sh hand-start   start the hand-tuned vLLM (transient unit bench-hand, port 8100)
#   benchmarks/serving/run.sh managed      managed (role, :8000) vs hand-tuned (:8100), direct
#   benchmarks/serving/run.sh gateway      the managed instance through the gateway (nginx_mtls, :443) vs direct (:8000)
#   benchmarks/serving/run.sh compare NAME=URL[,KEYFILE]...   any targets in the lab host (/tmp/bench/vllm_key is the managed key)
#   benchmarks/serving/run.sh restart      first start vs restart after kill -9 of the managed instance
#   benchmarks/serving/run.sh hand-stop    stop the hand-tuned vLLM
#   benchmarks/serving/run.sh control-start|control-stop   a second instance of the role's unit (:8300), the A/A control
#                                          `managed` includes it when it answers
#
# Environment: CONTAINER (lab host, default llmops-lab), LAB_STATE (the lab's
# .cache/lab: PKI and keys), LEVELS (1,8,32), ROUNDS (2), PROMPTS (requests per level, 8,32,64),
# OUT (results JSON), HAND_KEYFILE (a key file inside the lab host the hand-tuned
# instance wants, when it was started with HAND_ARGS="--api-key ..."), HAND_SETENV
# (more NAME=VALUE words for the hand-tuned instance's environment), HAND_NAME and
# HAND_PORT (another hand-started variant: its unit name and port), MORE_TARGETS
# (more NAME=URL[,KEYFILE] words for `managed`). The load generator is vLLM's own (`vllm bench serve`),
# run inside the lab host with the instance's virtualenv; never in CI.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO/scripts/containers.conf}"
CONTAINER="${CONTAINER:-llmops-lab}"
LAB_STATE="${LAB_STATE:-$REPO/.cache/lab}"
MODEL_DIR="${MODEL_DIR:-/srv/llmops/models/smollm2-135m-instruct}"
SERVED="${SERVED:-smollm2-135m-instruct}"
INSTANCE="${INSTANCE:-smollm2}"
LEVELS="${LEVELS:-1,8,32}"
ROUNDS="${ROUNDS:-2}"
PROMPTS="${PROMPTS:-8,32,64}"
VENV=/opt/vllm/venv
# A hand-started variant gets its own transient unit, port and caches.
HAND_NAME="${HAND_NAME:-bench-hand}"
HAND_PORT="${HAND_PORT:-8100}"
# The A/A control: a second instance of the role's own unit, same config, port 8300.
CONTROL="${INSTANCE}ctl"
CONTROL_PORT=8300
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"

in_lab() { podman exec "$CONTAINER" "$@"; }

# The best settings found by hand (README.md, "Hand-tuned"): compilation on
# (the default), tcmalloc and Intel OpenMP preloaded, one OpenMP thread per
# core with one core left to the API server, the same KV cache and context.
HAND_ENV=(
  "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4:$VENV/lib/libiomp5.so"
  "VLLM_CPU_OMP_THREADS_BIND=${HAND_BIND:-auto}"
  "VLLM_CPU_NUM_OF_RESERVED_CPU=${HAND_RESERVED:-1}"
  "VLLM_CPU_KVCACHE_SPACE=1"
  "VLLM_CACHE_ROOT=/var/tmp/$HAND_NAME/cache/vllm"
  "TORCHINDUCTOR_CACHE_DIR=/var/tmp/$HAND_NAME/cache/torchinductor"
  "VLLM_NO_USAGE_STATS=1"
  "HF_HUB_OFFLINE=1"
)

wait_health() {  # PORT TIMEOUT -> seconds waited
  local port="$1" limit="$2" start now
  start=$(date +%s.%N)
  while :; do
    if in_lab curl -fs -o /dev/null "http://127.0.0.1:$port/health"; then
      now=$(date +%s.%N); awk -v a="$start" -v b="$now" 'BEGIN { printf "%.1f\n", b - a }'; return 0
    fi
    now=$(date +%s)
    [ $((now - ${start%.*})) -lt "$limit" ] || { echo "timeout" >&2; return 1; }
    sleep 0.5
  done
}

copy_client() {  # the driver, and the managed instance's key as /tmp/bench/vllm_key
  in_lab mkdir -p /tmp/bench
  podman cp "$HERE/bench_driver.py" "$CONTAINER:/tmp/bench/bench_driver.py"
  in_lab sh -c "sed -n 's/^VLLM_API_KEY=//p' /etc/vllm/secrets.env > /tmp/bench/vllm_key && chmod 600 /tmp/bench/vllm_key"
}

drive() {  # OUTFILE TARGET...
  local out="$1"; shift
  local targets=()
  for t in "$@"; do targets+=(--target "$t"); done
  in_lab "$VENV/bin/python" /tmp/bench/bench_driver.py "${targets[@]}" \
    --model "$SERVED" --tokenizer "$MODEL_DIR" --levels "$LEVELS" --rounds "$ROUNDS" \
    --prompts "$PROMPTS" --json /tmp/bench/out.json "${EXTRA[@]}"
  podman cp "$CONTAINER:/tmp/bench/out.json" "$out"
  "$REPO/.venv/bin/python" "$HERE/summarize.py" "$out"
}

case "${1:-}" in
  hand-start)
    in_lab systemctl stop "$HAND_NAME.service" 2>/dev/null || true
    in_lab systemctl reset-failed "$HAND_NAME.service" 2>/dev/null || true
    in_lab mkdir -p /var/tmp/$HAND_NAME
    envs=(); for e in "${HAND_ENV[@]}" ${HAND_SETENV:-}; do envs+=("--setenv=$e"); done
    in_lab systemd-run --unit="$HAND_NAME" --property=LimitNOFILE=16384 --property=WorkingDirectory=/var/tmp/$HAND_NAME \
      --setenv=HOME=/var/tmp/$HAND_NAME "${envs[@]}" \
      "$VENV/bin/python" -m vllm.entrypoints.openai.api_server --model "$MODEL_DIR" \
      --served-model-name "$SERVED" --host 127.0.0.1 --port "$HAND_PORT" --max-model-len 2048 ${HAND_ARGS:-}
    echo "$HAND_NAME healthy after $(wait_health "$HAND_PORT" 900) s"
    ;;
  hand-stop)
    in_lab systemctl stop "$HAND_NAME.service"
    ;;
  control-start)
    # Two instances of the same unit and config differ by a few percent at
    # one stream (results.md, runs 7-10): the control measures that floor.
    in_lab sh -c "sed 's/^port: .*/port: $CONTROL_PORT/' /etc/vllm/$INSTANCE.yaml > /etc/vllm/$CONTROL.yaml \
      && chgrp vllm /etc/vllm/$CONTROL.yaml && chmod 640 /etc/vllm/$CONTROL.yaml \
      && cp -p /etc/vllm/$INSTANCE.env /etc/vllm/$CONTROL.env && systemctl start vllm@$CONTROL.service"
    echo "control healthy after $(wait_health "$CONTROL_PORT" 900) s"
    ;;
  control-stop)
    in_lab sh -c "systemctl stop vllm@$CONTROL.service; rm -f /etc/vllm/$CONTROL.yaml /etc/vllm/$CONTROL.env"
    ;;
  managed)
    copy_client
    EXTRA=()
    targets=("managed=http://127.0.0.1:8000,/tmp/bench/vllm_key" "hand=http://127.0.0.1:8100${HAND_KEYFILE:+,$HAND_KEYFILE}")
    if in_lab curl -fs -o /dev/null "http://127.0.0.1:$CONTROL_PORT/health"; then
      targets+=("control=http://127.0.0.1:$CONTROL_PORT,/tmp/bench/vllm_key")
    fi
    drive "${OUT:-$HERE/results/managed-vs-hand-$STAMP.json}" "${targets[@]}" ${MORE_TARGETS:-}
    ;;
  compare)
    # Any targets inside the lab host, e.g. an instance started for a bisection:
    #   run.sh compare managed=http://127.0.0.1:8000,/tmp/bench/vllm_key mirror=http://127.0.0.1:8200,/tmp/bench/vllm_key
    shift
    copy_client
    EXTRA=()
    drive "${OUT:-$HERE/results/compare-$STAMP.json}" "$@"
    ;;
  gateway)
    # The gateway limits each API key's concurrent streams and request rate
    # and each address's request rate (nginx_mtls_max_streams_per_key,
    # _rate_per_key, _burst_per_key, _rate_per_address, _burst_per_address)
    # and answers 429 above them: a policy, not a speed. A load generator that
    # opens every stream at once and moves on at once after a 429 measures the
    # 429s, so the benchmark wants limits well above its top level.
    top=$(tr ',' '\n' <<<"$LEVELS" | sort -n | tail -1)
    caps=$(in_lab sed -n -e 's/.*limit_conn llm_streams_per_key \([0-9]*\);.*/\1/p' \
      -e 's/.*limit_req zone=llm_per_[a-z]* burst=\([0-9]*\).*/\1/p' /etc/nginx/llmops/llm_proxy.conf)
    if [ "$(sort -n <<<"$caps" | head -1)" -lt $((4 * top)) ]; then
      echo "the gateway's stream and burst limits ($(tr '\n' ' ' <<<"$caps")) are under 4x LEVELS' top ($top); converge it with" >&2
      echo "  ansible-playbook -i inventories/lab playbooks/gateway.yml -e nginx_mtls_max_streams_per_key=$((4 * top)) \\" >&2
      echo "    -e nginx_mtls_rate_per_key=100r/s -e nginx_mtls_burst_per_key=$((4 * top)) \\" >&2
      echo "    -e nginx_mtls_rate_per_address=100r/s -e nginx_mtls_burst_per_address=$((4 * top))" >&2
      exit 2
    fi
    copy_client
    podman cp "$LAB_STATE/pki/clients/ca.crt" "$CONTAINER:/tmp/bench/ca.crt"
    podman cp "$LAB_STATE/pki/clients/lab.crt" "$CONTAINER:/tmp/bench/client.crt"
    podman cp "$LAB_STATE/pki/clients/lab.key" "$CONTAINER:/tmp/bench/client.key"
    podman cp "$LAB_STATE/proxy_api_key" "$CONTAINER:/tmp/bench/proxy_key"
    in_lab sh -c 'chmod 600 /tmp/bench/*key*'
    EXTRA=(--ca /tmp/bench/ca.crt --cert /tmp/bench/client.crt --key /tmp/bench/client.key)
    drive "${OUT:-$HERE/results/gateway-vs-direct-$STAMP.json}" \
      "gateway=https://localhost:443,/tmp/bench/proxy_key" "direct=http://127.0.0.1:8000,/tmp/bench/vllm_key"
    ;;
  restart)
    # First start: caches emptied (a fresh host); then kill -9 of the main
    # process and systemd's restart with the caches kept. Both timed from the
    # moment the instance is (re)started to its first healthy /health.
    # CPU seconds of the unit's processes at the first healthy answer are
    # recorded too (unit_cpu.sh): wall time on a loaded shared machine
    # measures the other tenants as much as vLLM.
    out="${OUT:-$HERE/results/restart-$STAMP.json}"
    unit="vllm@$INSTANCE.service"
    podman cp "$HERE/unit_cpu.sh" "$CONTAINER:/tmp/unit_cpu.sh"
    if [ "${KEEP_CACHES:-0}" != 1 ]; then
      in_lab systemctl stop "$unit"
      in_lab rm -rf /var/lib/vllm/cache
      in_lab systemctl start "$unit"
    fi
    first=$(wait_health 8000 3600)
    first_cpu=$(in_lab sh /tmp/unit_cpu.sh "$unit")
    load1=$(cut -d' ' -f1-3 /proc/loadavg)
    sleep 5
    pid=$(in_lab systemctl show -p MainPID --value "$unit")
    in_lab kill -9 "$pid"
    sleep 1  # the port closes with the process; poll from here, timed from the kill
    again=$(awk -v w="$(wait_health 8000 3600)" 'BEGIN { printf "%.1f", w + 1 }')
    again_cpu=$(in_lab sh /tmp/unit_cpu.sh "$unit")
    restart_sec=$(in_lab systemctl show -p RestartUSec --value "$unit")
    printf '{"first_start_s": %s, "first_start_cpu_s": %s, "load_first": "%s", "restart_after_kill9_s": %s, "restart_cpu_s": %s, "load_restart": "%s", "restart_sec": "%s"}\n' \
      "$first" "$first_cpu" "$load1" "$again" "$again_cpu" "$(cut -d' ' -f1-3 /proc/loadavg)" "$restart_sec" | tee "$out"
    ;;
  *)
    awk 'NR > 1 && /^set -euo/ { exit } NR > 1' "$0"; exit 2
    ;;
esac
