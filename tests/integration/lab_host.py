"""One real lab host for the integration tests that need the whole stack.

A podman container from the baked lab image (``localhost/llmops-lab-vllm``,
which ``scripts/test.sh`` builds: the Debian 12 lab image with the vllm
role's installation applied), configured once per test session by the root
``site.yml`` with the lab inventory, exactly as ``scripts/lab.sh up`` does.
The AWX, monitoring and TLS tests share it, so the stack converges once.

Nothing is skipped: a missing image or a failed converge is an error that
says what to run.
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import time

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
CACHE = pathlib.Path(os.environ.get("LLMOPS_CACHE_DIR", REPO / ".cache"))
IMAGE = os.environ.get("LLMOPS_LAB_VLLM_IMAGE", "localhost/llmops-lab-vllm:latest")
LAB_HOSTNAME = "llmops-lab"


def changed_tasks(stdout: str) -> list[str]:
    """The TASK/HANDLER headers of an ansible-playbook run's results that reported a change."""
    header, changed = "", []
    for line in stdout.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            header = line.rstrip(" *")
        elif line.lstrip().startswith("changed:"):
            changed.append(header)
    return changed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def podman(*args, check=True, timeout=300):
    env = dict(os.environ, CONTAINERS_CONF=str(REPO / "scripts" / "containers.conf"))
    return subprocess.run(["podman", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=check)


def lab_cgroup_opts() -> list[str]:
    """scripts/lib.sh's podman options for the lab's systemd (one place decides them)."""
    out = subprocess.run(["bash", "-c", '. "$1" && lab_cgroup_opts', "-", str(REPO / "scripts" / "lib.sh")],
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


class LabHost:
    """The lab host: a container named ``name`` that the inventory calls ``llmops-lab``."""

    def __init__(self, workdir: pathlib.Path, name: str | None = None):
        self.name = name or os.environ.get("LLMOPS_IT_LAB_NAME", f"llmops-it-lab-{os.getpid()}")
        self.workdir = workdir
        self.state_dir = workdir / "state"
        self.inventory = workdir / "inventory"
        self.https_port = free_port()
        self.converge_output = ""

    # --- paths the lab inventory writes on the controller -------------------
    @property
    def pki_clients(self) -> pathlib.Path:
        return self.state_dir / "pki" / "clients"

    @property
    def proxy_api_key(self) -> str:
        return (self.state_dir / "proxy_api_key").read_text().strip()

    @property
    def vllm_api_key(self) -> str:
        return (self.state_dir / "vllm_api_key").read_text().strip()

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def secrets(self) -> list[str]:
        """Every secret the lab holds, for tests that grep logs for them."""
        return [self.proxy_api_key, self.vllm_api_key]

    # --- life cycle -----------------------------------------------------------
    def start(self) -> None:
        if podman("image", "exists", IMAGE, check=False).returncode != 0:
            raise RuntimeError(f"{IMAGE} is missing: `scripts/test.sh integration` bakes it "
                               "(scripts/lib.sh build_lab_vllm_image)")
        podman("rm", "-f", self.name, check=False)
        # The same container settings as scripts/lab.sh: systemd as PID 1,
        # /dev/shm for vLLM, the wheelhouse and models read-only, and the
        # cgroup options that let systemd see a crashed unit's cgroup empty.
        podman("run", "-d", "--name", self.name, "--hostname", LAB_HOSTNAME, "--systemd=always",
               "--shm-size=1g", "--cap-add=NET_ADMIN", *lab_cgroup_opts(),
               "--publish", f"127.0.0.1:{self.https_port}:443",
               "--volume", f"{CACHE / 'wheelhouse'}:/srv/llmops/wheelhouse:ro",
               "--volume", f"{CACHE / 'models'}:/srv/llmops/models:ro",
               IMAGE)
        self.exec("systemctl", "is-system-running", "--wait", check=False, timeout=120)
        self._write_inventory()

    def _write_inventory(self) -> None:
        """inventories/lab's groups and group_vars; the host reached as this container."""
        self.inventory.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        hosts = yaml.safe_load((REPO / "inventories" / "lab" / "hosts.yml").read_text())
        (self.inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
        group_vars = self.inventory / "group_vars"
        if not group_vars.exists():
            group_vars.symlink_to(REPO / "inventories" / "lab" / "group_vars")
        host_vars = self.inventory / "host_vars"
        host_vars.mkdir(exist_ok=True)
        (host_vars / f"{LAB_HOSTNAME}.yml").write_text(yaml.safe_dump({
            "ansible_host": self.name,
            "lab_state_dir": str(self.state_dir),
        }))

    def converge(self, timeout=1800) -> None:
        started = time.monotonic()
        proc = self.playbook("site.yml", timeout=timeout)
        self.converge_output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise RuntimeError(f"site.yml failed on the lab host {self.name} (rc={proc.returncode}):\n"
                               + self.converge_output[-6000:])
        self.converge_seconds = time.monotonic() - started
        # The second run is the idempotence check (tests/integration/test_lab_host.py):
        # taken here, before any test changes the host.
        self.second_run = self.playbook("site.yml", timeout=timeout)

    def destroy(self) -> None:
        if os.environ.get("LLMOPS_IT_KEEP_LAB") != "1":
            podman("rm", "-f", "-t", "5", self.name, check=False)

    # --- helpers for tests ------------------------------------------------------
    def env(self, **extra) -> dict:
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0", CONTAINERS_CONF=str(REPO / "scripts" / "containers.conf"),
                   ANSIBLE_COLLECTIONS_PATH=str(CACHE / "collections"))
        env.update(extra)
        return env

    def playbook(self, playbook: str, *args: str, timeout=1800, env=None) -> subprocess.CompletedProcess:
        """ansible-playbook -i <this lab's inventory> PLAYBOOK ARGS, from the repository root."""
        return subprocess.run(["ansible-playbook", "-i", str(self.inventory), playbook, *args],
                              cwd=REPO, env=env or self.env(), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def exec(self, *cmd: str, check=True, timeout=300) -> subprocess.CompletedProcess:
        return podman("exec", self.name, *cmd, check=check, timeout=timeout)
