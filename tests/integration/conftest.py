"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest

from lab_host import LabHost


@pytest.fixture(scope="session")
def lab_host(tmp_path_factory):
    """The lab host, converged once by the root site.yml; removed at the end of the session.

    Tests may run more playbooks against it (``lab_host.playbook(...)``), but
    must leave it serving as site.yml left it.
    """
    host = LabHost(tmp_path_factory.mktemp("lab"))
    try:
        host.start()
        host.converge()
        yield host
    finally:
        host.destroy()
