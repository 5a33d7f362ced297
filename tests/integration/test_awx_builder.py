# Copyright: (c) 2026, llmops.inference maintainers
# Apache License 2.0 (see LICENSE)
"""`ansible-builder create` turns execution-environment.yml into a build
context that holds this collection, its dependencies and every Python
package the controller side imports.

The image itself is not built here (no registry, and a build downloads a
base image); docs/awx.md says how to build and push it."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# Import name -> distribution, for imports whose names differ.
DISTRIBUTIONS = {"pynvml": "nvidia-ml-py", "yaml": "pyyaml"}
# community.crypto runs on the controller (the mTLS PKI is issued there).
CONTROLLER_CRYPTO = "cryptography"


def _tool(name: str) -> str:
    path = VENV_BIN / name
    assert path.exists(), f"{name} is missing from the venv: pip install -r requirements-test.txt"
    return str(path)


def _requirement_name(line: str) -> str:
    return re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower()


def _third_party_imports(paths: list[Path]) -> set[str]:
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in {"ansible", "ansible_collections", "__future__"}:
                    found.add(DISTRIBUTIONS.get(top, top).lower())
    return found


@pytest.fixture(scope="module")
def build_context(tmp_path_factory):
    """Build the collection tarball where execution-environment.yml expects
    it, then `ansible-builder create` into a fresh directory."""
    work = tmp_path_factory.mktemp("ee")
    shutil.copy(REPO / "execution-environment.yml", work / "execution-environment.yml")
    ee = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    tarball_src = work / ee["additional_build_files"][0]["src"]
    tarball_src.parent.mkdir(parents=True)
    subprocess.run(
        [_tool("ansible-galaxy"), "collection", "build", "--force", "--output-path", str(tarball_src.parent), str(REPO)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert tarball_src.exists(), f"ansible-galaxy built no {tarball_src.name}: fix the version in the EE file"
    context = work / "context"
    result = subprocess.run(
        [_tool("ansible-builder"), "create", "-f", str(work / "execution-environment.yml"), "-c", str(context), "--output-filename", "Containerfile"],
        capture_output=True,
        text=True,
        cwd=work,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {"ee": ee, "context": context, "work": work}


def test_context_has_a_containerfile_and_the_collection(build_context):
    context = build_context["context"]
    containerfile = (context / "Containerfile").read_text()
    assert "ansible-core==2.19.14" in containerfile
    assert "ansible-runner==2.4.3" in containerfile
    assert "quay.io/fedora/fedora:41" in containerfile
    assert "ansible-galaxy collection install" in containerfile
    assert "ansible-galaxy collection list llmops.inference" in containerfile
    tarball = context / "_build" / "collections" / "llmops-inference-0.1.0.tar.gz"
    with tarfile.open(tarball) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))
        names = tar.getnames()
    assert manifest["collection_info"]["namespace"] == "llmops"
    assert manifest["collection_info"]["name"] == "inference"
    for playbook in ("site.yml", "playbooks/preflight.yml", "playbooks/smoke_test.yml", "playbooks/client_access.yml"):
        assert playbook in names, f"{playbook} is not in the collection the EE installs"
    assert not [n for n in names if n.startswith((".venv", ".cache", ".ansible/", ".ruff_cache", ".pytest_cache", ".whl"))]


def test_galaxy_requirements_name_the_collection_and_its_dependencies(build_context):
    requirements = yaml.safe_load((build_context["context"] / "_build" / "requirements.yml").read_text())
    names = {c["name"] for c in requirements["collections"]}
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    assert "collections/llmops-inference-0.1.0.tar.gz" in names
    missing = set(galaxy["dependencies"]) - names
    assert not missing, f"galaxy.yml dependencies missing from the EE: {missing}"
    # Every collection the roles call (FQCN) is in the EE.
    used = set()
    for path in list((REPO / "roles").rglob("*.yml")) + list((REPO / "playbooks").glob("*.yml")):
        used |= set(re.findall(r"^\s*-?\s*((?!ansible\.builtin|llmops\.inference)[a-z_]+\.[a-z_]+)\.[a-z_0-9]+:", path.read_text(), re.MULTILINE))
    assert used, "found no collection modules in the roles"
    assert used <= names, f"collections the roles use but the EE lacks: {used - names}"


def test_python_requirements_cover_the_controller_side(build_context):
    context = build_context["context"]
    pip_lines = [ln for ln in (context / "_build" / "requirements.txt").read_text().splitlines() if ln.strip()]
    pinned = {_requirement_name(ln): ln for ln in pip_lines}
    controller_code = list((REPO / "plugins" / "filter").glob("*.py"))
    needed = _third_party_imports(controller_code) | {CONTROLLER_CRYPTO}
    assert needed <= set(pinned), f"controller-side imports missing from the EE: {needed - set(pinned)}"
    for line in pinned.values():
        assert "==" in line, f"unpinned Python requirement in the EE: {line}"
    # The collection's own requirements.txt (read by ansible-builder's
    # introspection) agrees with the EE's pins.
    for line in (REPO / "requirements.txt").read_text().splitlines():
        name = _requirement_name(line)
        if name in pinned:
            assert line.strip() == pinned[name].strip(), f"{name}: requirements.txt and the EE pin differ"
    assert "openssl" in (context / "_build" / "bindep.txt").read_text()


def test_builder_introspection_of_the_installed_collection(build_context):
    """What the image build's introspect step will compute, run on the
    collection installed from the context's tarball."""
    context, work = build_context["context"], build_context["work"]
    collections = work / "installed"
    subprocess.run(
        [
            _tool("ansible-galaxy"),
            "collection",
            "install",
            "--no-deps",
            "-p",
            str(collections),
            str(context / "_build" / "collections" / "llmops-inference-0.1.0.tar.gz"),
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": ""},
    )
    result = subprocess.run(
        [
            sys.executable,
            str(context / "_build" / "scripts" / "introspect.py"),
            "introspect",
            "--user-pip",
            str(context / "_build" / "requirements.txt"),
            "--user-bindep",
            str(context / "_build" / "bindep.txt"),
            str(collections),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    data = yaml.safe_load(result.stdout)
    python = " ".join(data["python"])
    assert "from collection llmops.inference" in python
    assert "cryptography==" in python and "requests==" in python
    assert "ansible==" not in python, "the full ansible package would be installed into the EE"
