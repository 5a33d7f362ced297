"""Render the GPU-stack roles' real files with Ansible's Templar.

Tasks' ``set_fact`` expressions, module arguments, ``when`` conditions and
asserts, ``vars/``, ``defaults/`` and ``templates/`` are read from the roles
themselves (never typed again in a test), so the assertions check what a
play would compute for the given facts, without a host, and a change to a
task's expression changes what the tests see.
"""

from __future__ import annotations

import pathlib

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
ROLES = REPO_ROOT / "roles"

_LOADER = DataLoader()


def trust(value):
    """Mark every string as a template, as Ansible does for role files."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {key: trust(item) for key, item in value.items()}
    if isinstance(value, list):
        return [trust(item) for item in value]
    return value


def load_yaml(path):
    return _LOADER.load_from_file(str(path))


def facts(distribution, version, release, arch="x86_64", **extra):
    out = {
        "distribution": distribution,
        "distribution_version": version,
        "distribution_major_version": version.split(".")[0],
        "distribution_release": release,
        "architecture": arch,
        "kernel": "6.8.0-31-generic",
        "os_family": "Debian",
        "virtualization_type": "kvm",
        "virtualization_role": "host",
    }
    out.update(extra)
    return out


UBUNTU_2204 = facts("Ubuntu", "22.04", "jammy")
UBUNTU_2404 = facts("Ubuntu", "24.04", "noble")
DEBIAN_12 = facts("Debian", "12.15", "bookworm")


# Task keywords; any other key of a task is its module.
TASK_KEYWORDS = {
    "name", "vars", "when", "register", "loop", "loop_control", "changed_when", "failed_when", "check_mode",
    "ignore_errors", "no_log", "notify", "tags", "become", "become_user", "environment", "block", "rescue", "always",
    "delegate_to", "run_once", "until", "retries", "delay", "listen", "args", "diff", "throttle",
}


def find_task(tasks, name):
    for task in tasks or []:
        if task.get("name") == name:
            return task
        for key in ("block", "rescue", "always"):
            found = find_task(task.get(key), name)
            if found is not None:
                return found
    return None


class RoleRender:
    """Variables of one role (defaults, vars, overrides) and a Templar."""

    def __init__(self, role, ansible_facts, **overrides):
        self.role = ROLES / role
        self.variables = {}
        for name in ("defaults/main.yml", "vars/main.yml"):
            path = self.role / name
            if path.exists():
                self.variables.update(trust(load_yaml(path)) or {})
        self.variables.update(trust(overrides))
        self.variables["ansible_facts"] = ansible_facts
        self.variables["ansible_managed"] = "Ansible managed"
        self.variables["ansible_check_mode"] = False
        self.variables["inventory_hostname"] = "gpu-01"

    def templar(self):
        return Templar(loader=_LOADER, variables=self.variables)

    def value(self, expression):
        return self.templar().template(trust_as_template(expression))

    def task(self, task_file, task_name):
        """The named task of roles/ROLE/tasks/TASK_FILE, found in blocks too."""
        task = find_task(load_yaml(self.role / "tasks" / task_file), task_name)
        assert task is not None, f"no task {task_name!r} in {self.role.name}/tasks/{task_file}"
        return task

    def task_templar(self, task, **extra):
        local = dict(self.variables)
        local.update(trust(task.get("vars", {})))
        local.update(extra)
        return Templar(loader=_LOADER, variables=local)

    def set_facts(self, task_file, task_name):
        """Evaluate the set_fact of the named task and keep its results."""
        task = self.task(task_file, task_name)
        templar = self.task_templar(task)
        for key, expression in task["ansible.builtin.set_fact"].items():
            self.variables[key] = templar.template(trust(expression))
        return self

    def module_args(self, task_file, task_name, **extra):
        """(module, arguments) of the named task, its expressions rendered as a play would."""
        task = self.task(task_file, task_name)
        module = next(key for key in task if key not in TASK_KEYWORDS)
        return module, self.task_templar(task, **extra).template(trust(task[module]))

    def args(self, task_file, task_name, **extra):
        """The rendered module arguments of the named task."""
        return self.module_args(task_file, task_name, **extra)[1]

    def when(self, task_file, task_name, **extra):
        """Whether the named task's `when` conditions all hold."""
        task = self.task(task_file, task_name)
        conditions = task.get("when", [])
        templar = self.task_templar(task, **extra)
        return all(templar.template(trust_as_template("{{ (" + str(c) + ") | bool }}")) for c in (conditions if isinstance(conditions, list) else [conditions]))

    def render(self, template_name):
        text = (self.role / "templates" / template_name).read_text()
        return self.templar().template(trust_as_template(text))


def evaluate_assert(role, task_file, task_name):
    """Evaluate an assert task's conditions; return (passed, rendered fail_msg)."""
    task = role.task(task_file, task_name)
    templar = role.task_templar(task)
    args = task["ansible.builtin.assert"]
    message = templar.template(trust_as_template(str(args.get("fail_msg", ""))))
    # Like ansible.builtin.assert: the first false condition ends the check.
    for condition in args["that"]:
        if not templar.template(trust_as_template("{{ (" + str(condition) + ") | bool }}")):
            return False, message
    return True, message
