"""One Secure Boot probe (preflight's secure_boot_state.yml), one meaning, used by preflight and nvidia_driver."""

from __future__ import annotations

import pytest

from gpu_stack_render import UBUNTU_2404, RoleRender, evaluate_assert

NOT_RUN = {"skipped": True}


def probe(efi, efivar=None, mokutil=None):
    role = RoleRender("preflight", UBUNTU_2404)
    role.variables.update(preflight__efi={"stat": {"exists": efi}}, preflight__sb_efivar=efivar or NOT_RUN, preflight__sb_mokutil=mokutil or NOT_RUN)
    role.set_facts("secure_boot_state.yml", "Secure Boot | Record its state")
    return role.variables["preflight_secure_boot_enabled"], role.variables["preflight__secure_boot_source"].strip()


@pytest.mark.parametrize(
    ("efi", "efivar", "mokutil", "state", "source"),
    [
        (False, NOT_RUN, NOT_RUN, None, "not EFI"),
        (True, {"rc": 0, "stdout": "   1\n"}, NOT_RUN, True, "efivars"),
        (True, {"rc": 0, "stdout": "   0\n"}, NOT_RUN, False, "efivars"),
        (True, {"rc": 1, "stdout": ""}, {"rc": 0, "stdout": "SecureBoot enabled\n", "stderr": ""}, True, "mokutil"),
        (True, {"rc": 1, "stdout": ""}, {"rc": 0, "stdout": "SecureBoot disabled\n", "stderr": ""}, False, "mokutil"),
        (True, {"rc": 1, "stdout": ""}, {"rc": 2, "stdout": "", "stderr": "No such file"}, None, "unreadable (no efivars, no mokutil)"),
    ],
)
def test_probe_states(efi, efivar, mokutil, state, source):
    assert probe(efi, efivar, mokutil) == (state, source)


def test_mokutil_is_asked_only_when_the_efi_variable_is_unreadable():
    role = RoleRender("preflight", UBUNTU_2404)
    role.variables["preflight__efi"] = {"stat": {"exists": True}}
    task = "Secure Boot | Ask mokutil when the EFI variable could not be read"
    assert not role.when("secure_boot_state.yml", task, preflight__sb_efivar={"rc": 0, "stdout": "1"})
    assert role.when("secure_boot_state.yml", task, preflight__sb_efivar={"rc": 1, "stdout": ""})


def test_both_roles_run_the_same_probe():
    preflight = RoleRender("preflight", UBUNTU_2404)
    assert preflight.module_args("secure_boot.yml", "Secure Boot | Read its state") == ("ansible.builtin.import_tasks", "secure_boot_state.yml")
    driver = RoleRender("nvidia_driver", UBUNTU_2404)
    module, args = driver.module_args("secure_boot.yml", "Read the Secure Boot state (preflight's probe)")
    assert (module, args) == ("ansible.builtin.include_role", {"name": "llmops.inference.preflight", "tasks_from": "secure_boot_state"})


@pytest.mark.parametrize(("state", "policy", "passes"), [(True, "fail", False), (True, "mok", True), (False, "fail", True), (None, "fail", True)])
def test_nvidia_driver_stops_only_when_secure_boot_is_on_and_the_policy_is_fail(state, policy, passes):
    role = RoleRender("nvidia_driver", UBUNTU_2404, nvidia_driver_secure_boot_policy=policy)
    role.variables["preflight_secure_boot_enabled"] = state
    passed, message = evaluate_assert(role, "secure_boot.yml", "Stop when Secure Boot would refuse the modules")
    assert passed is passes
    if not passes:
        assert "nvidia_driver_secure_boot_policy" in message and "mokutil --import" in message
