"""The serving_plan module: argument spec vs DOCUMENTATION, check mode, fail/exit paths."""

from __future__ import annotations

import json

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.llmops.inference.plugins.modules import serving_plan as mod

SMOLLM2 = {
    "model_type": "llama", "num_hidden_layers": 30, "hidden_size": 576, "intermediate_size": 1536,
    "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152,
    "max_position_embeddings": 8192, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
}
LLAMA2_13B = {
    "model_type": "llama", "num_hidden_layers": 40, "hidden_size": 5120, "intermediate_size": 13824,
    "num_attention_heads": 40, "num_key_value_heads": 40, "vocab_size": 32000, "max_position_embeddings": 4096,
    "torch_dtype": "float16",
}


def run_module(args, capsys):
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        mod.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def test_cpu_plan_in_check_mode(capsys):
    code, out = run_module({"model_config": SMOLLM2, "weight_bytes": "269060552", "device": "cpu",
                            "cpu_kvcache_space": 1, "_ansible_check_mode": True}, capsys)
    assert code == 0
    assert out["changed"] is False
    assert out["fits"] is True
    assert out["kv_cache_tokens"] == 46592
    assert out["vllm_env"] == {"VLLM_CPU_KVCACHE_SPACE": "1"}
    assert out["vllm_args"]["max_model_len"] == 8192
    assert isinstance(out["explanation"], list) and out["explanation"]


def test_gpu_facts_input(capsys):
    facts = [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559}]
    code, out = run_module({"model_config": SMOLLM2, "weight_bytes": "269060552", "gpus": facts}, capsys)
    assert code == 0
    assert out["vllm_args"]["gpu_memory_utilization"] == 0.9
    assert out["tensor_parallel_size"] == 1


def test_refusal_fails_with_reason_and_fix(capsys):
    code, out = run_module({"model_config": LLAMA2_13B, "gpu_memory": "24GiB", "max_model_len": 4096}, capsys)
    assert code == 1
    assert out["failed"] is True
    assert "does not fit" in out["msg"] and "tensor_parallel_size 2" in out["msg"]
    assert out["fits"] is False


def test_refusal_reported_without_failing(capsys):
    code, out = run_module({"model_config": LLAMA2_13B, "gpu_memory": "24GiB", "enforce": False}, capsys)
    assert code == 0 and out["fits"] is False and out["reason"]
    assert not out.get("deprecations")


def test_old_names_still_work_with_a_deprecation(capsys, monkeypatch):
    # Recorded at the call: whether ansible-core copies deprecations into the
    # result depends on its global state (other tests initialise the controller side).
    calls = []
    monkeypatch.setattr(mod.AnsibleModule, "deprecate", lambda self, msg, **kw: calls.append((msg, kw)))
    code, out = run_module({"model_config": LLAMA2_13B, "gpu_memory": "24GiB", "fail_on_unfit": False,
                            "device": "gpu"}, capsys)
    assert code == 0 and out["fits"] is False
    assert [(kw["version"], kw["collection_name"]) for msg, kw in calls if "device=gpu" in msg] == [
        ("2.0.0", "llmops.inference")]
    # fail_on_unfit: declared as a deprecated alias, so Ansible's argument spec validation warns.
    source = open(mod.__file__).read()
    assert 'deprecated_aliases=[dict(name="fail_on_unfit", version="2.0.0", collection_name="llmops.inference")]' in source


def test_version_and_pipeline_options(capsys):
    facts = [{"index": i, "memory_total_mib": 81559, "memory_reserved_mib": 480} for i in range(2)]
    code, out = run_module({"model_config": LLAMA2_13B, "gpus": facts, "vllm_version": "0.11.0", "max_model_len": 4096,
                            "pipeline_parallel_size": 2, "tensor_parallel_size": 1, "memory_margin": "1GiB"}, capsys)
    assert code == 0 and out["fits"]
    assert out["pipeline_parallel_size"] == 2 and out["vllm_version"] == "0.11.0"
    assert out["memory"]["cuda_total"] == 85017493504 and out["memory"]["margin"] == 1 << 30
    assert out["vllm_args"]["pipeline_parallel_size"] == 2


def test_return_documents_every_key(capsys):
    code, out = run_module({"model_config": SMOLLM2, "weight_bytes": "269060552", "gpu_memory": "24GiB"}, capsys)
    documented = set(yaml.safe_load(mod.RETURN))
    returned = set(out) - {"changed", "invocation", "deprecations", "warnings"}
    assert returned == documented


def test_bad_input_is_a_clear_failure(capsys):
    code, out = run_module({"model_path": "/nonexistent/model", "gpu_memory": "24GiB"}, capsys)
    assert code == 1 and "does not exist" in out["msg"]
    code, out = run_module({"model_config": SMOLLM2, "gpu_memory": "a lot"}, capsys)
    assert code == 1 and "gpu_memory" in out["msg"]


def test_documentation_matches_argument_spec(monkeypatch):
    captured = {}

    class Capture(Exception):
        pass

    def fake_module(**kwargs):
        captured.update(kwargs)
        raise Capture()

    monkeypatch.setattr(mod, "AnsibleModule", fake_module)
    with pytest.raises(Capture):
        mod.main()
    spec = captured["argument_spec"]
    doc = yaml.safe_load(mod.DOCUMENTATION)["options"]
    assert set(doc) == set(spec)
    for name, opt in spec.items():
        d = doc[name]
        assert d["type"] == opt["type"], name
        assert d.get("default") == opt.get("default"), name
        assert d.get("choices") == opt.get("choices"), name
        assert d.get("elements") == opt.get("elements"), name
    yaml.safe_load(mod.EXAMPLES)
    yaml.safe_load(mod.RETURN)
