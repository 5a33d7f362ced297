"""Every collection whose modules the roles and playbooks call is declared in
galaxy.yml (what `ansible-galaxy collection install llmops.inference` pulls in)
and requirements.yml (what the docs tell users to install)."""

from __future__ import annotations

import pathlib
import re

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
# A task's module key: "  community.crypto.x509_certificate:" or "- ansible.posix.sysctl:".
FQCN_KEY = re.compile(r"^\s*(?:- )?([a-z0-9_]+)\.([a-z0-9_]+)\.[a-z0-9_]+:\s*$", re.MULTILINE)
# Shipped with ansible-core or this collection itself: nothing to declare.
BUILT_IN = {"ansible.builtin", "llmops.inference"}


def used_collections() -> dict[str, str]:
    """Collection name -> one file that calls a module of it."""
    used = {}
    for root in ("roles", "playbooks"):
        for path in sorted((REPO / root).rglob("*.yml")):
            for namespace, name in FQCN_KEY.findall(path.read_text(encoding="utf-8")):
                used.setdefault(f"{namespace}.{name}", str(path.relative_to(REPO)))
    return {name: path for name, path in used.items() if name not in BUILT_IN}


def test_the_scan_finds_the_collections_we_know_we_use():
    # Guards the regular expression: if it stopped matching, the tests below would pass on nothing.
    assert {"community.crypto", "containers.podman"} <= set(used_collections())


def test_galaxy_yml_declares_every_collection_used():
    declared = set(yaml.safe_load((REPO / "galaxy.yml").read_text())["dependencies"])
    missing = {name: path for name, path in used_collections().items() if name not in declared}
    assert not missing, f"add to galaxy.yml dependencies (collection: a file using it): {missing}"


def test_requirements_yml_declares_every_collection_used():
    requirements = yaml.safe_load((REPO / "requirements.yml").read_text())
    declared = {entry["name"] for entry in requirements["collections"]}
    missing = {name: path for name, path in used_collections().items() if name not in declared}
    assert not missing, f"add to requirements.yml (collection: a file using it): {missing}"
