"""vllm container mode: render vllm-container@.service.j2 and let systemd verify it."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from gpu_stack_render import UBUNTU_2404, RoleRender, evaluate_assert

DIGEST = "sha256:" + "0123456789abcdef" * 4
IMAGE = f"docker.io/vllm/vllm-openai@{DIGEST}"


def local_systemd_version():
    """This machine's systemd, as the role's facts would report it (ansible_facts.systemd.version)."""
    first = subprocess.run(["systemd-analyze", "--version"], capture_output=True, text=True, check=False).stdout.split()
    return int(first[1]) if len(first) > 1 and first[1].isdigit() else 0


def container_role(engine="podman", device="cuda", image=IMAGE, systemd_version=255, **overrides):
    role = RoleRender(
        "vllm",
        dict(UBUNTU_2404, systemd={"version": systemd_version}),
        vllm_container_engine=engine,
        vllm_container_image=image,
        **overrides,
    )
    role.variables["vllm__device"] = device
    role.set_facts("container.yml", "Resolve the container settings")
    return role


def exec_start(unit):
    lines = unit.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ExecStart="))
    out = []
    for line in lines[start:]:
        out.append(line.rstrip("\\").strip())
        if not line.endswith("\\"):
            break
    return " ".join(out)


def test_restart_backoff_follows_the_hosts_systemd():
    assert "RestartMaxDelaySec=120" in container_role(systemd_version=255).render("vllm-container@.service.j2")
    assert "RestartMaxDelaySec" not in container_role(systemd_version=252).render("vllm-container@.service.j2")


def test_podman_unit_uses_cdi_config_env_file_and_loopback():
    unit = container_role().render("vllm-container@.service.j2")
    cmd = exec_start(unit)
    assert cmd.startswith("ExecStart=/usr/bin/podman run --rm --name vllm-%i --replace")
    assert "--device=nvidia.com/gpu=all" in cmd
    assert "--gpus" not in cmd
    assert "--env-file=/etc/vllm/secrets.env" in cmd
    assert "--env-file=/etc/vllm/%i.env" in cmd
    assert "--volume=/etc/vllm/%i.yaml:/etc/vllm/%i.yaml:ro" in cmd
    assert cmd.endswith(f"{IMAGE} -m vllm.entrypoints.openai.api_server --config /etc/vllm/%i.yaml $LLMOPS_VLLM_EXTRA_ARGS")
    assert "--network=host" in cmd and "--pull=never" in cmd
    # The key never reaches a command line.
    assert "VLLM_API_KEY" not in unit
    assert "After=network-online.target nvidia-persistenced.service\n" in unit
    assert "EnvironmentFile=/etc/vllm/%i.container.env" in unit


def test_docker_unit_uses_gpus_and_waits_for_docker():
    unit = container_role(engine="docker", vllm_container_gpus='"device=0,1"').render("vllm-container@.service.j2")
    cmd = exec_start(unit)
    assert cmd.startswith("ExecStart=/usr/bin/docker run --rm --name vllm-%i ")
    assert '--gpus="device=0,1"' in cmd
    assert "nvidia.com/gpu" not in cmd
    assert "Requires=docker.service" in unit
    assert "ExecStartPre=-/usr/bin/docker rm --force vllm-%i" in unit


def test_cpu_device_passes_no_gpus():
    cmd = exec_start(container_role(device="cpu").render("vllm-container@.service.j2"))
    assert "nvidia.com/gpu" not in cmd and "--gpus" not in cmd


@pytest.mark.parametrize("image", ["vllm/vllm-openai:latest", "vllm/vllm-openai:v0.11.0", ""])
def test_unpinned_images_are_refused(image):
    passed, message = evaluate_assert(container_role(image=image), "container.yml", "Check the container settings")
    assert not passed
    assert "vllm_container_image" in message and "sha256" in message


def test_pinned_image_is_accepted():
    assert evaluate_assert(container_role(), "container.yml", "Check the container settings")[0]


def _verify(tmp_path, unit_text, engine):
    """systemd-analyze verify in a scratch root that holds the unit and an engine binary."""
    root = tmp_path / "root"
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    # An instance of the template, as systemd would load vllm@NAME.service.
    (unit_dir / "vllm@.service").write_text(unit_text)
    engine_bin = root / "usr/bin" / engine
    engine_bin.parent.mkdir(parents=True)
    engine_bin.write_text("#!/bin/sh\nexit 0\n")
    engine_bin.chmod(0o755)
    env = dict(os.environ, SYSTEMD_LOG_LEVEL="notice")
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "--man=no", "--recursive-errors=no", "vllm@smollm2.service"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("engine", ["podman", "docker"])
def test_systemd_analyze_verify_accepts_the_unit(tmp_path, engine):
    # Rendered for the local systemd, as the role renders for the host's (RestartSteps needs 254+).
    unit = container_role(engine=engine, systemd_version=local_systemd_version()).render("vllm-container@.service.j2")
    result = _verify(tmp_path, unit, engine)
    assert result.returncode == 0, result.stderr
    assert "vllm@" not in result.stderr, result.stderr


def test_systemd_analyze_verify_is_a_real_check(tmp_path):
    """The same check fails a broken unit: a typo in a directive, and a missing engine binary."""
    version = local_systemd_version()
    unit = container_role(systemd_version=version).render("vllm-container@.service.j2").replace("RestartSec=", "RestartSecs=")
    result = _verify(tmp_path, unit, "podman")
    assert "RestartSecs" in result.stderr
    unit = container_role(engine="docker", systemd_version=version).render("vllm-container@.service.j2")
    result = _verify(tmp_path / "missing", unit, "podman")  # docker binary absent from the root
    assert result.returncode != 0
    assert "docker" in result.stderr


def test_install_mode_picks_the_unit_template():
    """The same configure task installs vllm@.service from the native or the container template."""
    for mode, template in (("native", "vllm@.service.j2"), ("container", "vllm-container@.service.j2")):
        args = container_role(vllm_install_mode=mode).args("configure.yml", "Install the systemd template unit vllm@.service")
        assert args["src"] == template
        assert args["dest"] == "/etc/systemd/system/vllm@.service"
        assert pathlib.Path(container_role().role, "templates", template).is_file()
