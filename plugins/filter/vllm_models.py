# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE)
"""Filters over the vllm role's model list (vllm_models).

Documentation lives beside this file in vllm_models_in_state.yml and
vllm_model_errors.yml, one per filter.
"""

from __future__ import annotations

import re

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _duplicates(values):
    seen, repeated = [], []
    for value in values:
        if value in seen and value not in repeated:
            repeated.append(value)
        seen.append(value)
    return repeated


def vllm_models_in_state(models, state="present", model_store=None):
    """The entries of vllm_models whose state (default present) equals state.

    With model_store, an entry without a path gets MODEL_STORE/NAME: where
    model_fetch puts a model that has a source.
    """
    selected = [model for model in models or [] if model.get("state", "present") == state]
    if model_store:
        selected = [dict(model, path=model.get("path") or "%s/%s" % (model_store.rstrip("/"), model.get("name"))) for model in selected]
    return selected


def vllm_model_errors(models):
    """Every problem of the model list, each naming the variable and the fix."""
    models = models or []
    present = vllm_models_in_state(models, "present")
    errors = []
    for name in _duplicates([m.get("name") for m in models]):
        errors.append("vllm_models: name %s appears more than once; give each model a unique name" % name)
    for port in _duplicates([m["port"] for m in present if m.get("port") is not None]):
        clashing = ", ".join(m["name"] for m in present if m.get("port") == port)
        errors.append("vllm_models: port %s is used by %s; give each model its own port" % (port, clashing))
    for model in models:
        name = model.get("name")
        if not name or not NAME_PATTERN.match(str(name)):
            errors.append('vllm_models: name "%s" must start with a letter or digit and use only letters, digits, ".", "_" and "-"' % name)
    for model in present:
        name = model.get("name")
        if not model.get("path") and not model.get("source"):
            errors.append("vllm_models[%s]: neither path nor source is set; set path to the model directory on the host, "
                          "or source to fetch it into vllm_model_store" % name)
        if model.get("port") is None:
            errors.append("vllm_models[%s]: port is missing; set it to a free TCP port" % name)
        for arg in model.get("extra_args") or []:
            if re.search(r"\s", str(arg)):
                errors.append('vllm_models[%s]: extra_args entry "%s" contains whitespace; split it into separate list items' % (name, arg))
        utilization = model.get("gpu_memory_utilization")
        if utilization is not None and not 0 < float(utilization) <= 1:
            errors.append("vllm_models[%s]: gpu_memory_utilization %s must be above 0 and at most 1" % (name, utilization))
    return errors


class FilterModule:
    def filters(self):
        return {
            "vllm_models_in_state": vllm_models_in_state,
            "vllm_model_errors": vllm_model_errors,
        }
