# Copyright: (c) 2026, llmops.inference maintainers
# Apache License 2.0 (see LICENSE)
"""The AWX assets in awx/ load as `awx import` reads them, every field passes
the awx.awx modules' own argument specs, every reference resolves, and every
survey question matches the argument spec of the variable it sets (roles'
meta/argument_specs.yml, the playbooks' validate_argument_spec tasks, or the
playbook's documented `| default(...)`), so surveys cannot drift.

`awx import` itself cannot validate offline: it authenticates and reads each
endpoint's OPTIONS from a live controller before posting anything."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from awxkit.yaml_file import Loader as AwxkitLoader

REPO = Path(__file__).resolve().parents[3]
AWX_DIR = REPO / "awx"
ASSET_FILES = ("credentials.yml", "templates.yml")
MANAGED_CREDENTIAL_TYPES = {("Machine", "ssh"), ("Vault", "vault")}
SURVEY_TYPES = {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}
# asset list -> awx.awx module that creates the same object
MODULES = {
    "credential_types": "credential_type",
    "credentials": "credential",
    "execution_environments": "execution_environment",
    "projects": "project",
    "inventory": "inventory",
    "inventory_sources": "inventory_source",
    "job_templates": "job_template",
    "workflow_job_templates": "workflow_job_template",
}


class _Captured(Exception):
    pass


def module_argument_spec(name: str) -> dict:
    """The argument_spec an awx.awx module hands to ControllerAPIModule."""
    module = importlib.import_module(f"ansible_collections.awx.awx.plugins.modules.{name}")
    captured = {}

    class _Capture:  # pylint: disable=too-few-public-methods
        def __init__(self, argument_spec=None, **_kwargs):
            captured.update(argument_spec)
            raise _Captured

    original = module.ControllerAPIModule
    module.ControllerAPIModule = _Capture
    try:
        module.main()
    except _Captured:
        pass
    finally:
        module.ControllerAPIModule = original
    assert captured, f"awx.awx.{name} gave no argument spec"
    return captured


def load_assets() -> dict:
    assets: dict = {}
    for name in ASSET_FILES:
        with open(AWX_DIR / name, encoding="utf-8") as stream:
            data = yaml.load(stream, Loader=AwxkitLoader)  # noqa: S506  # awx import's own loader
        for key, value in data.items():
            assert key in MODULES, f"{name}: {key} is not a resource awx import knows"
            assets.setdefault(key, []).extend(value)
    return assets


ASSETS = load_assets()


def _name(ref):
    return ref["name"] if isinstance(ref, dict) else ref


def module_params(kind: str, asset: dict) -> dict:
    """The asset as the awx.awx module's parameters: natural keys become names."""
    params = {}
    for key, raw in asset.items():
        if key in ("natural_key", "related"):
            continue
        value = raw
        if key in ("extra_vars", "variables", "source_vars") and isinstance(raw, str):
            value = yaml.safe_load(raw) or {}
            if key != "extra_vars":
                value = yaml.safe_dump(value)
        elif isinstance(raw, dict) and "type" in raw and "name" in raw:
            value = raw["name"]
        params[key] = value
    related = asset.get("related", {})
    if kind == "job_templates":
        params["credentials"] = [_name(c) for c in related.get("credentials", [])]
        if "survey_spec" in related:
            params["survey_spec"] = related["survey_spec"]
    if kind == "workflow_job_templates":
        params["workflow_nodes"] = related.get("workflow_nodes", [])
    return params


def _all(kind):
    return [(kind, a["name"]) for a in ASSETS.get(kind, [])]


@pytest.mark.parametrize(("kind", "name"), [i for k in MODULES for i in _all(k)])
def test_asset_fields_pass_the_awx_module_argument_spec(kind, name):
    asset = next(a for a in ASSETS[kind] if a["name"] == name)
    spec = module_argument_spec(MODULES[kind])
    result = ArgumentSpecValidator(spec).validate(module_params(kind, asset))
    assert not result.error_messages, f"{kind} {name}: {result.error_messages}"
    nk = asset["natural_key"]
    assert nk["name"] == asset["name"] and nk["type"] == kind.rstrip("s").replace("inventorie", "inventory")


def test_every_workflow_node_passes_the_node_module_argument_spec():
    spec = module_argument_spec("workflow_job_template_node")
    for workflow in ASSETS["workflow_job_templates"]:
        for node in workflow["related"]["workflow_nodes"]:
            params = {
                "identifier": node["identifier"],
                "workflow_job_template": workflow["name"],
                "organization": workflow["organization"]["name"],
                "unified_job_template": node["unified_job_template"]["name"],
                "extra_data": node.get("extra_data", {}),
                "all_parents_must_converge": node.get("all_parents_must_converge", False),
            }
            for edge in ("success_nodes", "failure_nodes", "always_nodes"):
                params[edge] = [n["identifier"] for n in node["related"].get(edge, [])]
            result = ArgumentSpecValidator(spec).validate(params)
            assert not result.error_messages, f"node {node['identifier']}: {result.error_messages}"


