"""container_toolkit: NVIDIA's repository line and the pinned package set."""

from __future__ import annotations

import pytest

from gpu_stack_render import DEBIAN_12, UBUNTU_2204, UBUNTU_2404, RoleRender, evaluate_assert


@pytest.mark.parametrize("ansible_facts", [UBUNTU_2204, UBUNTU_2404, DEBIAN_12])
def test_repository_line_and_key(ansible_facts):
    role = RoleRender("container_toolkit", ansible_facts)
    lines = [line for line in role.render("nvidia-container-toolkit.list.j2").splitlines() if line and not line.startswith("#")]
    assert lines == ["deb [signed-by=/etc/apt/keyrings/nvidia-container-toolkit.asc] https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /"]
    assert role.value("{{ container_toolkit_repo_key_url }}") == "https://nvidia.github.io/libnvidia-container/gpgkey"


def test_pinned_packages():
    role = RoleRender("container_toolkit", UBUNTU_2404, container_toolkit_version="1.17.8")
    expression = (
        "{{ container_toolkit__packages | map('regex_replace', '$', '=' ~ container_toolkit_version ~ '-1') | list"
        " if container_toolkit_version else container_toolkit__packages }}"
    )
    assert role.value(expression) == [
        "nvidia-container-toolkit=1.17.8-1",
        "nvidia-container-toolkit-base=1.17.8-1",
        "libnvidia-container-tools=1.17.8-1",
        "libnvidia-container1=1.17.8-1",
    ]


def test_upstream_docker_needs_a_repository():
    role = RoleRender("container_toolkit", UBUNTU_2404, container_toolkit_engine="docker", container_toolkit_docker_source="upstream")
    passed, message = evaluate_assert(role, "validate.yml", "Check the upstream Docker repository settings")
    assert not passed
    assert "container_toolkit_docker_repo_url" in message
