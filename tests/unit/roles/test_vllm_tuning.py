"""vllm role, engine speed: preloads, thread binding and caches per device (tasks/tuning.yml)."""

from __future__ import annotations

from gpu_stack_render import DEBIAN_12, UBUNTU_2204, UBUNTU_2404, RoleRender, evaluate_assert, facts

MODEL = {"name": "m", "path": "/srv/m", "port": 8000, "environment": {"VLLM_CPU_KVCACHE_SPACE": "4"}}


def tuned(device="cpu", host=None, **overrides):
    host = DEBIAN_12 if host is None else host
    role = RoleRender("vllm", dict(host, processor_cores=overrides.pop("cores", 16), processor_count=1), **overrides)
    role.variables["vllm__device"] = device
    role.set_facts("tuning.yml", "Choose the libraries to preload on CPU hosts")
    role.set_facts("tuning.yml", "Compute the engine environment")
    return role


def env_file(role, model=None):
    role.variables["item"] = model or MODEL
    text = role.render("instance.env.j2")
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_cpu_instances_preload_tcmalloc_and_intel_openmp_and_bind_threads():
    env = env_file(tuned())
    assert env["LD_PRELOAD"] == "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4:/opt/vllm/venv/lib/libiomp5.so"
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "auto"
    assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "1"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "4"


def test_caches_live_in_the_state_directory_on_every_device():
    for device in ("cpu", "cuda"):
        env = env_file(tuned(device=device, vllm_state_dir="/data/vllm"))
        assert env["VLLM_CACHE_ROOT"] == "/data/vllm/cache/vllm"
        assert env["TORCHINDUCTOR_CACHE_DIR"] == "/data/vllm/cache/torchinductor"
        assert env["TRITON_CACHE_DIR"] == "/data/vllm/cache/triton"
        assert env["CUDA_CACHE_PATH"] == "/data/vllm/cache/nv"


def test_vllm_keeps_idle_connections_longer_than_the_gateways_pool_them():
    nginx = RoleRender("nginx_mtls", DEBIAN_12)
    pooled = int(nginx.value("{{ nginx_mtls_upstream_keepalive_timeout }}"))
    for role in (tuned(), tuned(device="cuda"), tuned(vllm_install_mode="container")):
        assert int(env_file(role)["VLLM_HTTP_TIMEOUT_KEEP_ALIVE"]) > pooled
    assert env_file(tuned(vllm_http_keepalive_timeout=300))["VLLM_HTTP_TIMEOUT_KEEP_ALIVE"] == "300"


def test_gpu_and_container_instances_get_no_cpu_preloads():
    for role in (tuned(device="cuda"), tuned(vllm_install_mode="container")):
        env = env_file(role)
        assert "LD_PRELOAD" not in env
        assert "VLLM_CPU_OMP_THREADS_BIND" not in env


def test_gnu_openmp_leaves_torchs_libgomp_to_vllm():
    env = env_file(tuned(vllm_cpu_openmp="gnu", vllm_cpu_preload_tcmalloc=False))
    assert "LD_PRELOAD" not in env


def test_reserved_cores_never_take_the_last_core():
    assert env_file(tuned(cores=1))["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert env_file(tuned(cores=2, vllm_cpu_reserved_cpus=4))["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "1"
    assert env_file(tuned(cores=2, vllm_cpu_reserved_cpus=0))["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"


def test_explicit_and_vllm_binding():
    assert env_file(tuned(vllm_cpu_omp_threads_bind="0-13"))["VLLM_CPU_OMP_THREADS_BIND"] == "0-13"
    env = env_file(tuned(vllm_cpu_omp_threads_bind="vllm"))
    assert "VLLM_CPU_OMP_THREADS_BIND" not in env and "VLLM_CPU_NUM_OF_RESERVED_CPU" not in env


def test_inventory_environment_wins_over_the_roles():
    model = dict(MODEL, environment={"LD_PRELOAD": "/x.so", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"})
    env = env_file(tuned(), model)
    assert env["LD_PRELOAD"] == "/x.so"
    assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"


def test_tcmalloc_package_name_follows_the_t64_transition():
    assert tuned(host=DEBIAN_12).value("{{ vllm__tcmalloc_package }}") == "libtcmalloc-minimal4"
    assert tuned(host=UBUNTU_2204).value("{{ vllm__tcmalloc_package }}") == "libtcmalloc-minimal4"
    assert tuned(host=UBUNTU_2404).value("{{ vllm__tcmalloc_package }}") == "libtcmalloc-minimal4t64"
    trixie = facts("Debian", "13.1", "trixie")
    assert tuned(host=trixie).value("{{ vllm__tcmalloc_package }}") == "libtcmalloc-minimal4t64"


def test_arm_hosts_preload_from_their_multiarch_directory():
    env = env_file(tuned(host=facts("Ubuntu", "24.04", "noble", arch="aarch64"), vllm_cpu_openmp="gnu"))
    assert env["LD_PRELOAD"] == "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4"


def test_gpu_units_want_the_persistence_daemon():
    role = tuned(device="cuda")
    role.variables["ansible_facts"]["systemd"] = {"version": 255}
    assert "Wants=network-online.target nvidia-persistenced.service" in role.render("vllm@.service.j2")
    role = tuned(device="cpu")
    role.variables["ansible_facts"]["systemd"] = {"version": 252}
    assert "nvidia-persistenced" not in role.render("vllm@.service.j2")


def test_cache_dir_outside_the_state_dir_is_refused():
    role = tuned(vllm_cache_dir="/var/cache/vllm")
    passed, message = evaluate_assert(role, "validate.yml", "Check the speed settings")
    assert not passed
    assert "vllm_cache_dir (/var/cache/vllm) must be a directory inside vllm_state_dir (/var/lib/vllm)" in message
    assert evaluate_assert(tuned(), "validate.yml", "Check the speed settings")[0]
    assert not evaluate_assert(tuned(vllm_cpu_omp_threads_bind="all"), "validate.yml", "Check the speed settings")[0]


def test_cpu_instances_compile_without_aot_so_restarts_load_the_cache():
    assert env_file(tuned())["VLLM_USE_AOT_COMPILE"] == "0"
    for role in (tuned(device="cuda"), tuned(vllm_install_mode="container")):
        assert "VLLM_USE_AOT_COMPILE" not in env_file(role)
