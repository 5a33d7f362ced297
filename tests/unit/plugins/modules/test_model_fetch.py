"""The module's DOCUMENTATION and argument_spec agree (what ansible-test validate-modules checks), and docs parse."""

from __future__ import annotations

import pytest
import yaml

from ansible_collections.llmops.inference.plugins.module_utils.model_fetch import DEFAULTS
from ansible_collections.llmops.inference.plugins.modules import model_fetch


class _Captured(Exception):
    pass


def argument_spec(monkeypatch):
    """The argument_spec that main() passes to AnsibleModule (as validate-modules sees it)."""
    seen = {}

    def fake(**kwargs):
        seen.update(kwargs)
        raise _Captured()

    monkeypatch.setattr(model_fetch, "AnsibleModule", fake)
    with pytest.raises(_Captured):
        model_fetch.main()
    return seen["argument_spec"]


def _compare(spec, doc, where):
    assert set(spec) == set(doc), "%s: spec %s vs doc %s" % (where, sorted(spec), sorted(doc))
    for name, s in spec.items():
        d = doc[name]
        assert s.get("type", "str") == d.get("type", "str"), (where, name)
        assert s.get("default") == d.get("default"), (where, name, s.get("default"), d.get("default"))
        assert bool(s.get("required")) == bool(d.get("required")), (where, name)
        assert s.get("choices") == d.get("choices"), (where, name)
        assert s.get("elements") == d.get("elements"), (where, name)
        assert d.get("description"), (where, name)
        if "options" in s:
            _compare(s["options"], d["suboptions"], "%s.%s" % (where, name))


def test_documentation_matches_argument_spec(monkeypatch):
    doc = yaml.safe_load(model_fetch.DOCUMENTATION)
    assert doc["module"] == "model_fetch"
    _compare(argument_spec(monkeypatch), doc["options"], "options")


def test_spec_defaults_come_from_module_utils(monkeypatch):
    spec = argument_spec(monkeypatch)
    for name, option in spec.items():
        if "default" in option:
            assert option["default"] == DEFAULTS[name], name
    assert {"connections", "chunk_size", "progress_file", "progress_id"} <= set(spec)


def test_token_is_no_log(monkeypatch):
    spec = argument_spec(monkeypatch)
    assert spec["token"]["no_log"] is True
    assert [k for k, v in spec.items() if v.get("no_log")] == ["token"]


def test_examples_and_return_parse():
    examples = yaml.safe_load(model_fetch.EXAMPLES)
    assert all("llmops.inference.model_fetch" in task for task in examples)
    ret = yaml.safe_load(model_fetch.RETURN)
    for key in ("files", "bytes_transferred", "elapsed", "throughput", "commit", "dest", "progress", "progress_file", "failures"):
        assert key in ret
    for key in ("replaced", "restarted", "attempts", "connections"):
        assert key in ret["files"]["contains"]
    assert yaml.safe_load(model_fetch.DOCUMENTATION)["seealso"]
