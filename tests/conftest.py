"""Make this checkout importable as ansible_collections.llmops.inference."""

import os
import pathlib
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
COLLECTIONS_ROOT = pathlib.Path(os.environ.get("LLMOPS_CACHE_DIR", REPO_ROOT / ".cache")) / "collections"

_link = COLLECTIONS_ROOT / "ansible_collections" / "llmops" / "inference"
if not _link.exists():
    _link.parent.mkdir(parents=True, exist_ok=True)
    _link.symlink_to(REPO_ROOT)
if str(COLLECTIONS_ROOT) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_ROOT))
