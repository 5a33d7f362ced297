"""The module's DOCUMENTATION and argument_spec agree (what ansible-test validate-modules checks), and docs parse."""

from __future__ import annotations

import yaml

from ansible_collections.llmops.inference.plugins.modules import model_fetch


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


def test_documentation_matches_argument_spec():
    doc = yaml.safe_load(model_fetch.DOCUMENTATION)
    assert doc["module"] == "model_fetch"
    _compare(model_fetch.argument_spec(), doc["options"], "options")


def test_token_is_no_log():
    spec = model_fetch.argument_spec()
    assert spec["token"]["no_log"] is True
    assert [k for k, v in spec.items() if v.get("no_log")] == ["token"]


def test_examples_and_return_parse():
    examples = yaml.safe_load(model_fetch.EXAMPLES)
    assert all("llmops.inference.model_fetch" in task for task in examples)
    ret = yaml.safe_load(model_fetch.RETURN)
    for key in ("files", "bytes_transferred", "elapsed", "throughput", "commit", "dest"):
        assert key in ret
