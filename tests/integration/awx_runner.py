# Copyright: (c) 2026, llmops.inference maintainers
# Apache License 2.0 (see LICENSE)
"""Run the job templates of awx/templates.yml the way AWX runs them.

AWX launches a job by building a private data directory and handing it to
ansible-runner inside the execution environment:

- the project (here: this repository) is the working directory;
- the inventory is what the inventory source's sync stored:
  ``ansible-inventory --list --export -i SOURCE`` (AWX's own command line),
  served back to the job as an inventory script;
- extra vars are the template's extra_vars, then the survey defaults (those
  that pass the survey's own validation), then the launch answers, then the
  credentials' extra_vars injectors;
- credentials: custom types' env injectors become the job's environment,
  the vault password is answered at ``--ask-vault-pass``'s prompt (runner's
  ``passwords``), never written to a file the playbook can read;
- ``job_type: check`` adds ``--check``; a limit adds ``--limit``.

The execution environment's collections are the collection tarball built
from this checkout and installed into a directory of its own, as the image
installs it (execution-environment.yml).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import shutil
import stat
import subprocess
import sys

import ansible_runner
import jinja2.sandbox
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret
from awxkit.yaml_file import Loader as AwxkitLoader

REPO = pathlib.Path(__file__).resolve().parents[2]
VENV_BIN = pathlib.Path(sys.executable).parent


def load_assets() -> dict:
    assets: dict = {}
    for name in ("credentials.yml", "templates.yml"):
        with open(REPO / "awx" / name, encoding="utf-8") as stream:
            for key, value in yaml.load(stream, Loader=AwxkitLoader).items():  # noqa: S506  # awx import's loader
                assets.setdefault(key, []).extend(value)
    return assets


def survey_defaults(template: dict) -> dict:
    """AWX's rule: a question's default is passed when it is not None and
    passes the question's own validation (min/max length, choices)."""
    if not template.get("survey_enabled"):
        return {}
    found = {}
    for question in template["related"]["survey_spec"]["spec"]:
        default = question.get("default")
        if default is None:
            continue
        if question["type"] in ("text", "textarea", "password"):
            if not question.get("min", 0) <= len(default) <= question.get("max", 1 << 20):
                continue
        if question["type"] == "multiplechoice" and default not in question["choices"]:
            continue
        found[question["variable"]] = default
    return found


@dataclasses.dataclass
class Job:
    template: str
    status: str
    rc: int
    events: list
    stdout: str
    artifact_dir: pathlib.Path
    private_data_dir: pathlib.Path

    @property
    def stats(self) -> dict:
        final = [e for e in self.events if e.get("event") == "playbook_on_stats"]
        return final[-1]["event_data"] if final else {}

    def failed_messages(self) -> list[str]:
        return [str(e["event_data"].get("res", {}).get("msg", "")) for e in self.events if e.get("event") == "runner_on_failed"]


