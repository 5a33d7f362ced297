"""Make this checkout importable as ansible_collections.llmops.inference, and make skips count.

Skips: with ``CI=true`` (``.ci/run`` sets it) a skipped test, or a skipped
test module, is a failure unless its node id (or a prefix of it: a file, a
directory) is listed in ``tests/skip_allowlist.txt`` with a justification.
``LLMOPS_NO_SKIPS=1`` (molecule verify sets it) allows no skip at all. A
test that cannot run where it must run then fails, instead of going green.
"""

from __future__ import annotations

import os
import pathlib
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
COLLECTIONS_ROOT = pathlib.Path(os.environ.get("LLMOPS_CACHE_DIR", REPO_ROOT / ".cache")) / "collections"
SKIP_ALLOWLIST = REPO_ROOT / "tests" / "skip_allowlist.txt"

_link = COLLECTIONS_ROOT / "ansible_collections" / "llmops" / "inference"
if not _link.exists():
    _link.parent.mkdir(parents=True, exist_ok=True)
    _link.symlink_to(REPO_ROOT)
if str(COLLECTIONS_ROOT) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_ROOT))


def load_skip_allowlist(path=SKIP_ALLOWLIST):
    """``NODE_ID_OR_PREFIX -- justification`` per line; '#' starts a comment line."""
    entries = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        node, separator, why = line.partition(" -- ")
        if not separator or not node.strip() or not why.strip():
            raise pytest.UsageError(f"{path}:{number}: write 'NODE_ID -- why this skip is right' (got {line!r})")
        entries[node.strip()] = why.strip()
    return entries


def skip_policy(environ=None):
    """None: skips are fine (a developer's run). Else the allowlist that applies (empty: no skip allowed)."""
    environ = os.environ if environ is None else environ
    if environ.get("LLMOPS_NO_SKIPS") == "1":
        return {}
    if environ.get("CI", "").lower() == "true":
        return load_skip_allowlist()
    return None


def allowed(nodeid, allowlist):
    """An entry is a node id, a test file (every test in it) or a directory ending in '/'."""
    for entry in allowlist:
        if nodeid == entry or nodeid.startswith(entry + "::") or nodeid.startswith(entry + "["):
            return True
        if entry.endswith("/") and nodeid.startswith(entry):
            return True
    return False


_POLICY = skip_policy()


def _refuse_skip(report):
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    mode = "LLMOPS_NO_SKIPS=1: no skip is allowed" if not _POLICY else f"CI=true: the skip is not in {SKIP_ALLOWLIST.relative_to(REPO_ROOT)}"
    report.outcome = "failed"
    report.longrepr = f"{report.nodeid} was skipped ({reason}); {mode}. Make the prerequisite available or justify the skip there."


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _POLICY is not None and report.skipped and not hasattr(report, "wasxfail") and not allowed(report.nodeid, _POLICY):
        _refuse_skip(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if _POLICY is not None and report.skipped and not allowed(report.nodeid, _POLICY):
        _refuse_skip(report)
