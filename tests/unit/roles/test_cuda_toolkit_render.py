"""cuda_toolkit: repository, package, profile script and the driver table."""

from __future__ import annotations

import base64

import pytest

from gpu_stack_render import DEBIAN_12, UBUNTU_2204, UBUNTU_2404, RoleRender, evaluate_assert


def resolved(ansible_facts, **overrides):
    role = RoleRender("cuda_toolkit", ansible_facts, **overrides)
    role.set_facts("validate.yml", "Resolve the driver table")
    return role


@pytest.mark.parametrize("ansible_facts", [UBUNTU_2204, UBUNTU_2404, DEBIAN_12])
def test_package(ansible_facts):
    role = resolved(ansible_facts)
    module, args = role.module_args("install.yml", "Install {{ cuda_toolkit_package }}")
    assert (module, args["name"]) == ("ansible.builtin.apt", "cuda-toolkit-12-8")
    assert "CUDA_HOME=/usr/local/cuda-12.8" in role.render("cuda.sh.j2")


def test_apt_lists_are_refreshed_only_when_the_repository_changed():
    role = resolved(UBUNTU_2404)
    assert role.when("repository.yml", "Refresh apt's package lists", cuda_repository_changed=True)
    assert not role.when("repository.yml", "Refresh apt's package lists", cuda_repository_changed=False)


def test_profile_script_sets_path_and_library_path():
    script = resolved(UBUNTU_2404, cuda_toolkit_version="13.0").render("cuda.sh.j2")
    assert "CUDA_HOME=/usr/local/cuda-13.0" in script
    assert 'PATH="${CUDA_HOME}/bin${PATH:+:${PATH}}"' in script
    assert 'LD_LIBRARY_PATH="${CUDA_HOME}/lib64${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}"' in script


def driver_check(version, driver, policy="toolkit", **overrides):
    role = resolved(UBUNTU_2404, cuda_toolkit_version=version, cuda_toolkit_driver_check=policy, cuda_toolkit_driver_version=driver, **overrides)
    role.variables["cuda_toolkit__proc_version"] = {"failed": True}
    role.set_facts("driver.yml", "Decide which driver version to check")
    return evaluate_assert(role, "driver.yml", "Check that the driver is new enough for CUDA {{ cuda_toolkit_version }}")


@pytest.mark.parametrize(
    ("version", "driver", "ok"),
    [
        ("12.8", "570.26", True),
        ("12.8", "570.172.08", True),
        ("12.8", "565.57.01", False),
        ("12.8", "550.163.01", False),
        ("13.0", "580.159.04", True),
        ("13.0", "575.57.08", False),
        ("12.9", "575.51.03", True),
        ("12.4", "550.54.14", True),
    ],
)
def test_toolkit_driver_table(version, driver, ok):
    passed, message = driver_check(version, driver)
    assert passed is ok
    if not ok:
        assert f"CUDA {version} needs NVIDIA driver >=" in message
        assert f"but the driver is {driver}" in message
        assert "nvidia_driver_branch" in message


def test_minor_version_compatibility_accepts_older_driver_of_the_major():
    assert driver_check("12.8", "535.247.01", policy="minor_version")[0] is True
    assert driver_check("13.0", "575.57.08", policy="minor_version")[0] is False


def test_unknown_release_names_the_override_variable():
    role = resolved(UBUNTU_2404, cuda_toolkit_version="13.5")
    passed, message = evaluate_assert(role, "validate.yml", "Check that the release is in the driver table")
    assert not passed
    assert "cuda_toolkit_min_driver_overrides" in message
    role = resolved(UBUNTU_2404, cuda_toolkit_version="13.5", cuda_toolkit_min_driver_overrides={"13.5": "595.10"})
    assert role.variables["cuda_toolkit__min_driver"] == "595.10"


def test_no_driver_found_message():
    role = resolved(UBUNTU_2404)
    role.variables["cuda_toolkit__proc_version"] = {"failed": True}
    role.set_facts("driver.yml", "Decide which driver version to check")
    passed, message = evaluate_assert(role, "driver.yml", "Check that the driver is new enough for CUDA {{ cuda_toolkit_version }}")
    assert not passed
    assert "No NVIDIA driver found" in message and "cuda_toolkit_driver_check: skip" in message


def test_loaded_driver_is_read_from_proc():
    role = resolved(UBUNTU_2404, cuda_toolkit_version="13.0")
    text = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build\n"
    role.variables["cuda_toolkit__proc_version"] = {"content": base64.b64encode(text.encode()).decode()}
    role.set_facts("driver.yml", "Decide which driver version to check")
    assert role.variables["cuda_toolkit__driver"] == "580.159.04"
    assert evaluate_assert(role, "driver.yml", "Check that the driver is new enough for CUDA {{ cuda_toolkit_version }}")[0]