class AwxEmulator:
    """Launches job templates and workflows from awx/*.yml with ansible-runner."""

    def __init__(
        self,
        workdir: pathlib.Path,
        source_inventory: pathlib.Path,
        *,
        hf_token: str,
        vault_password: str,
        vaulted_vars: dict,
        inventory_overrides: dict,
        env: dict,
    ):
        self.workdir = workdir
        self.assets = load_assets()
        self.hf_token = hf_token
        self.vault_password = vault_password
        self.env = env
        self.collections = self._install_collection()
        self.inventory_json = self._sync_inventory(source_inventory, vaulted_vars, inventory_overrides)
        self.jobs: list[Job] = []

    # --- the execution environment and the inventory sync -------------------
    def _install_collection(self) -> pathlib.Path:
        build = self.workdir / "ee-build"
        target = self.workdir / "ee-collections"
        subprocess.run(
            [str(VENV_BIN / "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(build), str(REPO)],
            check=True,
            capture_output=True,
            text=True,
        )
        tarball = next(build.glob("llmops-inference-*.tar.gz"))
        subprocess.run(
            [str(VENV_BIN / "ansible-galaxy"), "collection", "install", "--force", "--no-deps", "-p", str(target), str(tarball)],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(target)},
        )
        return target

    def _sync_inventory(self, source: pathlib.Path, vaulted: dict, overrides: dict) -> pathlib.Path:
        """What the inventory source's update stores, with the group `all`'s
        secrets replaced by inline-vaulted values (as inventories/example
        keeps them: vault_* variables encrypted with ansible-vault)."""
        proc = subprocess.run(
            [str(VENV_BIN / "ansible-inventory"), "--list", "--export", "-i", str(source)], check=True, capture_output=True, text=True, cwd=REPO, env=self.env
        )
        data = json.loads(proc.stdout)
        vault = VaultLib([("default", VaultSecret(self.vault_password.encode()))])
        all_vars = data.setdefault("all", {}).setdefault("vars", {})
        for name, plaintext in vaulted.items():
            all_vars[name] = {"__ansible_vault": vault.encrypt(plaintext).decode()}
        all_vars.update(overrides)
        path = self.workdir / "inventory.json"
        path.write_text(json.dumps(data))
        path.chmod(0o600)
        return path

    # --- credentials ----------------------------------------------------------
    def _credential_injection(self, template: dict) -> tuple[dict, dict, bool]:
        env, extra, vault = {}, {}, False
        types = {t["name"]: t for t in self.assets["credential_types"]}
        inputs = {"llmops Hugging Face token": {"hf_token": self.hf_token}}
        sandbox = jinja2.sandbox.ImmutableSandboxedEnvironment()
        for cred in template["related"]["credentials"]:
            ctype = cred["credential_type"]
            if ctype["kind"] == "vault":
                vault = True
            elif ctype["name"] in types:
                injectors = types[ctype["name"]]["injectors"]
                values = inputs[cred["name"]]
                env.update({k: sandbox.from_string(v).render(**values) for k, v in injectors.get("env", {}).items()})
                extra.update({k: sandbox.from_string(v).render(**values) for k, v in injectors.get("extra_vars", {}).items()})
            # Machine (ssh): the lab host is reached through podman, not SSH.
        return env, extra, vault

    # --- launching --------------------------------------------------------------
    def template(self, name: str) -> dict:
        return next(t for t in self.assets["job_templates"] if t["name"] == name)

    def launch(self, name: str, answers: dict | None = None, limit: str = "") -> Job:
        template = self.template(name)
        ident = f"{len(self.jobs) + 1:02d}-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}"
        private = self.workdir / "jobs" / ident
        (private / "inventory").mkdir(parents=True)
        script = private / "inventory" / "hosts"
        script.write_text(f"#!/bin/sh\nexec cat {self.inventory_json}\n")
        script.chmod(stat.S_IRWXU)
        cred_env, cred_extra, vault = self._credential_injection(template)
        extravars = {**(yaml.safe_load(template.get("extra_vars") or "---") or {}), **survey_defaults(template), **(answers or {}), **cred_extra}
        cmdline = []
        if template["job_type"] == "check":
            cmdline.append("--check")
        if limit:
            cmdline += ["--limit", limit]
        passwords = {}
        if vault:
            cmdline.append("--ask-vault-pass")
            passwords[r"Vault password:\s*?$"] = self.vault_password
        runner = ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(REPO),
            playbook=template["playbook"],
            inventory=str(script),
            extravars=extravars,
            passwords=passwords,
            cmdline=" ".join(cmdline),
            envvars={
                **cred_env,
                "ANSIBLE_COLLECTIONS_PATH": str(self.collections),
                "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
                "CONTAINERS_CONF": self.env["CONTAINERS_CONF"],
                "ANSIBLE_NOCOLOR": "1",
            },
            ident=ident,
            quiet=True,
            settings={"pexpect_timeout": 10},
            timeout=int(template.get("timeout") or 0) or None,
        )
        stdout_path = private / "artifacts" / ident / "stdout"
        job = Job(
            template=name,
            status=runner.status,
            rc=runner.rc,
            events=list(runner.events),
            stdout=stdout_path.read_text() if stdout_path.exists() else "",
            artifact_dir=private / "artifacts" / ident,
            private_data_dir=private,
        )
        self.jobs.append(job)
        return job

    def run_workflow(self, name: str, answers_by_node: dict | None = None) -> tuple[str, list[tuple[str, Job]]]:
        """Follow the workflow's nodes: start at nodes no edge points to; after
        a node, its success_nodes (or failure_nodes) and always_nodes run.
        The workflow fails when a node fails and no failure path handles it."""
        workflow = next(w for w in self.assets["workflow_job_templates"] if w["name"] == name)
        nodes = {n["identifier"]: n for n in workflow["related"]["workflow_nodes"]}
        targets = {t["identifier"] for n in nodes.values() for edge in ("success_nodes", "failure_nodes", "always_nodes") for t in n["related"][edge]}
        queue = [i for i in nodes if i not in targets]
        ran, status = [], "successful"
        while queue:
            identifier = queue.pop(0)
            node = nodes[identifier]
            job = self.launch(node["unified_job_template"]["name"], {**node.get("extra_data", {}), **(answers_by_node or {}).get(identifier, {})})
            ran.append((identifier, job))
            edge = "success_nodes" if job.status == "successful" else "failure_nodes"
            following = node["related"][edge] + node["related"]["always_nodes"]
            if job.status != "successful" and not node["related"]["failure_nodes"]:
                status = "failed"
            queue += [t["identifier"] for t in following]
        return status, ran


def find_secrets(job: Job, secrets: dict) -> list[str]:
    """Every place (job event, artifact file) where a secret appears. The
    artifact `command` is runner's record of the job's command line and
    environment (see secrets_in_command)."""
    found = []
    for event in job.events:
        blob = json.dumps(event)
        for label, secret in secrets.items():
            if secret in blob:
                found.append(f"{label} in job event {event.get('counter')} ({event.get('event')})")
    for path in sorted(job.artifact_dir.rglob("*")):
        if path.is_file() and path.name != "command":
            text = path.read_text(errors="replace")
            for label, secret in secrets.items():
                if secret in text:
                    found.append(f"{label} in {path.relative_to(job.private_data_dir)}")
    for label, secret in secrets.items():
        if secret in job.stdout:
            found.append(f"{label} in stdout")
    return found


def secrets_in_command(job: Job, secrets: dict) -> dict:
    """What runner's `command` artifact holds: the argv (which must hold no
    secret) and the environment (where env injectors put theirs)."""
    data = json.loads((job.artifact_dir / "command").read_text())
    argv = " ".join(data["command"])
    env = json.dumps(data["env"])
    mode = stat.S_IMODE((job.artifact_dir / "command").stat().st_mode)
    return {
        "argv": [label for label, s in secrets.items() if s in argv],
        "env": [label for label, s in secrets.items() if s in env],
        "mode": oct(mode),
    }


def remove(path: pathlib.Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
