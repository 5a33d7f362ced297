"""The vllm role refuses bad input before any change, naming the variable and the fix.

Each case runs the real role with ansible-playbook in check mode against the
controller (so even a wrongly accepted input changes nothing) and checks the
failure message and that no task reported a change.
"""

import functools
import hashlib
import http.server
import json
import os
import pathlib
import subprocess
import sys
import threading

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PLAY = REPO / "tests" / "integration" / "vllm_role" / "validate.yml"
MODEL = REPO / ".cache" / "models" / "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def model_dir():
    if not (MODEL / "config.json").exists():
        pytest.skip("test model not prepared (scripts/test.sh prepares it)")
    return str(MODEL)


def run_role(tmp_path, **extra_vars):
    base = {
        "vllm_device": "cpu",
        "vllm_api_key": "k" * 32,
        "vllm_config_dir": str(tmp_path / "etc"),
        "vllm_base_dir": str(tmp_path / "opt"),
        "vllm_state_dir": str(tmp_path / "state"),
        "ansible_python_interpreter": sys.executable,
    }
    base.update(extra_vars)
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(base))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    check = [] if extra_vars.get("vllm_model_store") else ["--check"]
    proc = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", *check, "-e", "@" + str(vars_file), str(PLAY)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def assert_refused(rc, out, *needles):
    assert rc != 0, out
    for needle in needles:
        assert needle in out, "%r not in output:\n%s" % (needle, out[-3000:])
    assert "changed=0" in out, out[-2000:]
    assert "changed: [localhost]" not in out


def test_two_models_on_one_port(tmp_path, model_dir):
    rc, out = run_role(tmp_path, vllm_models=[
        {"name": "a", "path": model_dir, "port": 8000},
        {"name": "b", "path": model_dir, "port": 8000},
    ])
    assert_refused(rc, out, "port 8000 is used by a, b", "give each model its own port")


def test_missing_model_directory(tmp_path):
    rc, out = run_role(tmp_path, vllm_models=[{"name": "a", "path": str(tmp_path / "nowhere"), "port": 8000}])
    assert_refused(rc, out, "no readable config.json for %s" % (tmp_path / "nowhere"), "Set path to a Hugging Face model directory")


def test_wrong_variable_type_fails_the_argument_spec(tmp_path, model_dir):
    rc, out = run_role(tmp_path, vllm_models=[{"name": "a", "path": model_dir, "port": "eighty"}])
    assert_refused(rc, out, "port", "eighty")
    assert "argument spec" in out.lower() or "Validating arguments" in out


def test_max_model_len_above_the_model_limit(tmp_path, model_dir):
    rc, out = run_role(tmp_path, vllm_models=[{"name": "a", "path": model_dir, "port": 8000, "max_model_len": 100000}])
    assert_refused(rc, out, "vllm_models[a].max_model_len is 100000", "allows at most 8192 tokens", "Lower max_model_len to 8192")


def test_model_that_cannot_fit_its_gpu_is_refused_with_the_fix(tmp_path, model_dir):
    rc, out = run_role(
        tmp_path,
        vllm_device="cuda",
        vllm_gpus=["1GiB"],
        vllm_models=[{"name": "a", "path": model_dir, "port": 8000, "max_model_len": 8192}],
    )
    assert_refused(rc, out, "vllm_models[a] does not fit", "Fix:")


def test_empty_api_key_is_refused(tmp_path, model_dir):
    rc, out = run_role(tmp_path, vllm_api_key="", vllm_models=[{"name": "a", "path": model_dir, "port": 8000}])
    assert_refused(rc, out, "vllm_api_key is empty", "vllm_allow_no_api_key")


def test_valid_input_passes_validation_and_plans_the_model(tmp_path, model_dir):
    # Same role, good input: validation and the plan pass; check mode then
    # stops short of installing anything on the controller.
    rc, out = run_role(
        tmp_path,
        vllm_use_serving_plan=True,
        vllm_models=[{"name": "a", "path": model_dir, "port": 8000, "environment": {"VLLM_CPU_KVCACHE_SPACE": "1"}}],
    )
    assert "Refuse models that cannot fit" in out
    assert "vllm_models is invalid" not in out and "does not fit" not in out, out[-3000:]


@pytest.fixture()
def model_server(model_dir):
    """Serve the test model's directory over HTTP on loopback."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=model_dir)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()


def test_a_model_with_a_source_is_fetched_into_the_store_then_checked(tmp_path, model_dir, model_server):
    # The fetch is the one real change, inside tmp_path; the max_model_len
    # check that follows reads the fetched config.json and refuses.
    config = pathlib.Path(model_dir, "config.json").read_bytes()
    store = tmp_path / "store"
    rc, out = run_role(
        tmp_path,
        vllm_model_store=str(store),
        vllm_models=[{
            "name": "fetched", "port": 8000, "max_model_len": 100000,
            "source": {"urls": [{"url": model_server + "/config.json", "sha256": hashlib.sha256(config).hexdigest(), "path": "config.json"}]},
        }],
    )
    assert rc != 0
    assert (store / "fetched" / "config.json").read_bytes() == config
    assert "vllm_models[fetched].max_model_len is 100000" in out, out[-3000:]
    assert "allows at most 8192 tokens" in out
