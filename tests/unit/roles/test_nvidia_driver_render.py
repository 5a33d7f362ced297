"""nvidia_driver on Ubuntu 22.04/24.04 and Debian 12: repository, keyring, packages, pins."""

from __future__ import annotations

import base64

import pytest

from gpu_stack_render import DEBIAN_12, UBUNTU_2204, UBUNTU_2404, RoleRender, evaluate_assert

CUDA_BASE = "https://developer.download.nvidia.com/compute/cuda/repos"


def resolved(ansible_facts, **overrides):
    role = RoleRender("nvidia_driver", ansible_facts, **overrides)
    role.set_facts("validate.yml", "Choose the package source")
    role.set_facts("validate.yml", "Resolve the package lists")
    return role


def cuda_repository(ansible_facts, **overrides):
    role = RoleRender("cuda_repository", ansible_facts, **overrides)
    role.set_facts("main.yml", "Resolve the repository URL and the source file name")
    return role


@pytest.mark.parametrize(
    ("ansible_facts", "distro"),
    [(UBUNTU_2204, "ubuntu2204"), (UBUNTU_2404, "ubuntu2404"), (DEBIAN_12, "debian12")],
)
def test_cuda_repository_keyring_and_source_line(ansible_facts, distro):
    role = cuda_repository(ansible_facts)
    url = f"{CUDA_BASE}/{distro}/x86_64/"
    keyring = role.args("main.yml", "Install NVIDIA's repository keyring (cuda-keyring)")
    assert keyring == {"deb": f"{url}cuda-keyring_1.1-1_all.deb"}
    # Same file name as the cuda-keyring package's, so apt never sees the repository twice.
    source = role.args("main.yml", "Point apt at the CUDA repository")
    assert source["dest"] == f"/etc/apt/sources.list.d/cuda-{distro}-x86_64.list"
    lines = [line for line in role.render("cuda.list.j2").splitlines() if line and not line.startswith("#")]
    assert lines == [f"deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] {url} /"]


def test_cuda_repository_arm64_uses_sbsa_and_a_mirror():
    role = cuda_repository(dict(UBUNTU_2404, architecture="aarch64"), cuda_repository_base_url="https://mirror.internal/cuda/repos/")
    assert "deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] https://mirror.internal/cuda/repos/ubuntu2404/sbsa/ /" in role.render(
        "cuda.list.j2"
    )
    assert role.module_args("main.yml", "Point apt at the CUDA repository")[1]["dest"] == "/etc/apt/sources.list.d/cuda-ubuntu2404-sbsa.list"


def test_cuda_repository_refuses_other_architectures():
    role = RoleRender("cuda_repository", dict(UBUNTU_2404, architecture="ppc64le"))
    passed, message = evaluate_assert(role, "main.yml", "Check the operating system and architecture")
    assert not passed and "ppc64le" in message


@pytest.mark.parametrize("role_name", ["nvidia_driver", "cuda_toolkit"])
def test_both_gpu_roles_use_the_one_repository_task_file(role_name):
    task_file = {"nvidia_driver": "repository_cuda.yml", "cuda_toolkit": "repository.yml"}[role_name]
    role = RoleRender(role_name, UBUNTU_2404)
    module, args = role.module_args(task_file, "Configure NVIDIA's CUDA repository (cuda_repository)")
    assert (module, args) == ("ansible.builtin.include_role", {"name": "llmops.inference.cuda_repository"})


def test_ubuntu_defaults_to_the_cuda_repository():
    assert resolved(UBUNTU_2404).variables["nvidia_driver__source"] == "cuda"


@pytest.mark.parametrize("ansible_facts", [UBUNTU_2204, UBUNTU_2404])
@pytest.mark.parametrize(
    ("source", "open_modules", "branch", "expected"),
    [
        ("cuda", True, "580", ["nvidia-headless-580-open", "nvidia-utils-580"]),
        ("cuda", False, "570", ["nvidia-headless-570", "nvidia-utils-570"]),
        ("ubuntu", True, "570", ["nvidia-headless-570-server-open", "nvidia-utils-570-server"]),
        ("ubuntu", False, "580", ["nvidia-headless-580-server", "nvidia-utils-580-server"]),
    ],
)
def test_ubuntu_package_names(ansible_facts, source, open_modules, branch, expected):
    role = resolved(
        ansible_facts,
        nvidia_driver_source=source,
        nvidia_driver_open_kernel_modules=open_modules,
        nvidia_driver_branch=branch,
        nvidia_driver_extra_packages=["nvidia-container-toolkit-base"],
    )
    assert role.variables["nvidia_driver__packages"] == [*expected, "nvidia-container-toolkit-base"]
    fabric = role.args("services.yml", "Install Fabric Manager")
    assert fabric["name"] == [f"nvidia-fabricmanager-{branch}", f"libnvidia-nscq-{branch}"]


def test_ubuntu_precompiled_signed_modules_package():
    role = resolved(UBUNTU_2404, nvidia_driver_source="ubuntu", nvidia_driver_branch="570", nvidia_driver_secure_boot_policy="precompiled")
    args = role.args("packages.yml", "Install the driver packages")
    assert args["name"][-1] == "linux-modules-nvidia-570-server-open-generic"
    assert not role.when("packages.yml", "Install kernel headers for the running kernel (DKMS)", nvidia_driver__in_container=False)


@pytest.mark.parametrize("ansible_facts", [UBUNTU_2204, UBUNTU_2404])
def test_branch_pin_preferences(ansible_facts):
    role = resolved(ansible_facts, nvidia_driver_branch="570")
    pref = role.render("nvidia-driver.pref.j2")
    stanza = [line for line in pref.splitlines() if line and not line.startswith("#")]
    assert stanza[0].startswith("Package: nvidia-* libnvidia-* libcuda*")
    assert stanza[1:] == ["Pin: version 570.*", "Pin-Priority: 1001"]


