#!/usr/bin/env bash
# Fleet benchmark (method and figures: results.md). In one run, on fresh
# containers of the baked lab image each time:
#   1. converge time of the root site.yml with 1 and with 2 inference hosts
#      (plus the gateway), and the changed count of a second run;
#   2. on the 2-host fleet: vLLM's own restart time (systemctl restart until
#      /health answers 200, on the host itself), then a rolling update of both
#      hosts (rolling_update_restart=true) and each host's time in it.
# The figures go to benchmarks/fleet/results.json. Needs root (podman) and the
# lab assets (scripts/lab.sh up --fleet prepares them).
#   sudo benchmarks/fleet/bench.sh
source "$(dirname "$0")/../../scripts/lib.sh"
require_root "$@"
activate_venv
PREFIX="${LLMOPS_FLEETBENCH_PREFIX:-llmops-fleetbench}"
WORK="$CACHE_DIR/fleetbench"
OUT="$REPO_ROOT/benchmarks/fleet/results.json"
export LLMOPS_FLEET_STATE_DIR="$WORK/state"

teardown() {
  local name
  # One at a time: a systemd container can outlive a batched `rm -f` that
  # gave up on another, and the next start would find its name taken.
  for name in gw inf1 inf2; do
    podman rm -f -t 5 "$PREFIX-$name" >/dev/null 2>&1 || true
    ! podman container exists "$PREFIX-$name" || die "could not remove the container $PREFIX-$name"
  done
  podman network rm "$PREFIX" >/dev/null 2>&1 || true
}
trap teardown EXIT

# inventory N: inventories/fleet_lab with this run's container names, N inference hosts.
inventory() {
  local dir="$WORK/inventory-$1"
  rm -rf "$dir" && mkdir -p "$dir"
  cp -r "$REPO_ROOT/inventories/fleet_lab/." "$dir/"
  sed -i "s/llmops-fleet-/$PREFIX-/" "$dir/hosts.yml"
  [ "$1" -eq 2 ] || sed -i "/$PREFIX-inf2:/d" "$dir/hosts.yml"
  echo "$dir"
}

start() {
  local hosts=("gw" "inf1") name
  [ "$1" -eq 2 ] && hosts+=("inf2")
  podman network exists "$PREFIX" || podman network create "$PREFIX" >/dev/null
  for name in "${hosts[@]}"; do
    podman run -d --name "$PREFIX-$name" --hostname "$PREFIX-$name" --network "$PREFIX" --cap-add NET_ADMIN \
      --systemd=always --shm-size=1g --volume "$WHEELHOUSE:/srv/llmops/wheelhouse:ro" \
      --volume "$CACHE_DIR/models:/srv/llmops/models:ro" "$LAB_VLLM_IMAGE" >/dev/null
  done
  for name in "${hosts[@]}"; do
    podman exec "$PREFIX-$name" systemctl is-system-running --wait >/dev/null 2>&1 || true
  done
}

# converge N -> "seconds changed_on_second_run"
converge() {
  local inv t0 t1 changed
  inv=$(inventory "$1")
  t0=$(date +%s.%N)
  ansible-playbook -i "$inv" "$REPO_ROOT/site.yml" >"$WORK/converge-$1.log" 2>&1 || { tail -30 "$WORK/converge-$1.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  ansible-playbook -i "$inv" "$REPO_ROOT/site.yml" >"$WORK/reconverge-$1.log" 2>&1 || { tail -30 "$WORK/reconverge-$1.log" >&2; exit 1; }
  changed=$(grep -oE 'changed=[0-9]+' "$WORK/reconverge-$1.log" | cut -d= -f2 | paste -sd+ | bc)
  log "converge with $1 inference host(s): $(echo "$t1 - $t0" | bc) s, second run changed=$changed" >&2
  echo "$(echo "$t1 - $t0" | bc) $changed"
}

restart_time() {
  podman exec "$PREFIX-inf1" bash -c '
    t0=$(date +%s.%N); systemctl restart vllm@smollm2.service
    until curl -fs -o /dev/null http://127.0.0.1:8000/health; do sleep 0.5; done
    awk -v a="$t0" -v b="$(date +%s.%N)" "BEGIN { printf \"%.1f\n\", b - a }"'
}

mkdir -p "$WORK"
rm -rf "$LLMOPS_FLEET_STATE_DIR"
teardown
# LLMOPS_FLEETBENCH_ONE="SECONDS CHANGED" reuses a measured 1-host converge
# and runs only the 2-host part.
if [ -n "${LLMOPS_FLEETBENCH_ONE:-}" ]; then
  read -r one one_changed <<<"$LLMOPS_FLEETBENCH_ONE"
else
  start 1
  read -r one one_changed < <(converge 1)
  teardown
fi
rm -rf "$LLMOPS_FLEET_STATE_DIR"
start 2
read -r two two_changed < <(converge 2)
restart=$(restart_time)
log "vLLM's own restart on inf1: $restart s"
t0=$(date +%s.%N)
ansible-playbook -i "$WORK/inventory-2" "$REPO_ROOT/playbooks/rolling_update.yml" -e rolling_update_restart=true \
  >"$WORK/rollout.log" 2>&1 || { tail -30 "$WORK/rollout.log" >&2; exit 1; }
rollout=$(echo "$(date +%s.%N) - $t0" | bc)
# The callback wraps long messages: join the lines before matching.
per_host=$(tr -s ' \n' ' ' <"$WORK/rollout.log" | grep -oE '[a-z0-9-]+: drain [0-9.]+ s, change and canary [0-9.]+ s, total [0-9.]+ s' | sort -u || true)
python3 - "$OUT" "$one" "$one_changed" "$two" "$two_changed" "$restart" "$rollout" "$per_host" <<'PY'
import json, re, sys
out, one, one_c, two, two_c, restart, rollout, per_host = sys.argv[1:]
hosts = {}
for m in re.finditer(r"([a-z0-9-]+): drain ([0-9.]+) s, change and canary ([0-9.]+) s, total ([0-9.]+) s", per_host):
    hosts[m[1]] = {"drain_s": float(m[2]), "change_and_canary_s": float(m[3]), "total_s": float(m[4])}
restart = float(restart)
result = {
    "converge_1_host_s": round(float(one), 1), "converge_2_hosts_s": round(float(two), 1),
    "converge_ratio_2_over_1": round(float(two) / float(one), 3),
    "second_run_changed": {"1_host": int(one_c), "2_hosts": int(two_c)},
    "vllm_restart_s": round(restart, 1), "rollout_2_hosts_s": round(float(rollout), 1),
    "rollout_per_host": hosts,
    "rollout_added_per_host_s": {h: round(v["total_s"] - restart, 1) for h, v in hosts.items()},
}
open(out, "w").write(json.dumps(result, indent=2) + "\n")
print(json.dumps(result, indent=2))
PY
