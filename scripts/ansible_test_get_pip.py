"""Stand-in for the get-pip.py that ansible-test downloads from its own CI host.

That host is unreachable from machines that only reach PyPI, so ansible-test's
sanity venvs are bootstrapped with the standard library's ensurepip instead,
then pip installs the exact packages ansible-test asked for (pip==X, ...)
from the configured index. scripts/test.sh places this file where
ansible-test looks for its cached bootstrap script.
"""

import subprocess
import sys

# get-pip.py flags that plain `pip install` does not know.
GET_PIP_ONLY_FLAGS = {"--no-setuptools", "--no-wheel"}


def main() -> int:
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_FLAGS]
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
    return subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", *args])


if __name__ == "__main__":
    sys.exit(main())
