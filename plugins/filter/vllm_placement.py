# Copyright: llmops.inference contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Filters that place the vllm role's instances on a host's GPUs (logic: module_utils/gpu_placement.py).

Documentation lives beside this file in vllm_gpu_placement.yml and
vllm_gpu_environment.yml, one per filter.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.inference.plugins.module_utils import gpu_placement


def vllm_gpu_placement(models, facts, min_connection="auto"):
    """Assign GPUs to the models (vllm_models entries) from gpu_validate's facts; errors are returned, not raised."""
    if not isinstance(facts, dict):
        raise AnsibleFilterError("vllm_gpu_placement: the facts must be ansible_facts.nvidia (a dict), got %s" % type(facts).__name__)
    try:
        return gpu_placement.place(gpu_placement.instances_from_models(models), facts, min_connection)
    except ValueError as exc:
        raise AnsibleFilterError("vllm_gpu_placement: %s" % exc) from exc


def vllm_gpu_environment(models, placement):
    """The models with environment.CUDA_VISIBLE_DEVICES set to their GPUs' UUIDs (pinned models unchanged)."""
    return gpu_placement.apply(models, placement)


class FilterModule:
    def filters(self):
        return {
            "vllm_gpu_placement": vllm_gpu_placement,
            "vllm_gpu_environment": vllm_gpu_environment,
        }