def test_exact_version_pin():
    role = resolved(UBUNTU_2404, nvidia_driver_version="580.95.05")
    assert "Pin: version 580.95.05-*" in role.render("nvidia-driver.pref.j2")


def test_debian_defaults_to_non_free_packages():
    role = resolved(DEBIAN_12, nvidia_driver_branch="535", nvidia_driver_open_kernel_modules=False)
    assert role.variables["nvidia_driver__source"] == "debian"
    assert role.variables["nvidia_driver__packages"][0] == "nvidia-driver"
    assert "nvidia-persistenced" in role.variables["nvidia_driver__packages"]


def test_debian_cuda_repository():
    role = resolved(DEBIAN_12, nvidia_driver_source="cuda")
    assert role.variables["nvidia_driver__packages"] == ["nvidia-driver-cuda", "nvidia-kernel-open-dkms", "nvidia-persistenced"]


def test_debian_non_free_sources_reuse_the_hosts_mirror():
    role = RoleRender("nvidia_driver", DEBIAN_12)
    role.variables["nvidia_driver__debian_sources"] = {
        "results": [
            {"content": _b64("deb http://mirror.example/debian bookworm main\ndeb http://security.example/debian-security bookworm-security main\n")},
            {"failed": True},
        ]
    }
    role.set_facts("repository_debian.yml", "Find the Debian mirrors the host uses")
    sources = role.render("debian-nonfree.sources.j2")
    assert "URIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: contrib non-free non-free-firmware" in sources
    assert "URIs: http://security.example/debian-security\nSuites: bookworm-security" in sources


def test_debian_non_free_sources_from_deb822():
    role = RoleRender("nvidia_driver", DEBIAN_12)
    role.variables["nvidia_driver__debian_sources"] = {
        "results": [
            {"failed": True},
            {"content": _b64("Types: deb\nURIs: http://deb.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n")},
        ]
    }
    role.set_facts("repository_debian.yml", "Find the Debian mirrors the host uses")
    assert role.variables["nvidia_driver__debian_mirror"] == "http://deb.example/debian"
    assert role.variables["nvidia_driver__debian_security_mirror"] == ""
    assert "bookworm-security" not in role.render("debian-nonfree.sources.j2")


@pytest.mark.parametrize(
    ("text", "version", "flavor"),
    [
        (
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release Build  (dvs-builder@U16-I3-B03-4-3)  Tue Sep 23 2025\n"
            "GCC version:  gcc version 13.3.0 (Ubuntu 13.3.0-6ubuntu2~24.04)\n",
            "580.95.05",
            "open",
        ),
        ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024\n", "535.183.01", "proprietary"),
    ],
)
def test_loaded_driver_parsing(text, version, flavor):
    role = RoleRender("nvidia_driver", UBUNTU_2404)
    role.variables["nvidia_driver__loaded_files"] = {"results": [{"content": _b64(text)}, {"content": _b64(version + "\n")}]}
    role.set_facts("facts.yml", "Record the loaded driver")
    assert role.variables["nvidia_driver_loaded_version"] == version
    assert role.variables["nvidia_driver_loaded_flavor"] == flavor
    assert role.variables["nvidia_driver_loaded_source"] == "/proc/driver/nvidia/version"


def test_loaded_driver_from_sysfs_only():
    role = RoleRender("nvidia_driver", UBUNTU_2404)
    role.variables["nvidia_driver__loaded_files"] = {"results": [{"failed": True}, {"content": _b64("570.172.08\n")}]}
    role.set_facts("facts.yml", "Record the loaded driver")
    assert role.variables["nvidia_driver_loaded_version"] == "570.172.08"
    assert role.variables["nvidia_driver_loaded_source"] == "/sys/module/nvidia/version"


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def verify_role(loaded, branch, version="", mode="verify"):
    role = RoleRender("nvidia_driver", UBUNTU_2404, nvidia_driver_branch=branch, nvidia_driver_version=version, nvidia_driver_mode=mode)
    role.variables.update(
        nvidia_driver_loaded_version=loaded,
        nvidia_driver_loaded_source="/proc/driver/nvidia/version",
        nvidia_driver_loaded_flavor="open",
        nvidia_driver_nvml_driver_version=loaded,
    )
    role.set_facts("verify.yml", "Decide which driver version to compare")
    return role


def test_verify_mode_accepts_the_pinned_branch():
    assert evaluate_assert(verify_role("580.159.04", "580"), "verify.yml", "Compare the loaded driver with the pin")[0]


def test_verify_mode_reports_a_branch_mismatch_clearly():
    passed, message = evaluate_assert(verify_role("580.159.04", "570"), "verify.yml", "Compare the loaded driver with the pin")
    assert not passed
    assert "loaded NVIDIA driver is 580.159.04 (branch 580, read from /proc/driver/nvidia/version)" in message
    assert "nvidia_driver_branch is 570" in message
    assert "nothing was changed" in message


def test_verify_mode_checks_an_exact_version():
    passed, message = evaluate_assert(verify_role("580.159.04", "580", "580.95.05"), "verify.yml", "Compare the loaded driver with the pin")
    assert not passed
    assert "nvidia_driver_version is 580.95.05" in message


def test_verify_mode_falls_back_to_nvml():
    role = verify_role("", "580")
    role.variables["nvidia_driver_nvml_driver_version"] = "580.159.04"
    role.set_facts("verify.yml", "Decide which driver version to compare")
    assert role.variables["nvidia_driver__running_version"] == "580.159.04"
    assert role.variables["nvidia_driver__running_source"] == "NVML"