def _keys(kind):
    return {_freeze(a["natural_key"]) for a in ASSETS.get(kind, [])}


def _freeze(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def test_every_reference_resolves():
    credentials = _keys("credentials")
    for cred in ASSETS["credentials"]:
        ctype = cred["credential_type"]
        assert (ctype["name"], ctype["kind"]) in MANAGED_CREDENTIAL_TYPES or _freeze(ctype) in _keys("credential_types")
    for jt in ASSETS["job_templates"]:
        assert _freeze(jt["inventory"]) in _keys("inventory"), jt["name"]
        assert _freeze(jt["project"]) in _keys("projects"), jt["name"]
        assert _freeze(jt["execution_environment"]) in _keys("execution_environments"), jt["name"]
        assert (REPO / jt["playbook"]).is_file(), f"{jt['name']}: no playbook {jt['playbook']}"
        for cred in jt["related"]["credentials"]:
            assert _freeze(cred) in credentials, f"{jt['name']}: unknown credential {cred['name']}"
    for source in ASSETS["inventory_sources"]:
        assert _freeze(source["source_project"]) in _keys("projects")
        assert (REPO / source["source_path"]).exists(), source["source_path"]
    jt_keys = _keys("job_templates")
    for workflow in ASSETS["workflow_job_templates"]:
        nodes = workflow["related"]["workflow_nodes"]
        identifiers = {n["identifier"] for n in nodes}
        for node in nodes:
            assert _freeze(node["unified_job_template"]) in jt_keys, node["identifier"]
            assert node["natural_key"]["workflow_job_template"] == workflow["natural_key"]
            for edge in ("success_nodes", "failure_nodes", "always_nodes"):
                for target in node["related"][edge]:
                    assert target["identifier"] in identifiers
                    assert target["workflow_job_template"] == workflow["natural_key"]


def test_every_template_carries_the_secret_credentials_and_prompts_for_a_limit():
    for jt in ASSETS["job_templates"]:
        names = {c["name"] for c in jt["related"]["credentials"]}
        assert {"llmops vault", "llmops Hugging Face token", "llmops fleet SSH"} <= names, jt["name"]
        assert jt["ask_limit_on_launch"] is True, f"{jt['name']}: the limit is asked at launch"
    hf_type = next(t for t in ASSETS["credential_types"] if t["name"] == "llmops Hugging Face token")
    assert hf_type["injectors"]["env"] == {"HF_TOKEN": "{{ hf_token }}"}
    assert all(f["secret"] for f in hf_type["inputs"]["fields"])
    assert ASSETS["job_templates"] and {jt["job_type"] for jt in ASSETS["job_templates"] if jt["name"] == "llmops preflight"} == {"check"}


def test_the_deploy_workflow_runs_preflight_site_smoke_and_stops_on_failure():
    workflow = next(w for w in ASSETS["workflow_job_templates"] if w["name"] == "llmops deploy")
    nodes = {n["identifier"]: n for n in workflow["related"]["workflow_nodes"]}
    order, current = [], "preflight"
    while current:
        node = nodes[current]
        order.append(node["unified_job_template"]["name"])
        assert not node["related"]["failure_nodes"] and not node["related"]["always_nodes"]
        nxt = node["related"]["success_nodes"]
        current = nxt[0]["identifier"] if nxt else None
    assert order == ["llmops preflight", "llmops site", "llmops smoke test"]


# --- surveys against the argument specs ---------------------------------------


def _playbook_files(path: Path) -> list[Path]:
    """The playbook, the playbooks it imports (recursively) and the task files beside them."""
    files, queue = [], [path]
    while queue:
        current = queue.pop(0)
        if current in files:
            continue
        files.append(current)
        for target in re.findall(r"import_playbook:\s*(\S+)", current.read_text()):
            queue.append((current.parent / target).resolve())
        files += sorted((current.parent / "tasks").glob("*.yml"))
    return files


def _playbook_specs(path: Path) -> dict:
    specs = {}
    for playbook in _playbook_files(path):
        data = yaml.safe_load(playbook.read_text()) or []
        for play in data if isinstance(data, list) else []:
            for section in ("pre_tasks", "tasks"):
                for task in play.get(section, []) or []:
                    for key in ("ansible.builtin.validate_argument_spec", "validate_argument_spec"):
                        if key in task:
                            specs.update(task[key]["argument_spec"])
    return specs


def _role_specs() -> dict:
    specs = {}
    for path in sorted(REPO.glob("roles/*/meta/argument_specs.yml")):
        specs.update(yaml.safe_load(path.read_text())["argument_specs"]["main"]["options"])
    return specs


def _documented_default(path: Path, variable: str):
    """`VAR | default(X)` in the playbook (or what it imports): the default it documents."""
    pattern = re.escape(variable) + r"\s*\|\s*default\((?P<value>'[^']*'|\"[^\"]*\"|[0-9.]+|true|false)"
    for playbook in _playbook_files(path):
        match = re.search(pattern, playbook.read_text())
        if match:
            return yaml.safe_load(match.group("value"))
    return None


def _uses(path: Path, variable: str) -> bool:
    text = "\n".join(p.read_text() for p in _playbook_files(path))
    roles = re.findall(r"(?:role|name):\s*llmops\.inference\.(\w+)", text)
    return variable in text or any(variable.startswith(role + "_") for role in roles)


def _check_question(question: dict, spec: dict) -> list[str]:
    errors = []
    var, qtype = question["variable"], question["type"]
    stype = spec.get("type", "str")
    compatible = {
        "int": {"integer"},
        "float": {"float", "integer"},
        "bool": {"multiplechoice"},
        "str": {"text", "textarea", "password", "multiplechoice"},
        "path": {"text"},
        "list": {"multiselect"},
    }
    if qtype not in compatible.get(stype, set()):
        errors.append(f"{var}: survey type {qtype} does not fit spec type {stype}")
    if stype == "bool" and sorted(question.get("choices", [])) != ["false", "true"]:
        errors.append(f"{var}: a bool is asked as the choices true/false")
    if "choices" in spec and sorted(question.get("choices", [])) != sorted(spec["choices"]):
        errors.append(f"{var}: choices {question.get('choices')} differ from the spec's {spec['choices']}")
    if spec.get("required") and not question["required"]:
        errors.append(f"{var}: the spec requires it, the survey does not")
    if spec.get("no_log") and qtype != "password":
        errors.append(f"{var}: a no_log variable is asked as a password")
    if "default" in question and not (spec.get("required") and question["default"] == ""):
        want = spec.get("default")
        got = question["default"]
        if stype == "bool":
            got = got == "true"
        if isinstance(want, str) and "{{" in want:
            errors.append(f"{var}: the spec's default is computed ({want}); the survey must not set one")
        elif got != want:
            errors.append(f"{var}: survey default {got!r} differs from the spec's {want!r}")
    elif not spec.get("required") and question["required"]:
        errors.append(f"{var}: required in the survey without a default, optional in the spec")
    return errors


def _check_survey_shape(question: dict) -> list[str]:
    errors = []
    for key in ("question_name", "variable", "type", "required"):
        if key not in question:
            errors.append(f"{question.get('variable')}: missing {key}")
    if question.get("type") not in SURVEY_TYPES:
        errors.append(f"{question.get('variable')}: unknown survey type {question.get('type')}")
    default = question.get("default")
    if default not in (None, "") and question.get("type") in ("text", "textarea", "password"):
        if not question.get("min", 0) <= len(default) <= question.get("max", 1024):
            errors.append(f"{question['variable']}: default outside min/max")
    if question.get("type") == "integer" and default is not None:
        if not isinstance(default, int) or not question["min"] <= default <= question["max"]:
            errors.append(f"{question['variable']}: integer default outside min/max")
    if question.get("type") == "multiplechoice" and default not in question.get("choices", []):
        errors.append(f"{question['variable']}: default is not one of the choices")
    return errors


SURVEYED = [(jt["name"], jt) for jt in ASSETS["job_templates"] if jt.get("survey_enabled")]


@pytest.mark.parametrize(("name", "jt"), SURVEYED, ids=[pair[0] for pair in SURVEYED])
def test_survey_matches_the_argument_specs(name, jt):
    survey = jt["related"]["survey_spec"]
    assert survey["name"] and "description" in survey and survey["spec"], name
    playbook = REPO / jt["playbook"]
    specs = {**_role_specs(), **_playbook_specs(playbook)}
    errors = []
    for question in survey["spec"]:
        errors += _check_survey_shape(question)
        var = question["variable"]
        if var in specs:
            errors += _check_question(question, specs[var])
            continue
        documented = _documented_default(playbook, var)
        assert documented is not None or _uses(playbook, var), f"{name}: survey variable {var} is in no argument spec and not used by {jt['playbook']}"
        if documented is not None:
            stype = {bool: "bool", int: "int", float: "float"}.get(type(documented), "str")
            errors += _check_question(question, {"type": stype, "default": documented})
    assert not errors, f"{name}: " + "; ".join(errors)


def test_surveyed_variables_are_all_used_by_their_playbook():
    for jt in ASSETS["job_templates"]:
        for question in jt.get("related", {}).get("survey_spec", {}).get("spec", []):
            assert _uses(REPO / jt["playbook"], question["variable"]), f"{jt['name']}: {question['variable']} is unused"


def test_survey_type_mismatch_is_caught():
    """The checker itself: a drifted survey question is reported."""
    spec = _role_specs()["preflight_min_memory_mb"]
    drifted = {"variable": "preflight_min_memory_mb", "type": "text", "required": True, "default": "16000"}
    assert len(_check_question(drifted, spec)) == 2
