from ansible_collections.llmops.inference.plugins.filter.vllm_models import (
    FilterModule,
    vllm_model_errors,
    vllm_models_in_state,
)

GOOD = {"name": "llama", "path": "/models/llama", "port": 8000}


def test_state_defaults_to_present():
    models = [GOOD, {"name": "old", "state": "absent"}, {**GOOD, "name": "b", "port": 8001, "state": "present"}]
    assert [m["name"] for m in vllm_models_in_state(models)] == ["llama", "b"]
    assert [m["name"] for m in vllm_models_in_state(models, "absent")] == ["old"]


def test_model_store_fills_the_path_of_fetched_models():
    models = [GOOD, {"name": "qwen", "port": 8001, "source": {"repo_id": "Qwen/Qwen2.5-0.5B-Instruct"}}]
    assert [m["path"] for m in vllm_models_in_state(models, "present", "/srv/models/")] == ["/models/llama", "/srv/models/qwen"]
    assert vllm_model_errors(models) == []


def test_valid_list_has_no_errors():
    assert vllm_model_errors([GOOD, {**GOOD, "name": "qwen", "port": 8001}]) == []
    assert vllm_model_errors(None) == []


def test_two_models_on_one_port_are_named_in_the_error():
    errors = vllm_model_errors([GOOD, {**GOOD, "name": "qwen"}])
    assert errors == ["vllm_models: port 8000 is used by llama, qwen; give each model its own port"]


def test_an_absent_model_may_keep_its_old_port():
    assert vllm_model_errors([GOOD, {"name": "old", "port": 8000, "state": "absent"}]) == []


def test_duplicate_names_missing_keys_and_bad_values_are_all_reported():
    errors = vllm_model_errors([
        GOOD,
        {"name": "llama", "path": "/m", "port": 8001},
        {"name": "bad name", "path": "/m", "port": 8002},
        {"name": "nopath", "port": 8003, "extra_args": ["--chat-template /x"], "gpu_memory_utilization": 1.5},
        {"name": "noport", "path": "/m"},
    ])
    assert any("name llama appears more than once" in e for e in errors)
    assert any('name "bad name" must start' in e for e in errors)
    assert any("vllm_models[nopath]: neither path nor source is set" in e for e in errors)
    assert any("vllm_models[noport]: port is missing" in e for e in errors)
    assert any("contains whitespace" in e for e in errors)
    assert any("gpu_memory_utilization 1.5" in e for e in errors)
    assert len(errors) == 6


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {"vllm_models_in_state", "vllm_model_errors"}
