"""Run a module's main() as Ansible does and return its JSON result."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args


def run_module(main, args, capsys):
    """The module's result; its exit code must be 1 exactly when it reports a failure."""
    with patch_module_args(args), pytest.raises(SystemExit) as info:
        main()
    result = json.loads(capsys.readouterr().out)
    assert info.value.code == (1 if result.get("failed") else 0)
    return result
