"""Each module test starts without the warnings and deprecations of the tests before it.

ansible-core keeps them in module-level lists that exit_json() reports, so a
deprecation raised by one test would otherwise appear in the next test's result.
"""

from __future__ import annotations

import pytest
from ansible.module_utils.common import warnings


@pytest.fixture(autouse=True)
def fresh_module_warnings():
    for name in ("_global_warnings", "_global_deprecations"):
        store = getattr(warnings, name, None)
        if store is not None:
            store.clear()
    yield
