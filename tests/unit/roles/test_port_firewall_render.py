"""port_firewall: the nftables rules and loader unit its callers get, rendered from the role's own files.

Loading them for real (nft in a container's network namespace, drops seen
from a third host) is molecule/fleet's test_fleet.py.
"""

from __future__ import annotations

import re

from gpu_stack_render import DEBIAN_12, RoleRender, evaluate_assert


def firewall(**overrides):
    return RoleRender("port_firewall", DEBIAN_12, **{"port_firewall_name": "backend", **overrides})


def test_ports_accept_loopback_and_each_address_family_from_its_own_set():
    role = firewall(port_firewall_ports=[18000, "18001"],
                    port_firewall_sources=["10.0.0.5", "10.1.0.0/24", "fd00::7", "10.0.0.5"])
    rules = role.render("firewall.nft.j2")
    assert rules.startswith("#!/usr/sbin/nft -f\n")
    assert "table inet llmops_backend {" in rules and "delete table inet llmops_backend" in rules
    assert re.search(r"set allowed4 \{[^}]*elements = \{ 10\.0\.0\.5, 10\.1\.0\.0/24 \}", rules)
    assert re.search(r"set allowed6 \{[^}]*elements = \{ fd00::7 \}", rules)
    ports = "tcp dport { 18000, 18001 }"
    lines = [line.strip() for line in rules.splitlines()]
    assert lines.index(f'iif "lo" {ports} accept') < lines.index(f"{ports} counter drop")
    assert f"ip saddr @allowed4 {ports} accept" in lines and f"ip6 saddr @allowed6 {ports} accept" in lines


def test_no_sources_leaves_loopback_only_and_no_ports_no_rules():
    loopback_only = firewall(port_firewall_ports=[9100]).render("firewall.nft.j2")
    assert "set allowed" not in loopback_only and "tcp dport { 9100 } counter drop" in loopback_only
    empty = firewall(port_firewall_ports=[]).render("firewall.nft.j2")
    assert "tcp dport" not in empty and "chain input {" in empty


def test_the_loader_unit_orders_the_listeners_after_it_and_deletes_its_table_on_stop():
    unit = firewall(port_firewall_ports=[9100], port_firewall_name="exporter", port_firewall_table="llmops_exporters",
                    port_firewall_before=["prometheus-node-exporter.service"]).render("firewall.service.j2")
    assert "Before=network-pre.target prometheus-node-exporter.service\n" in unit
    assert "ExecStart=/usr/sbin/nft -f /etc/llmops/exporter-firewall.nft\n" in unit
    assert "ExecStop=/usr/sbin/nft delete table inet llmops_exporters\n" in unit


def test_a_port_out_of_range_is_refused_naming_the_variable():
    passed, message = evaluate_assert(firewall(port_firewall_ports=[18000, 70000]), "main.yml",
                                      "Check the firewall's name and ports")
    assert not passed and "port_firewall_ports" in message and "1 to 65535" in message
    assert evaluate_assert(firewall(port_firewall_ports=[18000]), "main.yml", "Check the firewall's name and ports")[0]


def test_nginx_mtls_guards_each_running_models_backend_port():
    role = RoleRender("nginx_mtls", DEBIAN_12, vllm_models=[
        {"name": "a", "port": 8000}, {"name": "b", "port": "8001", "state": "started"},
        {"name": "c", "port": 8002, "state": "stopped"}])
    assert role.value("{{ nginx_mtls__self_backend_ports }}") == [18000, 18001]
