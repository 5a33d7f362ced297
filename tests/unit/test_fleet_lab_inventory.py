"""inventories/fleet_lab must stay inventories/example with the host names
replaced, plus the lab's overlay files (zz_lab.yml): the fleet lab and
molecule/fleet then prove the example inventory itself."""

from __future__ import annotations

import pathlib

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "inventories" / "example"
LAB = REPO / "inventories" / "fleet_lab"
NAMES = {
    "gpu-01.example.internal": "llmops-fleet-inf1",
    "gpu-02.example.internal": "llmops-fleet-inf2",
    "llm-gw-01.example.internal": "llmops-fleet-gw",
}
OVERLAY = "zz_lab.yml"


def files(root: pathlib.Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_hosts_are_the_example_with_names_replaced():
    text = (EXAMPLE / "hosts.yml").read_text()
    for old, new in NAMES.items():
        assert old in text, f"inventories/example/hosts.yml no longer names {old}; update NAMES here and the lab"
        text = text.replace(old, new)
    assert (LAB / "hosts.yml").read_text() == text


def test_group_vars_are_the_example_plus_overlays():
    example = files(EXAMPLE)
    lab = files(LAB)
    assert example <= lab, f"missing in inventories/fleet_lab: {sorted(example - lab)}"
    extra = lab - example
    assert extra and all(pathlib.PurePath(p).name == OVERLAY for p in extra), sorted(extra)
    for rel in example - {"hosts.yml"}:
        assert (LAB / rel).read_text() == (EXAMPLE / rel).read_text(), f"{rel} differs from inventories/example"


def test_overlays_load_last_and_are_valid_yaml():
    for overlay in LAB.rglob(OVERLAY):
        siblings = sorted(p.name for p in overlay.parent.iterdir())
        assert siblings[-1] == OVERLAY, f"{overlay} must sort last in its directory to win"
        assert isinstance(yaml.safe_load(overlay.read_text()), dict)


def test_every_group_has_hosts():
    inventory = yaml.safe_load((LAB / "hosts.yml").read_text())
    children = inventory["all"]["children"]
    for group in ("inference_hosts", "inference_gateways", "inference_monitoring"):
        assert children[group]["hosts"], group
