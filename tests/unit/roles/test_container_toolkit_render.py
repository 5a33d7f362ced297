"""container_toolkit: NVIDIA's repository line and the pinned package set."""

from __future__ import annotations

import pytest

from gpu_stack_render import DEBIAN_12, UBUNTU_2204, UBUNTU_2404, RoleRender, evaluate_assert


@pytest.mark.parametrize("ansible_facts", [UBUNTU_2204, UBUNTU_2404, DEBIAN_12])
def test_repository_line_and_key(ansible_facts):
    role = RoleRender("container_toolkit", ansible_facts)
    lines = [line for line in role.render("nvidia-container-toolkit.list.j2").splitlines() if line and not line.startswith("#")]
    assert lines == ["deb [signed-by=/etc/apt/keyrings/nvidia-container-toolkit.asc] https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /"]
    key = role.args("toolkit.yml", "Fetch NVIDIA's container toolkit repository key")
    assert (key["url"], key["dest"]) == ("https://nvidia.github.io/libnvidia-container/gpgkey", "/etc/apt/keyrings/nvidia-container-toolkit.asc")
    source = role.args("toolkit.yml", "Point apt at the container toolkit repository")
    assert source["dest"] == "/etc/apt/sources.list.d/nvidia-container-toolkit.list"


PACKAGES = ["nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools", "libnvidia-container1"]


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.17.8", [name + "=1.17.8-1" for name in PACKAGES]),
        ("", PACKAGES),
    ],
)
def test_pinned_packages(version, expected):
    role = RoleRender("container_toolkit", UBUNTU_2404, container_toolkit_version=version)
    module, args = role.module_args("toolkit.yml", "Install the NVIDIA Container Toolkit")
    assert module == "ansible.builtin.apt"
    assert args["name"] == expected
    hold = role.args("toolkit.yml", "Hold the toolkit at the pinned release", item="nvidia-container-toolkit")
    assert hold["selection"] == ("hold" if version else "install")


def test_upstream_docker_needs_a_repository():
    role = RoleRender("container_toolkit", UBUNTU_2404, container_toolkit_engine="docker", container_toolkit_docker_source="upstream")
    passed, message = evaluate_assert(role, "validate.yml", "Check the upstream Docker repository settings")
    assert not passed
    assert "container_toolkit_docker_repo_url" in message
